// The last step of bench/gpu/run.sh: everything the run measured, in one JSON
// (RESULTS-gpu.json) and one Markdown section for bench/RESULTS.md (RESULTS-gpu.md), with the
// verdicts of issue 11's targets.
//
//   node dist/bench/gpu/report.js --dir OUT [--dry-run]

import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { ThroughputRow } from "./throughput.js";

const argv = process.argv.slice(2);
const dirArg = argv.indexOf("--dir");
const DIR = resolve(dirArg >= 0 ? argv[dirArg + 1]! : "bench/gpu/out");
const DRY = argv.includes("--dry-run");

/** The targets of issue 11. */
const TARGETS = { vectorStepsPerSecond: 5000, overFaithful: 20, overBatched: 1.5 };

interface Baseline {
  /** hf_baseline.py's lines have baseline "transformers" and no mode: the original (faithful) loop. */
  baseline?: string;
  mode: "faithful" | "cached" | "batched";
  dtype: string;
  rows?: number;
  times: number[];
  peak_gpu_bytes?: number | null;
}

const read = (name: string): string | null => (existsSync(join(DIR, name)) ? readFileSync(join(DIR, name), "utf8") : null);
const readJson = <T>(name: string, fallback: T): T => {
  try {
    return JSON.parse(read(name) ?? "") as T;
  } catch {
    return fallback;
  }
};
const jsonLines = <T>(name: string): T[] =>
  (read(name) ?? "").split("\n").filter((l) => l.trim().startsWith("{")).flatMap((l) => {
    try {
      return [JSON.parse(l) as T];
    } catch {
      return [];
    }
  });

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor((s.length - 1) / 2)]!;
}
const fmt = (x: number | null | undefined, digits = 1): string => (x === null || x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(digits));
const verdict = (ok: boolean): string => (DRY ? "(dry run)" : ok ? "met" : "missed");

const env = readJson<Record<string, unknown>>("env.json", {});
const addon = readJson<Record<string, unknown>>("addon.json", {});
const gpu = (read("gpu.txt") ?? "").trim();
const steps = jsonLines<{ step: string; rc: number; seconds: number }>("steps.jsonl");
const melbo = readJson<{ rows: ThroughputRow[] }>("melbo-rows.json", { rows: [] }).rows;
const baselines = jsonLines<Baseline>("baselines.jsonl").map((b) => {
  const rows = b.rows ?? 1;
  const stepSeconds = median(b.times.slice(1)); // step 1 pays first-touch allocations
  const mode = b.mode ?? "faithful";
  return { mode, library: b.baseline === "transformers" ? "transformers" : "torch", dtype: b.dtype, rows, stepSeconds, vectorStepsPerSecond: rows / stepSeconds, peakMiB: b.peak_gpu_bytes ? b.peak_gpu_bytes / 2 ** 20 : null };
});

const measured = melbo.filter((r) => r.vectorStepsPerSecond !== null);
const best = measured.reduce<ThroughputRow | null>((a, r) => (a === null || r.vectorStepsPerSecond! > a.vectorStepsPerSecond! ? r : a), null);
const faithful = baselines.filter((b) => b.mode === "faithful").reduce<(typeof baselines)[number] | null>((a, b) => (a === null || b.vectorStepsPerSecond > a.vectorStepsPerSecond ? b : a), null);
const batched = baselines.filter((b) => b.mode === "batched").reduce<(typeof baselines)[number] | null>((a, b) => (a === null || b.vectorStepsPerSecond > a.vectorStepsPerSecond ? b : a), null);
const rate = best?.vectorStepsPerSecond ?? NaN;
const results = {
  date: new Date().toISOString(),
  dryRun: DRY,
  gpu,
  env,
  addon,
  steps,
  melbo,
  baselines,
  targets: {
    vectorStepsPerSecond: { target: TARGETS.vectorStepsPerSecond, best: rate, met: rate >= TARGETS.vectorStepsPerSecond },
    overFaithful: { target: TARGETS.overFaithful, ratio: rate / (faithful?.vectorStepsPerSecond ?? NaN), met: rate / (faithful?.vectorStepsPerSecond ?? NaN) >= TARGETS.overFaithful },
    overBatched: { target: TARGETS.overBatched, ratio: rate / (batched?.vectorStepsPerSecond ?? NaN), met: rate / (batched?.vectorStepsPerSecond ?? NaN) >= TARGETS.overBatched },
    minutesFor1558x1000: (1558 * 1000) / rate / 60,
  },
};
writeFileSync(join(DIR, "RESULTS-gpu.json"), JSON.stringify(results, null, 1) + "\n");

