// The Slurm backend: one array task per job, each running `melbo batch FILE --run-job ID` (run-job.ts),
// dependencies as afterok. Slurm does all the placing; melbo only submits and reads back.
//
// Why several sbatch calls: a job array takes one --dependency for all its tasks, and Slurm has no
// per-task dependency inside one array. So the jobs without dependencies go in one array, and each
// job with dependencies is its own one-task array (same script, --array=<its index>) submitted with
// --dependency=afterok:<jobid>_<task> on exactly the tasks it needs (Slurm accepts single array
// tasks there). The array task index is the job's position in the file everywhere, so one script
// serves every submission. --kill-on-invalid-dep=yes: when a task fails, the tasks waiting on it
// are cancelled instead of pending forever (DependencyNeverSatisfied).
//
// Resubmission (the same command again) skips complete jobs and jobs still queued or running (by
// squeue), and submits the rest; a dependency on a job still queued points at its existing task.

import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { MelboError, describeError } from "../errors.js";
import { writeTextAtomic } from "../io/atomic.js";
import { MELBO_BIN } from "./job-args.js";
import type { Batch, Job } from "./job-file.js";
import { isFinished } from "./run-job.js";
import type { SlurmView } from "./summary.js";

const run = promisify(execFile);

export interface SlurmOptions {
  /** --device of every task: cpu, or cuda (the GPU Slurm allocates is cuda:0 inside the task). */
  device: string;
  partition?: string;
  gres?: string;
  time?: string;
  cpusPerTask?: number;
  mem?: string;
  /** CPU threads per task (default SLURM_CPUS_PER_TASK, read by the task). */
  threads?: number;
  /** More sbatch arguments, as given. */
  extra: string[];
}

/** FOLDER/slurm/submissions.json: the Slurm task of each job's latest submission. */
interface Submissions {
  jobs: Record<string, { task: string; submitted: string }>;
}

const slurmFolder = (batch: Batch) => join(batch.folder, "slurm");
const submissionsFile = (batch: Batch) => join(slurmFolder(batch), "submissions.json");
export const scriptFile = (batch: Batch) => join(slurmFolder(batch), "task.sh");

async function readSubmissions(batch: Batch): Promise<Submissions> {
  const file = submissionsFile(batch);
  if (!existsSync(file)) return { jobs: {} };
  try {
    const doc = JSON.parse(await readFile(file, "utf8")) as Submissions;
    if (typeof doc.jobs !== "object" || doc.jobs === null) throw new Error("no jobs");
    return doc;
  } catch (e) {
    throw new MelboError(`is damaged (${describeError(e)}): delete it to submit the unfinished jobs again`, { file });
  }
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** The script of every task: picks its job by SLURM_ARRAY_TASK_ID (= the job's index in the file). */
export function taskScript(batch: Batch, o: SlurmOptions): string {
  const ids = batch.jobs.map((j) => j.id); // ids are [A-Za-z0-9._-]: safe unquoted in a bash array
  return [
    "#!/bin/bash",
    `# Written by melbo batch for ${batch.file}: Slurm array task N runs job N of the file.`,
    `IDS=(${ids.join(" ")})`,
    'ID="${IDS[$SLURM_ARRAY_TASK_ID]}"',
    '[ -n "$ID" ] || { echo "melbo batch: no job with index $SLURM_ARRAY_TASK_ID" >&2; exit 2; }',
    `exec ${shellQuote(process.execPath)} ${shellQuote(MELBO_BIN)} batch ${shellQuote(batch.file)} --folder ${shellQuote(batch.folder)} --run-job "$ID" --devices ${shellQuote(o.device)}` +
      (o.threads !== undefined ? ` --job-threads ${o.threads}` : ""),
    "",
  ].join("\n");
}

async function slurmCommand(name: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await run(name, args, { maxBuffer: 16 << 20 });
    return stdout;
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === "ENOENT") throw new MelboError(`${name} is not on the PATH: --backend slurm needs the Slurm client commands (sbatch, squeue) of a cluster`);
    throw new MelboError(`${name} ${args.join(" ")} failed: ${(err.stderr ?? "").trim() || describeError(e)}`);
  }
}

/** Tasks squeue lists (pending, running, …), by task id ("123_4"). */
async function queued(): Promise<Map<string, string>> {
  const out = await slurmCommand("squeue", ["-h", "-r", "-o", "%i|%T"]);
  const map = new Map<string, string>();
  for (const line of out.split("\n")) {
    const [id, state] = line.trim().split("|");
    if (id && state) map.set(id, state);
  }
  return map;
}

/** The jobs so that every job comes after the jobs it depends on (file order otherwise). */
function dependencyOrder(batch: Batch): Job[] {
  const byId = new Map(batch.jobs.map((j) => [j.id, j]));
  const out: Job[] = [];
  const seen = new Set<string>();
  const visit = (job: Job) => {
    if (seen.has(job.id)) return;
    seen.add(job.id);
    for (const dep of job.after) visit(byId.get(dep)!);
    out.push(job);
  };
  batch.jobs.forEach(visit);
  return out;
}

