// `melbo batch FILE`: many train, ortho and eval jobs from one job file (src/batch/, docs/batch.md),
// on local workers or as a Slurm job array; `--status` shows where each job is, `--run-job ID` is
// what one Slurm task runs.

import { join } from "node:path";
import { MelboError } from "../../errors.js";
import { jobById, readBatchFile, type Batch } from "../../batch/job-file.js";
import { planSlots, runLocal } from "../../batch/local.js";
import { runJob } from "../../batch/run-job.js";
import { slurmStatus, submitSlurm, type SlurmOptions } from "../../batch/slurm.js";
import { formatSummary, summarise, writeSummary } from "../../batch/summary.js";
import { prepareBatchFolder } from "../../batch/records.js";
import { writeBatchReport } from "../../batch/report.js";
import { int, oneOf, str, UsageError, type Values } from "../args.js";
import { defaultChoice, defaultString, type Command, type OptionTable } from "../command.js";
import { abortOnSignals } from "./ortho.js";

const BACKENDS = ["local", "slurm"] as const;

const batchOptions = {
  status: { type: "boolean", help: "show each job's state and progress (and write FOLDER/summary.json); runs nothing" },
  report: { type: "boolean", help: "melbo report over the batch: each complete job's report.html and FOLDER/report.html linking them; runs nothing" },
  backend: { type: "string", value: "local|slurm", default: "local", help: "local: workers on this machine; slurm: submit a job array with sbatch" },
  devices: { type: "string", value: "cpu|cuda:0,cuda:1,…", default: "cpu", help: "local: one worker per GPU listed; slurm: the --device of every task (cuda: the GPU Slurm gives it)" },
  workers: { type: "string", value: "N", default: 1, help: "local, --devices cpu: jobs run at once (the cores are split between them)" },
  "job-threads": { type: "string", value: "N", defaultText: "local: the cores / workers; slurm: SLURM_CPUS_PER_TASK", help: "CPU threads of each job (its --threads)" },
  folder: { type: "string", value: "DIR", defaultText: "the file's \"folder\", else FILE.batch beside it", help: "batch folder: logs, job records, summary.json" },
  partition: { type: "string", value: "P", defaultText: "Slurm's default", help: "slurm: sbatch --partition" },
  gres: { type: "string", value: "gpu:1", defaultText: "none", help: "slurm: sbatch --gres (per task)" },
  time: { type: "string", value: "TIME", defaultText: "Slurm's default", help: "slurm: sbatch --time per task (a killed task resumes when resubmitted)" },
  "cpus-per-task": { type: "string", value: "N", defaultText: "Slurm's default", help: "slurm: sbatch --cpus-per-task" },
  mem: { type: "string", value: "SIZE", defaultText: "Slurm's default", help: "slurm: sbatch --mem per task" },
  "sbatch-arg": { type: "string", multiple: true, value: "ARG", defaultText: "none", help: "slurm: one more sbatch argument, e.g. --sbatch-arg=--account=A" },
  "run-job": { type: "string", value: "ID", defaultText: "none", help: "run one job of the file and exit with its code (what each Slurm task runs)" },
} satisfies OptionTable;

function slurmOptions(v: Values): SlurmOptions {
  const raw = v["sbatch-arg"];
  const extra = Array.isArray(raw) ? raw : typeof raw === "string" ? [raw] : [];
  const device = str(v, "devices") ?? defaultString(batchOptions, "devices");
  if (device.includes(",")) throw new UsageError(`--devices with --backend slurm is one device for every task (cpu or cuda), got "${device}": Slurm places the tasks`);
  const o: SlurmOptions = { device, extra };
  for (const key of ["partition", "gres", "time", "mem"] as const) {
    const x = str(v, key);
    if (x !== undefined) o[key] = x;
  }
  if (str(v, "cpus-per-task") !== undefined) o.cpusPerTask = int(v, "cpus-per-task", 1, 1);
  if (str(v, "job-threads") !== undefined) o.threads = int(v, "job-threads", 1, 1);
  return o;
}

const SLURM_ONLY = ["partition", "gres", "time", "cpus-per-task", "mem", "sbatch-arg"] as const;

