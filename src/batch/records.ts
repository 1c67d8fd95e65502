// The batch folder: what the batch knows beyond the jobs' run folders.
//
//   FOLDER/logs/ID.log      the job's stdout and stderr, every attempt appended (a header per attempt)
//   FOLDER/jobs/ID.json     the job's attempts: start, end, exit code, device, host, pid, and the
//                           arguments it completed with (a job is skipped only when they still hold)
//   FOLDER/summary.json     the merged result (summary.ts)
//   FOLDER/slurm/           the sbatch script and the submissions (slurm.ts)
//
// Each record is written only by the process that runs the job, atomically, so concurrent jobs
// never write the same file and a kill leaves the previous record or the new one.

import { existsSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { MelboError, describeError } from "../errors.js";
import { writeTextAtomic } from "../io/atomic.js";
import type { Batch, Job } from "./job-file.js";

export interface Attempt {
  /** ISO time the job's process started. */
  start: string;
  end?: string;
  /** Wall-clock seconds of the attempt (set when it ends). */
  seconds?: number;
  /** The command's exit code (0 done, 2 bad input or refused resume, 130 interrupted), or null when killed by `signal`. */
  exitCode?: number | null;
  signal?: string | null;
  device: string;
  threads: number;
  host: string;
  /** The job's melbo process. */
  pid: number;
  backend: "local" | "slurm";
  /** SLURM_JOB_ID / the array task, for Slurm tasks. */
  slurmJob?: string;
}

export interface JobRecord {
  id: string;
  attempts: Attempt[];
  /** The job's arguments (job-args.ts jobArgs) when its run last completed. */
  completedArgs?: string[];
}

export const logFile = (batch: Batch, id: string) => join(batch.folder, "logs", `${id}.log`);
const recordFile = (batch: Batch, id: string) => join(batch.folder, "jobs", `${id}.json`);

export async function prepareBatchFolder(batch: Batch): Promise<void> {
  for (const sub of ["logs", "jobs"]) {
    await mkdir(join(batch.folder, sub), { recursive: true }).catch((e: unknown) => {
      throw new MelboError(`cannot create the batch folder: ${describeError(e)}`, { file: join(batch.folder, sub) });
    });
  }
}

export async function readJobRecord(batch: Batch, job: Job): Promise<JobRecord> {
  const file = recordFile(batch, job.id);
  if (!existsSync(file)) return { id: job.id, attempts: [] };
  try {
    const doc = JSON.parse(await readFile(file, "utf8")) as JobRecord;
    if (!Array.isArray(doc.attempts)) throw new Error("no attempts list");
    return doc;
  } catch (e) {
    throw new MelboError(`the batch's record of job ${JSON.stringify(job.id)} is damaged (${describeError(e)}): delete it and run the batch again`, { file });
  }
}

export async function writeJobRecord(batch: Batch, record: JobRecord): Promise<void> {
  await writeTextAtomic(recordFile(batch, record.id), JSON.stringify(record, null, 1) + "\n");
}

/** Whether a process is alive (on this host): signal 0 tests without sending anything. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The last attempt when it has not ended and its process is alive on this host: the job is running now. */
export function runningAttempt(record: JobRecord): Attempt | undefined {
  const last = record.attempts[record.attempts.length - 1];
  if (!last || last.end !== undefined) return undefined;
  return last.host === hostname() && processAlive(last.pid) ? last : undefined;
}

/** Wall-clock seconds over every ended attempt (a resumed job's time is the sum of its attempts). */
export function wallSeconds(record: JobRecord): number {
  return record.attempts.reduce((s, a) => s + (a.seconds ?? 0), 0);
}