/** Submits every job that is neither complete nor queued; returns how many. */
export async function submitSlurm(batch: Batch, o: SlurmOptions, say: (line: string) => void): Promise<number> {
  await mkdir(slurmFolder(batch), { recursive: true });
  const script = scriptFile(batch);
  await writeTextAtomic(script, taskScript(batch, o));
  await chmod(script, 0o755);
  const subs = await readSubmissions(batch);
  const active = await queued();

  const taskOf = new Map<string, string>(); // jobs still queued or submitted now: their task ids
  const finished = new Set<string>();
  const roots: Job[] = [];
  const dependent: Job[] = [];
  for (const job of dependencyOrder(batch)) {
    if (await isFinished(batch, job)) {
      finished.add(job.id);
      say(`${job.id}: complete, skipped`);
      continue;
    }
    const prev = subs.jobs[job.id]?.task;
    if (prev !== undefined && active.has(prev)) {
      taskOf.set(job.id, prev);
      say(`${job.id}: already in Slurm as ${prev} (${active.get(prev)}), not submitted again`);
      continue;
    }
    if (job.after.every((d) => finished.has(d))) roots.push(job);
    else dependent.push(job);
  }

  const common = [
    "--parsable", `--job-name=melbo-${batch.name}`, `--output=${join(batch.folder, "logs", "slurm-%A_%a.out")}`,
    ...(o.partition !== undefined ? [`--partition=${o.partition}`] : []),
    ...(o.gres !== undefined ? [`--gres=${o.gres}`] : []),
    ...(o.time !== undefined ? [`--time=${o.time}`] : []),
    ...(o.cpusPerTask !== undefined ? [`--cpus-per-task=${o.cpusPerTask}`] : []),
    ...(o.mem !== undefined ? [`--mem=${o.mem}`] : []),
    ...o.extra,
  ];
  const submit = async (jobs: Job[], deps: string[]) => {
    const args = [...common, `--array=${jobs.map((j) => j.index).join(",")}`, ...(deps.length > 0 ? [`--dependency=afterok:${deps.join(":")}`, "--kill-on-invalid-dep=yes"] : []), script];
    const out = (await slurmCommand("sbatch", args)).trim();
    const arrayId = out.split(";")[0]!.trim(); // --parsable: "jobid" or "jobid;cluster"
    if (!/^\d+$/.test(arrayId)) throw new MelboError(`sbatch answered ${JSON.stringify(out)}, not a job id`);
    for (const job of jobs) {
      const task = `${arrayId}_${job.index}`;
      taskOf.set(job.id, task);
      subs.jobs[job.id] = { task, submitted: new Date().toISOString() };
      say(`${job.id}: submitted as ${task}${deps.length > 0 ? ` (after ${deps.join(", ")})` : ""}`);
    }
    // Saved after every sbatch: a failure half-way keeps the tasks already submitted known.
    await writeTextAtomic(submissionsFile(batch), JSON.stringify(subs, null, 1) + "\n");
  };
  if (roots.length > 0) await submit(roots, []);
  for (const job of dependent) {
    const deps = job.after.filter((d) => !finished.has(d)).map((d) => taskOf.get(d)!);
    await submit([job], deps);
  }
  return roots.length + dependent.length;
}

/** Slurm's view of the batch's latest tasks: squeue for queued and running ones, sacct (when the cluster keeps accounting) for ended ones. */
export async function slurmStatus(batch: Batch): Promise<{ jobs: SlurmView; note?: string }> {
  const subs = await readSubmissions(batch);
  const view: SlurmView = new Map();
  const tasks = Object.entries(subs.jobs);
  if (tasks.length === 0) return { jobs: view, note: "no Slurm submission recorded for this batch yet" };
  const active = await queued();
  const ended: string[] = [];
  for (const [id, { task }] of tasks) {
    const state = active.get(task);
    if (state !== undefined) view.set(id, { job: task, state });
    else ended.push(id);
  }
  if (ended.length === 0) return { jobs: view };
  try {
    const ids = [...new Set(ended.map((id) => subs.jobs[id]!.task.split("_")[0]!))];
    const out = await slurmCommand("sacct", ["-n", "-P", "-X", "-o", "JobID,State", "-j", ids.join(",")]);
    const states = new Map<string, string>();
    for (const line of out.split("\n")) {
      const [jid, state] = line.trim().split("|");
      if (jid && state) states.set(jid, state.split(" ")[0]!);
    }
    for (const id of ended) {
      const task = subs.jobs[id]!.task;
      const state = states.get(task);
      if (state !== undefined) view.set(id, { job: task, state });
    }
    return { jobs: view };
  } catch {
    return { jobs: view, note: "sacct has no accounting here: the states of ended tasks come from the job folders and records" };
  }
}