export const batchCommand: Command = {
  name: "batch",
  summary: "run many train, ortho and eval jobs from a job file, on local workers or on Slurm",
  options: batchOptions,
  positionals: true,
  operands: "FILE",
  notes: [
    "FILE is JSON (docs/batch.md): jobs with their settings, output folders and dependencies. Every job runs",
    "as its own `melbo train|ortho|eval … --resume` process: the same command again skips finished jobs and",
    "continues partial ones, bit for bit. Logs, records and summary.json are in the batch folder.",
  ],
  async run(v: Values, positionals: string[]) {
    if (positionals.length !== 1) throw new UsageError(`give one job file: melbo batch FILE (got ${positionals.length} arguments)`);
    const backend = oneOf(v, "backend", BACKENDS, defaultChoice(batchOptions, "backend", BACKENDS));
    if (backend === "local") {
      for (const key of SLURM_ONLY) if (v[key] !== undefined) throw new UsageError(`--${key} is for --backend slurm`);
    }
    const folder = str(v, "folder");
    const batch = await readBatchFile(positionals[0]!, folder);

    const runJobId = str(v, "run-job");
    if (runJobId !== undefined) return runOneJob(batch, runJobId, v);

    if (v["status"] === true || v["report"] === true) {
      const view = backend === "slurm" ? await slurmStatus(batch) : undefined;
      const summary = await summarise(batch, view?.jobs);
      await prepareBatchFolder(batch);
      await writeSummary(batch, summary);
      process.stdout.write(formatSummary(summary) + "\n");
      if (view?.note) process.stdout.write(view.note + "\n");
      if (v["report"] === true) {
        const { path, problems } = await writeBatchReport(batch, summary);
        for (const p of problems) process.stderr.write(p + "\n");
        process.stdout.write(path + "\n");
      }
      return;
    }

    await prepareBatchFolder(batch);
    if (backend === "slurm") {
      const submitted = await submitSlurm(batch, slurmOptions(v), (line) => process.stdout.write(line + "\n"));
      process.stdout.write(`${submitted} job(s) submitted; follow them with: melbo batch ${positionals[0]} --backend slurm --status\n`);
      return;
    }

    const devices = (str(v, "devices") ?? defaultString(batchOptions, "devices")).split(",").map((d) => d.trim());
    const slots = planSlots(
      devices,
      str(v, "workers") === undefined ? undefined : int(v, "workers", 1, 1),
      str(v, "job-threads") === undefined ? undefined : int(v, "job-threads", 1, 1),
    );
    const abort = abortOnSignals();
    let results;
    try {
      process.stdout.write(`batch ${batch.file}: ${batch.jobs.length} jobs, ${slots.length} worker(s) (${slots.map((s) => s.device).join(", ")}); logs in ${join(batch.folder, "logs")}\n`);
      results = await runLocal(batch, { slots, signal: abort.signal, onEvent: (line) => process.stdout.write(line + "\n") });
    } finally {
      abort.dispose();
    }
    const summary = await summarise(batch);
    const file = await writeSummary(batch, summary);
    process.stdout.write("\n" + formatSummary(summary) + `\nsummary: ${file}\n`);
    if (abort.signal.aborted) throw new DOMException("interrupted: every job saved its last block; run the same command to continue", "AbortError");
    const bad = results.filter((r) => r.status !== "done" && r.status !== "skipped");
    if (bad.length > 0) throw new MelboError(`${bad.length} of ${results.length} jobs did not complete (${bad.map((r) => `${r.id}: ${r.status}`).join(", ")}): see their logs, fix, and run the same command to continue`, { file: batch.file });
  },
};

/** One job, in this process's place (a Slurm task): exits with the job's code so that afterok holds only for a complete job. */
async function runOneJob(batch: Batch, id: string, v: Values): Promise<void> {
  const job = jobById(batch, id);
  const device = str(v, "devices") ?? defaultString(batchOptions, "devices");
  if (device.includes(",")) throw new UsageError(`--run-job runs on one device, got --devices ${device}`);
  const slurmCpus = Number(process.env["SLURM_CPUS_PER_TASK"] ?? "");
  const threads = str(v, "job-threads") !== undefined ? int(v, "job-threads", 1, 1) : Number.isInteger(slurmCpus) && slurmCpus > 0 ? slurmCpus : 0;
  const abort = abortOnSignals();
  try {
    const r = await runJob(batch, job, { device, threads }, { backend: process.env["SLURM_JOB_ID"] ? "slurm" : "local", signal: abort.signal });
    process.stdout.write(r.message + "\n");
    if (r.status === "interrupted") throw new DOMException(r.message, "AbortError");
    if (r.status === "failed") throw new MelboError(r.message, { file: batch.file });
  } finally {
    abort.dispose();
  }
}
