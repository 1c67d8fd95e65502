// The command line a job runs: `melbo train|ortho|eval <its settings> --out OUT --resume`. Every job
// runs as its own `melbo` process with --resume, so the batch reuses what single runs guarantee: a
// killed job continues bit for bit, and a job whose settings changed since its run was saved is
// refused by the command itself (in words, in the job's log) instead of silently mixed.

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { VECTORS_FILE } from "../search/run-files.js";
import { jobById, type Batch, type Job, type VectorSource } from "./job-file.js";

/** bin/melbo.js of this installation (dist/src/batch/ → the package root). */
export const MELBO_BIN = fileURLToPath(new URL("../../../bin/melbo.js", import.meta.url));

/** The FILE[:rows] reference a job's θ0 or vectors resolve to. */
export function vectorRef(batch: Batch, src: VectorSource): string {
  if (src.kind === "file") return src.ref;
  const from = jobById(batch, src.job);
  const file = join(from.out, VECTORS_FILE);
  return src.rows === undefined ? file : `${file}:${src.rows.replace(/\s+/g, "")}`;
}

/**
 * The job's arguments after `melbo`, without the device and thread flags (those depend on where
 * it runs, not on what it computes): the identity of the job's run, recorded when it completes.
 */
export function jobArgs(batch: Batch, job: Job): string[] {
  const args: string[] = [job.command];
  for (const [key, value] of Object.entries(job.settings)) {
    if (value === false) continue;
    if (value === true) args.push(`--${key}`);
    else if (Array.isArray(value)) for (const v of value) args.push(`--${key}=${v}`);
    // `--key=value`: a value that starts with a dash (a negative number, a prompt) stays a value.
    else args.push(`--${key}=${value}`);
  }
  if (job.input) args.push(`--${job.command === "ortho" ? "theta" : "vectors"}=${vectorRef(batch, job.input)}`);
  args.push(`--out=${job.out}`, "--resume");
  return args;
}

/** Where a job runs: a device for --device, and CPU threads (0: the command's default). */
export interface Placement {
  device: string;
  threads: number;
}

/** The full argument list for `node bin/melbo.js …`. */
export function jobCommandLine(batch: Batch, job: Job, where: Placement): string[] {
  return [...jobArgs(batch, job), `--device=${where.device}`, ...(where.threads > 0 ? [`--threads=${where.threads}`] : [])];
}
