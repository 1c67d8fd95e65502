// The local backend: N workers (one per GPU, or CPU slots with the cores split between them) take
// the jobs in dependency order, file order among those ready. Each job is its own process
// (run-job.ts); a failed job only stops the jobs that depend on it.

import { availableParallelism } from "node:os";
import { MelboError, describeError } from "../errors.js";
import type { Placement } from "./job-args.js";
import type { Batch, Job } from "./job-file.js";
import { isFinished, runJob, type JobOutcome } from "./run-job.js";

export type LocalStatus = JobOutcome["status"] | "blocked" | "not run";

export interface LocalResult {
  id: string;
  status: LocalStatus;
  message: string;
}

export interface LocalOptions {
  /** One entry per worker. */
  slots: Placement[];
  /** Aborting stops every running job (SIGTERM: each saves its last block) and starts no other. */
  signal?: AbortSignal;
  /** A line per event: started, done, failed, skipped, blocked. */
  onEvent?: (line: string) => void;
}

/**
 * The workers for `--devices LIST [--workers N] [--threads T]`: one per device when the list names
 * GPUs; N CPU slots for "cpu". Threads: T, else the cores split evenly between the workers (jobs
 * that each took every core would slow each other down).
 */
export function planSlots(devices: string[], workers: number | undefined, threads: number | undefined, cores = availableParallelism()): Placement[] {
  if (devices.length === 0) throw new MelboError("--devices needs at least one device");
  const cpu = devices.every((d) => d === "cpu");
  if (!cpu && devices.includes("cpu")) throw new MelboError(`--devices mixes cpu with GPUs (${devices.join(",")}): give GPUs, or cpu with --workers N`);
  if (!cpu && workers !== undefined && workers !== devices.length) throw new MelboError(`--workers ${workers} with ${devices.length} GPUs: there is one worker per device in --devices`);
  const n = cpu ? (workers ?? 1) : devices.length;
  const t = threads ?? Math.max(1, Math.floor(cores / n));
  return Array.from({ length: n }, (_, i) => ({ device: cpu ? "cpu" : devices[i]!, threads: t }));
}

export async function runLocal(batch: Batch, o: LocalOptions): Promise<LocalResult[]> {
  const say = o.onEvent ?? (() => undefined);
  const results = new Map<string, LocalResult>();
  const finished = new Set<string>(); // complete now: dependents may start
  const pending: Job[] = [];
  for (const job of batch.jobs) {
    if (await isFinished(batch, job)) {
      finished.add(job.id);
      results.set(job.id, { id: job.id, status: "skipped", message: `${job.id}: complete, skipped` });
      say(`${job.id}: complete, skipped`);
    } else {
      pending.push(job);
    }
  }
  const free = o.slots.map((_, i) => i);
  const running = new Map<string, Promise<void>>();

  const start = (job: Job, slot: number) => {
    const where = o.slots[slot]!;
    say(`${job.id}: started (${job.command}) on ${where.device}${where.threads > 0 ? `, ${where.threads} threads` : ""}`);
    const p = runJob(batch, job, where, { backend: "local", ...(o.signal ? { signal: o.signal } : {}) })
      .catch((e: unknown): JobOutcome => ({ status: "failed", exitCode: null, signal: null, seconds: 0, message: `${job.id}: failed: ${describeError(e)}` }))
      .then((r) => {
        results.set(job.id, { id: job.id, status: r.status, message: r.message });
        if (r.status === "done" || r.status === "skipped") finished.add(job.id);
        say(r.message);
        running.delete(job.id);
        free.push(slot);
        free.sort((a, b) => a - b);
      });
    running.set(job.id, p);
  };

  while (pending.length > 0 || running.size > 0) {
    if (!o.signal?.aborted) {
      for (let i = 0; i < pending.length && free.length > 0; ) {
        const job = pending[i]!;
        const failedDep = job.after.find((d) => results.has(d) && !finished.has(d));
        if (failedDep !== undefined) {
          pending.splice(i, 1);
          const message = `${job.id}: not started: ${failedDep} did not complete`;
          results.set(job.id, { id: job.id, status: "blocked", message });
          say(message);
          continue;
        }
        if (job.after.every((d) => finished.has(d))) {
          pending.splice(i, 1);
          start(job, free.shift()!);
          continue;
        }
        i++;
      }
    }
    if (running.size === 0) break; // aborted, or nothing left that can start
    await Promise.race(running.values());
  }
  for (const job of pending) {
    if (!results.has(job.id)) results.set(job.id, { id: job.id, status: o.signal?.aborted ? "not run" : "blocked", message: `${job.id}: not started` });
  }
  return batch.jobs.map((j) => results.get(j.id)!);
}
