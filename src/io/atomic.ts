// Durable replacement of a file: write a temporary file beside it, fsync it, rename it over the
// old one, fsync the folder. A kill or a power cut leaves either the old file or the new one,
// never a mix, and the rename itself survives a crash once the folder is synced.

import { open, rename, unlink } from "node:fs/promises";
import { dirname } from "node:path";
import { MelboError, describeError } from "../errors.js";

let counter = 0;

/** A temporary name beside `path` (`NAME.tmp-PID-N`: --force and resume recognise it). */
export function temporaryName(path: string): string {
  return `${path}.tmp-${process.pid}-${counter++}`;
}

/** fsync of a folder, so that a rename in it is on disk. Folders that cannot be opened are skipped. */
export async function syncFolder(dir: string): Promise<void> {
  const fh = await open(dir, "r").catch(() => null);
  if (!fh) return;
  try {
    await fh.sync().catch(() => undefined); // some filesystems refuse fsync on a folder: not fatal
  } finally {
    await fh.close();
  }
}

/** Writes `text` to `path` atomically and durably. */
export async function writeTextAtomic(path: string, text: string): Promise<void> {
  const tmp = temporaryName(path);
  try {
    const fh = await open(tmp, "w");
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw new MelboError(`cannot write: ${describeError(e)}`, { file: path, cause: e });
  }
  await syncFolder(dirname(path));
}
