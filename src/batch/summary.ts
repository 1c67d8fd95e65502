// The merged result of a batch, from the jobs' run folders (progress, vectors, r) and the batch
// folder's records (attempts, wall time, device), plus Slurm's view of queued and running tasks
// when there is one: what `melbo batch FILE --status` prints and FOLDER/summary.json holds.

import { join } from "node:path";
import { writeTextAtomic } from "../io/atomic.js";
import { formatSeconds } from "../cli/progress-bar.js";
import type { Batch } from "./job-file.js";
import { readRunState, rStats } from "./job-state.js";
import { logFile, readJobRecord, runningAttempt, wallSeconds } from "./records.js";

export const SUMMARY_FILE = "summary.json";
export const SUMMARY_FORMAT = "melbo-batch-summary/1";

export type JobStateName = "complete" | "running" | "queued" | "partial" | "not started" | "failed" | "interrupted" | "damaged";

export interface JobSummary {
  id: string;
  command: string;
  out: string;
  state: JobStateName;
  /** Vectors (train, ortho) or entries (eval) done, of `total` (null: not known yet). */
  done: number;
  total: number | null;
  unit: string;
  /** Vectors in the run (train, ortho), or vector entries with an r (eval). */
  vectors: number;
  /** Vectors with r < 1 (they beat θ = 0), their median and best r: ortho runs and evals of ortho runs. */
  rBelow1: number | null;
  medianR: number | null;
  bestR: number | null;
  /** ortho: why the search stopped (count, norm, dimension, vanished). */
  stopReason: string | null;
  /** Wall-clock seconds over every attempt. */
  wallSeconds: number;
  /** Where the last attempt ran. */
  device: string | null;
  host: string | null;
  attempts: number;
  lastExitCode: number | null;
  /** The Slurm task and its state (squeue/sacct), for the slurm backend. */
  slurm: { job: string; state: string } | null;
  log: string;
  error: string | null;
}

export interface BatchSummary {
  format: typeof SUMMARY_FORMAT;
  file: string;
  folder: string;
  written: string;
  jobs: JobSummary[];
  totals: { jobs: number; complete: number; vectors: number; rBelow1: number };
}

/** Slurm's view of a job: its task id and state (PENDING, RUNNING, FAILED, …). */
export type SlurmView = Map<string, { job: string; state: string }>;

export async function summarise(batch: Batch, slurm?: SlurmView): Promise<BatchSummary> {
  const jobs: JobSummary[] = [];
  for (const job of batch.jobs) {
    const run = await readRunState(job);
    const record = await readJobRecord(batch, job);
    const last = record.attempts[record.attempts.length - 1];
    const sl = slurm?.get(job.id) ?? null;
    let state: JobStateName;
    if (run.run === "damaged") state = "damaged";
    else if (run.run === "complete") state = "complete";
    else if (runningAttempt(record) || sl?.state === "RUNNING" || sl?.state === "COMPLETING") state = "running";
    else if (sl?.state === "PENDING" || sl?.state === "CONFIGURING") state = "queued";
    else if (last?.end !== undefined && (last.exitCode === 130 || last.signal != null)) state = "interrupted";
    else if (last?.end !== undefined && last.exitCode !== 0) state = "failed";
    else if (last !== undefined && last.end === undefined) state = "interrupted"; // its process died without a word (SIGKILL, a lost node)
    else state = run.run === "partial" ? "partial" : "not started";
    const withR = job.command === "ortho" || run.r.length > 0;
    const stats = rStats(run.r);
    jobs.push({
      id: job.id, command: job.command, out: job.out, state, done: run.done, total: run.total, unit: run.unit,
      vectors: job.command === "eval" ? run.r.length : run.done,
      rBelow1: withR ? stats.below1 : null, medianR: withR ? stats.median : null, bestR: withR ? stats.best : null,
      stopReason: run.stopReason ?? null, wallSeconds: wallSeconds(record), device: last?.device ?? null, host: last?.host ?? null,
      attempts: record.attempts.length, lastExitCode: last?.exitCode ?? null, slurm: sl, log: logFile(batch, job.id), error: run.error ?? null,
    });
  }
  return {
    format: SUMMARY_FORMAT, file: batch.file, folder: batch.folder, written: new Date().toISOString(), jobs,
    totals: {
      jobs: jobs.length, complete: jobs.filter((j) => j.state === "complete").length,
      vectors: jobs.filter((j) => j.command !== "eval").reduce((s, j) => s + j.vectors, 0),
      rBelow1: jobs.filter((j) => j.command === "ortho").reduce((s, j) => s + (j.rBelow1 ?? 0), 0),
    },
  };
}

export async function writeSummary(batch: Batch, summary: BatchSummary): Promise<string> {
  const file = join(batch.folder, SUMMARY_FILE);
  await writeTextAtomic(file, JSON.stringify(summary, null, 1) + "\n");
  return file;
}

/** The status table: one line per job. */
export function formatSummary(s: BatchSummary): string {
  const cols: [string, number, (j: JobSummary) => string][] = [
    ["job", 0, (j) => j.id],
    ["command", 0, (j) => j.command],
    ["state", 0, (j) => j.state + (j.slurm ? ` (${j.slurm.job} ${j.slurm.state})` : "")],
    ["progress", 0, (j) => `${j.done}/${j.total ?? "?"} ${j.unit}`],
    ["r < 1", 0, (j) => (j.rBelow1 === null ? "–" : String(j.rBelow1))],
    ["median r", 0, (j) => (j.medianR === null ? "–" : j.medianR.toFixed(3))],
    ["wall", 0, (j) => (j.wallSeconds > 0 ? formatSeconds(j.wallSeconds) : "–")],
    ["device", 0, (j) => j.device ?? "–"],
  ];
  for (const c of cols) c[1] = Math.max(c[0].length, ...s.jobs.map((j) => c[2](j).length));
  const line = (cells: string[]) => cells.map((x, i) => x.padEnd(cols[i]![1])).join("  ").trimEnd();
  const out = [line(cols.map((c) => c[0])), ...s.jobs.map((j) => line(cols.map((c) => c[2](j))))];
  for (const j of s.jobs) if (j.error) out.push(`${j.id}: ${j.error}`);
  out.push(`${s.totals.complete}/${s.totals.jobs} jobs complete; ${s.totals.vectors} vectors, ${s.totals.rBelow1} ortho vectors with r < 1; logs in ${join(s.folder, "logs")}`);
  return out.join("\n");
}