const t = results.targets;
const lines = [
  `## GPU (bench/gpu/run.sh${DRY ? " --cpu-dry-run: tiny shapes on the CPU build, NOT a GPU measurement" : ""})`,
  "",
  `Run of ${results.date.slice(0, 16).replace("T", " ")} UTC. GPU: ${gpu || "none"}; PyTorch ${String(env["torch"] ?? "?")}, CUDA ${String(env["cuda"] ?? "none")}; melbo's addon built against libtorch ${String(addon["addonTorch"] ?? "?")} (CUDA device seen: ${String(addon["cudaAvailable"] ?? "?")}, CUDA kernels built: ${String(addon["cudaKernels"] ?? "?")}).`,
  `Slice: ${DRY ? "a tiny random model (d = 128)" : "Qwen1.5-1.8B-shaped random weights made on the machine"}, steering at the output of block 8, matched at block 16, the 26-token prompt; every row of one run, side by side.`,
  "melbo's rows are whole orthoBlock calls (z0 forward included) in the default block mode: rows kept orthogonal to the basis and to each other in float64 every step, gradients projected off the other rows; the batched PyTorch loop only projects off θ0, so its rows drift towards each other (the quality it loses is bench/quality.ts's subject).",
  "Peak GPU memory: melbo's rows are the process's whole use as nvidia-smi sees it (CUDA context and cached blocks included); the PyTorch rows are torch.cuda.max_memory_allocated (live tensors only), so they read lower for the same work.",
  "",
  "| step | status | seconds |",
  "|---|---|---:|",
  ...steps.map((s) => `| ${s.step} | ${s.rc === 0 ? "ok" : `failed (rc ${s.rc})`} | ${s.seconds} |`),
  "",
  "| melbo ortho block loop | B | vector-steps/s | peak GPU MiB |",
  "|---|---:|---:|---:|",
  ...melbo.map((r) => `| ${r.dtype} | ${r.rows} | ${r.error ? `failed: ${r.error}` : fmt(r.vectorStepsPerSecond)} | ${fmt(r.peakMiB, 0)} |`),
  "",
  "| PyTorch loop | dtype | B | s / step (median of steps 2…) | vector-steps/s | peak GPU MiB |",
  "|---|---|---:|---:|---:|---:|",
  ...baselines.map((b) => `| ${b.library === "transformers" ? "transformers Qwen2, " : ""}${b.mode === "faithful" ? "faithful (blocks 0…16 every step)" : "batched (the slice on B vectors at once)"} | ${b.dtype} | ${b.rows} | ${fmt(b.stepSeconds, 4)} | ${fmt(b.vectorStepsPerSecond)} | ${fmt(b.peakMiB, 0)} |`),
  "",
  "| target | value | verdict |",
  "|---|---:|---|",
  `| ≥ ${TARGETS.vectorStepsPerSecond} vector-steps/s, best mode (${best ? `${best.dtype}, B = ${best.rows}` : "–"}) | ${fmt(rate)} (1558 × 1000 in ${fmt(t.minutesFor1558x1000)} min) | ${verdict(t.vectorStepsPerSecond.met)} |`,
  `| ≥ ${TARGETS.overFaithful}× the faithful PyTorch loop (its best dtype) | ${fmt(t.overFaithful.ratio, 2)}× | ${verdict(t.overFaithful.met)} |`,
  `| ≥ ${TARGETS.overBatched}× the batched PyTorch loop (its best B and dtype) | ${fmt(t.overBatched.ratio, 2)}× | ${verdict(t.overBatched.met)} |`,
  "",
];
writeFileSync(join(DIR, "RESULTS-gpu.md"), lines.join("\n"));
process.stderr.write(`wrote ${join(DIR, "RESULTS-gpu.json")} and RESULTS-gpu.md\n`);
