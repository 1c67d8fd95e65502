// Runs one job: its own `melbo train|ortho|eval … --resume` process (a crash, a kill or an
// out-of-memory in one job never takes another with it), output to the job's log, every attempt
// recorded in the batch folder. Used by the local backend for each job and by each Slurm task
// (`melbo batch FILE --run-job ID`).

import { spawn } from "node:child_process";
import { appendFile, open } from "node:fs/promises";
import { hostname } from "node:os";
import { MelboError } from "../errors.js";
import { jobArgs, jobCommandLine, MELBO_BIN, type Placement } from "./job-args.js";
import { jobById, type Batch, type Job } from "./job-file.js";
import { readRunState } from "./job-state.js";
import { logFile, prepareBatchFolder, readJobRecord, runningAttempt, writeJobRecord, type Attempt } from "./records.js";

export interface JobOutcome {
  /** skipped: already complete with these settings; done: ran and completed; failed: non-zero exit (see the log); interrupted: stopped by the batch (SIGTERM), continues on the next run. */
  status: "skipped" | "done" | "failed" | "interrupted";
  exitCode: number | null;
  signal: string | null;
  seconds: number;
  /** One line for the batch's output. */
  message: string;
}

export interface RunJobOptions {
  backend: "local" | "slurm";
  /** Aborting sends SIGTERM to the job: it saves its last block and exits 130. */
  signal?: AbortSignal;
}

const sameArgs = (a: readonly string[] | undefined, b: readonly string[]) => a !== undefined && a.length === b.length && a.every((x, i) => x === b[i]);

/** Whether the job's run is complete and was completed with the arguments it has now (then it is skipped). */
export async function isFinished(batch: Batch, job: Job): Promise<boolean> {
  const state = await readRunState(job);
  if (state.run !== "complete") return false;
  return sameArgs((await readJobRecord(batch, job)).completedArgs, jobArgs(batch, job));
}

export async function runJob(batch: Batch, job: Job, where: Placement, o: RunJobOptions): Promise<JobOutcome> {
  await prepareBatchFolder(batch);
  const record = await readJobRecord(batch, job);
  const running = runningAttempt(record);
  if (running) {
    throw new MelboError(`job ${JSON.stringify(job.id)} is already running (pid ${running.pid}, started ${running.start}): wait for it, or stop it first`, { file: batch.file });
  }
  for (const dep of job.after) {
    const state = await readRunState(jobById(batch, dep));
    if (state.run !== "complete") {
      return { status: "failed", exitCode: null, signal: null, seconds: 0, message: `${job.id}: cannot start: the job it depends on, ${dep}, is not complete (${state.run})` };
    }
  }
  const args = jobArgs(batch, job);
  if (sameArgs(record.completedArgs, args) && (await readRunState(job)).run === "complete") {
    return { status: "skipped", exitCode: 0, signal: null, seconds: 0, message: `${job.id}: complete, skipped` };
  }

  const log = logFile(batch, job.id);
  const commandLine = jobCommandLine(batch, job, where);
  const started = new Date();
  const slurmJob = process.env["SLURM_ARRAY_JOB_ID"] ? `${process.env["SLURM_ARRAY_JOB_ID"]}_${process.env["SLURM_ARRAY_TASK_ID"] ?? ""}` : process.env["SLURM_JOB_ID"];
  await appendFile(log, `\n=== melbo batch: job ${job.id}, attempt ${record.attempts.length + 1}, ${started.toISOString()}, ${hostname()}, device ${where.device}${where.threads > 0 ? `, ${where.threads} threads` : ""}\n$ melbo ${commandLine.map(quote).join(" ")}\n`);
  const fh = await open(log, "a");
  let attempt: Attempt;
  let exit: { code: number | null; signal: NodeJS.Signals | null };
  try {
    const env = { ...process.env, ...(where.threads > 0 ? { MELBO_THREADS: String(where.threads) } : {}) };
    const child = spawn(process.execPath, [MELBO_BIN, ...commandLine], { stdio: ["ignore", fh.fd, fh.fd], env });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
      child.once("error", reject);
      child.once("close", (code, signal) => resolve({ code, signal }));
    });
    attempt = {
      start: started.toISOString(), device: where.device, threads: where.threads, host: hostname(), pid: child.pid ?? -1, backend: o.backend,
      ...(o.backend === "slurm" && slurmJob ? { slurmJob } : {}),
    };
    record.attempts.push(attempt);
    await writeJobRecord(batch, record);
    const stop = () => child.kill("SIGTERM");
    o.signal?.addEventListener("abort", stop, { once: true });
    if (o.signal?.aborted) stop();
    try {
      exit = await exited;
    } finally {
      o.signal?.removeEventListener("abort", stop);
    }
  } finally {
    await fh.close();
  }
  const ended = new Date();
  attempt.end = ended.toISOString();
  attempt.seconds = (ended.getTime() - started.getTime()) / 1000;
  attempt.exitCode = exit.code;
  attempt.signal = exit.signal;
  const state = exit.code === 0 ? await readRunState(job) : undefined;
  if (state?.run === "complete") record.completedArgs = args;
  await writeJobRecord(batch, record);
  const how = exit.signal !== null ? `killed by ${exit.signal}` : `exit ${exit.code}`;
  await appendFile(log, `=== melbo batch: job ${job.id} ended: ${how} after ${attempt.seconds.toFixed(1)} s\n`);
  const base = { exitCode: exit.code, signal: exit.signal, seconds: attempt.seconds };
  if (state?.run === "complete") return { ...base, status: "done", message: `${job.id}: done in ${attempt.seconds.toFixed(1)} s` };
  if (o.signal?.aborted || exit.code === 130) return { ...base, status: "interrupted", message: `${job.id}: interrupted (${how}); the next run of the batch continues it` };
  const why = exit.code === 0 ? `ended without a complete run (${state?.run ?? "?"})` : how;
  return { ...base, status: "failed", message: `${job.id}: failed: ${why}; see ${log}` };
}

/** A shell-readable argument, for the command line shown in the log. */
function quote(s: string): string {
  return /^[A-Za-z0-9_./=:,+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
