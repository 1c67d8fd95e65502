// Output folders are checked before any compute: a search on a real model runs for hours, and an
// unwritable --out or an overwritten run must be found out at once, not after the first block.
// A folder that already holds something is never replaced unless the user says so: --resume
// continues the run in it, --force replaces melbo's own files in it (nothing else is deleted).

import { mkdir, readdir, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { MelboError, describeError } from "../errors.js";

/** What the folder is for: a search run (vectors + log), an evaluation, or a model checkpoint. */
export type OutputKind = "run" | "model" | "eval";

/** The files melbo writes for each kind: what --force may delete. */
const OWN_FILES: Record<OutputKind, readonly string[]> = {
  run: ["vectors.safetensors", "log.jsonl", "trace.jsonl", "report.html"],
  eval: ["eval.json", "generations.jsonl", "report.html"],
  model: ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"],
};
/** Temporary files of interrupted atomic writes (`NAME.tmp-PID-N`, io/atomic.ts). */
const isTemporary = (name: string) => /\.tmp-\d+(-\d+)?$/.test(name);

/** Whether the process that wrote temporary file `name` is gone (its file is then garbage). */
function writerIsGone(name: string): boolean {
  const pid = Number(/\.tmp-(\d+)/.exec(name)?.[1]);
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "ESRCH";
  }
}

export interface OutputFolderOptions {
  kind: OutputKind;
  /** The flag or argument that named the folder, for messages ("--out", "DIR"). */
  flag: string;
  /** The caller continues what is there (ortho --resume): an existing run is kept. */
  resume?: boolean;
  /** The command has a --resume (the message offers it). */
  canResume?: boolean;
  /** Replace melbo's own files in the folder. */
  force?: boolean;
}

/**
 * Makes `dir` ready to be written: creates it when missing, refuses a file, an unwritable folder,
 * or (without resume/force) a folder that already holds something. With force, deletes the
 * files of `kind` that melbo writes (and temporary files of interrupted writes), nothing else.
 */
export async function prepareOutputFolder(dir: string, o: OutputFolderOptions): Promise<void> {
  const info = await stat(dir).catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT" || e.code === "ENOTDIR") return null; // missing (ENOTDIR: under a file; mkdir says so)
    throw new MelboError(`cannot use ${o.flag}: ${describeError(e)}`, { file: dir });
  });
  if (info && !info.isDirectory()) throw new MelboError(`${o.flag} names a file, not a folder: choose another ${o.flag}`, { file: dir });
  if (info) {
    const entries = await readdir(dir).catch((e: unknown) => {
      throw new MelboError(`cannot list ${o.flag}: ${describeError(e)}`, { file: dir });
    });
    if (o.resume) {
      // A killed run leaves the temporary file of the write it was in: not part of the run.
      const stale = entries.filter((name) => isTemporary(name) && writerIsGone(name));
      await Promise.all(stale.map((name) => rm(join(dir, name), { force: true }).catch(() => undefined)));
    }
    if (entries.length > 0 && !o.resume) {
      if (!o.force) {
        const shown = entries.slice(0, 3).join(", ") + (entries.length > 3 ? `, … (${entries.length} entries)` : "");
        const howTo = o.canResume ? "--resume to continue the run in it, --force to replace it" : "--force to replace it";
        throw new MelboError(`${o.flag} is not empty (${shown}): ${howTo}, or choose another ${o.flag}`, { file: dir });
      }
      const own = entries.filter((name) => OWN_FILES[o.kind].includes(name) || isTemporary(name));
      await Promise.all(own.map((name) => rm(join(dir, name), { force: true }))).catch((e: unknown) => {
        throw new MelboError(`--force could not delete the previous files: ${describeError(e)}`, { file: dir });
      });
    }
  } else {
    await mkdir(dir, { recursive: true }).catch((e: unknown) => {
      throw new MelboError(`cannot create ${o.flag}: ${describeError(e)}`, { file: dir });
    });
  }
  // A probe file, not access(W_OK): that says yes to root on a read-only mount.
  const probe = join(dir, `.melbo-write-test.tmp-${process.pid}`);
  try {
    await writeFile(probe, "");
    await rm(probe, { force: true });
  } catch (e) {
    throw new MelboError(`cannot write in ${o.flag}: ${describeError(e)}`, { file: dir });
  }
}

/**
 * Checks where an output file will go, before any compute: not a folder, in a folder that
 * exists and can be written. An existing file is replaced (atomically) when the command ends.
 */
export async function prepareOutputFile(file: string, flag: string): Promise<void> {
  const info = await stat(file).catch(() => null);
  if (info?.isDirectory()) throw new MelboError(`${flag} names a folder, not a file: give a file name`, { file });
  const dir = dirname(file);
  const parent = await stat(dir).catch(() => null);
  if (parent === null) throw new MelboError(`the folder of ${flag} does not exist: create it first`, { file: dir });
  if (!parent.isDirectory()) throw new MelboError(`the folder of ${flag} is a file`, { file: dir });
  const probe = join(dir, `.melbo-write-test.tmp-${process.pid}`);
  try {
    await writeFile(probe, "");
    await rm(probe, { force: true });
  } catch (e) {
    throw new MelboError(`cannot write in the folder of ${flag}: ${describeError(e)}`, { file: dir });
  }
}
