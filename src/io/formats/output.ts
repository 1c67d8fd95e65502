// Output files of `melbo import` / `melbo export`: written atomically (a temporary file beside
// the target, fsync'd, then given the target's name, then the folder fsync'd), and never put in
// place of an existing file unless the caller says so (--force).
//
// Without force the temporary file is hard-linked to the target name: link(2) fails when the
// name exists, so a file that appears between the check and the write is not replaced either.
// On file systems without hard links the check is repeated just before a rename.

import { link, open, rename, stat, unlink } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { MelboError, describeError } from "../../errors.js";
import { syncFolder, temporaryName } from "../atomic.js";
import { prepareOutputFile } from "../output-folder.js";

function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

function refuse(path: string, flag: string): never {
  throw new MelboError(`${flag} already exists: give --force to replace it, or choose another ${flag}`, { file: path });
}

/**
 * Checks, before any work, that `path` can be written: not a folder, its folder writable, and no
 * file there unless `force`.
 */
export async function checkOutputFile(path: string, force: boolean, flag = "--out"): Promise<void> {
  const file = resolve(path);
  await prepareOutputFile(file, flag);
  if (!force && (await exists(file))) refuse(file, flag);
}

/** Writes `bytes` to a new file `path` (which must not exist) and fsyncs it. */
export async function writeNewBytes(path: string, bytes: Uint8Array): Promise<void> {
  const fh = await open(path, "wx");
  try {
    let done = 0;
    while (done < bytes.length) done += (await fh.write(bytes, done, bytes.length - done)).bytesWritten;
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Creates `path` atomically: `write(tmp)` writes the whole file at a temporary name beside it
 * (and fsyncs it); the file then takes `path`'s name, replacing an existing file only with
 * `force`.
 */
export async function commitFile(path: string, force: boolean, write: (tmp: string) => Promise<void>, flag = "--out"): Promise<void> {
  const file = resolve(path);
  const tmp = temporaryName(file);
  try {
    try {
      await write(tmp);
    } catch (e) {
      if (e instanceof MelboError) throw e;
      throw new MelboError(`cannot write: ${describeError(e)}`, { file: tmp, cause: e });
    }
    if (force) {
      await rename(tmp, file);
    } else {
      try {
        await link(tmp, file);
        await unlink(tmp);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === "EEXIST") refuse(file, flag);
        if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "ENOSYS" && code !== "EMLINK") throw e;
        // No hard links here (some FUSE, SMB or FAT file systems): check, then rename.
        if (await exists(file)) refuse(file, flag);
        await rename(tmp, file);
      }
    }
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    if (e instanceof MelboError) throw e;
    throw new MelboError(`cannot write: ${describeError(e)}`, { file, cause: e });
  }
  await syncFolder(dirname(file));
}
