// `npm run bench -- quality`: only the block-mode quality benchmark (bench/quality.ts); the other
// sections of RESULTS.md are kept from RESULTS.json.
// `npm run bench`: melbo against the Python baseline, side by side in one run, written to
// bench/RESULTS.md (and the raw numbers to bench/results.json). See bench/README section of
// RESULTS.md for what each row measures. Options:
//   --quick            a small model (hidden 256) to check the harness in a minute (numbers meaningless)
//   --dir DIR          where the synthetic 1.8B-shaped bf16 checkpoint goes (default: $TMPDIR/melbo-bench-1p8b);
//                      reused when already there, deleted at the end unless --keep
//   --keep             keep that checkpoint
//   --blocks 4,8,16    block sizes B of the block-mode rows (f32 and bf16)
//   --large-blocks 32  extra f32 block sizes (best-mode candidates; "" for none)
//   --skip a,b         skip sections: limits python f32 bf16 bf16native profile generate memory losses quality
//   --out FILE         default bench/RESULTS.md
//   --render           only re-render FILE from its .json (after editing bench/NOTES.md)
//   --device cuda      where melbo's models run (default cpu; bench/gpu/run.sh passes cuda)
// Environment: MELBO_THREADS (threads per job, default all cores), BENCH_PYTHON (default /usr/bin/python3).

import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { Bench } from "tinybench";
import { DEFAULT_MODEL_OPTIONS } from "../src/cli/commands/make-test-model.js";
import { makeTestModel, type TestModelOptions } from "../src/model/make-test-model.js";
import { checkDevice, loadModel, type Model } from "../src/model/model.js";
import { writeSafetensors } from "../src/model/safetensors.js";
import { getThreads, native } from "../src/native.js";
import { ortho } from "../src/search/ortho.js";
import { kernelSupport } from "../src/util/cpu.js";
import { runQuality } from "./quality.js";
import type { Limit, LossRow, MemoryRow, OrthoRow, Profile, PyRow, Results } from "./results.js";
import {
  PROMPT_TOKENS, QWEN15_1P8B, basisOf, benchTheta0, cpuSnapshot, fmt, machineInfo, othersShare, median, packageRoot, pct, profileFromTrace, python, run, sliceFlops, table,
  type MachineInfo, type Shape,
} from "./lib.js";

// ------------------------------------------------------------------ options
const argv = process.argv.slice(2);
const arg = (name: string): string | undefined => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const QUICK = argv.includes("--quick");
const QUALITY_ONLY = argv[0] === "quality";
const KEEP = argv.includes("--keep");
const SKIP = new Set((arg("skip") ?? "").split(",").filter(Boolean));
const OUT = resolve(arg("out") ?? (QUICK ? join(tmpdir(), "melbo-RESULTS.quick.md") : join(packageRoot, "bench", "RESULTS.md")));
const BLOCKS = (arg("blocks") ?? "4,8,16").split(",").map(Number);
/** Extra f32 block sizes beyond the issue's {4, 8, 16}, as candidates for the best mode. */
const LARGE_BLOCKS = (arg("large-blocks") ?? (QUICK ? "" : "32")).split(",").filter(Boolean).map(Number);
const DEVICE = checkDevice(arg("device") ?? "cpu");
const SOURCE = 8, TARGET = 16;
const THETA0_NORM = 7; // the original's code vector has norm 7

const MODEL: TestModelOptions = QUICK ? { ...QWEN15_1P8B, hidden: 256, heads: 8, kvHeads: 8, intermediate: 704 } : QWEN15_1P8B;
const SHAPE: Shape = { hidden: MODEL.hidden!, intermediate: MODEL.intermediate!, heads: MODEL.heads!, kvHeads: MODEL.kvHeads! };
const DIR = resolve(arg("dir") ?? join(tmpdir(), QUICK ? "melbo-bench-quick" : "melbo-bench-1p8b"));
const DEFAULT_MODEL_DIR = join(packageRoot, "models", "default");

// Steps per timed call and calls per row: each call's per-step time is measured from step 2 on
// (step 1 also computes the target z0); the row reports the median over calls.
const PLAN = QUICK
  ? { steps: 4, calls: 2, pySteps: 5, nativeSteps: 3, genIters: 2, lossCount: 4, lossSteps: 60, nativeLossSteps: 20 }
  : { steps: 3, calls: 3, pySteps: 6, nativeSteps: 2, genIters: 2, lossCount: 8, lossSteps: 200, nativeLossSteps: 40 };

const log = (s: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${s}\n`);

// ------------------------------------------------------------------ results

const results: Results = { quick: QUICK, shape: SHAPE, limits: [], python: [], ortho: [], profiles: [], memory: [], lossCompare: [], kernels: [], notes: [] };
/** Row counts whose kernel paths RESULTS.md lists: B = 1, 4, 16, 64 vectors of the 26-token prompt. */
const KERNEL_ROWS = [26, 104, 416, 1664];

const started = performance.now();
const startCpu = cpuSnapshot();
const threads = () => getThreads();
const perVectorStep = sliceFlops(SHAPE, PROMPT_TOKENS.length, TARGET - SOURCE, true);
const faithfulPerStep = perVectorStep + sliceFlops(SHAPE, PROMPT_TOKENS.length, SOURCE + 1, false);

/** What the native loader picks for bf16 weights here (mirrors chooseActivationDtype in native/qwen2.cpp). */
function bf16Activations(flags: string[]): "bf16" | "f32" {
  const env = process.env["MELBO_BF16_MATMUL"];
  if (env === "bf16" || env === "f32") return env;
  return kernelSupport(flags).fastBf16 ? "bf16" : "f32";
}

// ------------------------------------------------------------------ melbo ortho rows
/** Runs `fn` with environment variables set (read by the addon at each call), then restores them. */
async function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

async function orthoCall(model: Model, x: Float32Array, theta0: Float32Array, rows: number, steps: number) {
  const stamps: number[] = [];
  const losses: number[] = [];
  const out = await model.orthoBlock(
    {
      x, theta0, basis: basisOf(theta0), rows, steps, source: SOURCE, target: TARGET, lr: 0.01, betas: [0.9, 0.999], eps: 1e-8,
      projection: "post", lossTolerance: 0, progressEvery: 1,
    },
    (p) => {
      stamps.push(performance.now());
      losses.push(p.meanLoss);
    },
  );
  const perStepMs = (stamps[stamps.length - 1]! - stamps[0]!) / Math.max(1, stamps.length - 1);
  return { perStepMs, losses, out };
}

async function orthoRow(label: string, model: Model, dtype: string, activations: string, x: Float32Array, theta0: Float32Array,
  rows: number, steps: number, calls: number): Promise<OrthoRow> {
  const callSeconds: number[] = [];
  let losses: number[] = [];
  const bench = new Bench({ name: label, iterations: calls, time: 0, warmup: false, throws: true });
  const before = cpuSnapshot();
  bench.add(label, async () => {
    const r = await orthoCall(model, x, theta0, rows, steps);
    callSeconds.push(r.perStepMs / 1000);
    if (losses.length === 0) losses = r.losses;
    return { overriddenDuration: r.perStepMs };
  });
  await bench.run();
  const res = bench.tasks[0]!.result;
  if (res.state !== "completed") throw new Error(`${label}: ${res.state}`);
  const stepSeconds = res.latency.p50 / 1000;
  const row: OrthoRow = {
    label, dtype, activations, rows, stepSeconds, callSeconds, losses, others: othersShare(before, cpuSnapshot()),
    vectorStepsPerSecond: rows / stepSeconds,
    gflops: (rows * perVectorStep) / stepSeconds / 1e9,
  };
  log(`${label}: ${fmt(stepSeconds, 3)} s/step, ${fmt(row.vectorStepsPerSecond, 3)} vector-steps/s, ${fmt(row.gflops, 1)} GFLOP/s (calls ${callSeconds.map((s) => s.toFixed(3)).join(", ")}; others used ${pct(row.others)} of the CPU)`);
  results.ortho.push(row);
  return row;
}

async function profileRow(label: string, model: Model, x: Float32Array, theta0: Float32Array, rows: number, steps = 3): Promise<void> {
  const file = join(DIR, `profile-${label.replace(/[^a-z0-9]+/gi, "-")}.json`);
  process.env["MELBO_PROFILE"] = file;
  try {
    const r = await orthoCall(model, x, theta0, rows, steps);
    const p = profileFromTrace(file, steps - 1);
    results.profiles.push({ label, stepMs: r.perStepMs, ops: p.ops.slice(0, 14), totalMs: p.totalMs });
    log(`profile ${label}: ${p.ops.slice(0, 4).map((o) => `${o.name} ${pct(o.share)}`).join(", ")}`);
  } finally {
    delete process.env["MELBO_PROFILE"];
    rmSync(file, { force: true });
  }
}

// ------------------------------------------------------------------ sections
async function checkpoint(): Promise<string> {
  const cfgFile = join(DIR, "config.json");
  const want = JSON.stringify([MODEL.layers, MODEL.hidden, MODEL.intermediate, MODEL.heads, MODEL.seed]);
  if (existsSync(cfgFile) && existsSync(join(DIR, "model.safetensors")) && existsSync(join(DIR, "bench-shape.json")) &&
      readFileSync(join(DIR, "bench-shape.json"), "utf8") === want) {
    log(`reusing the checkpoint in ${DIR}`);
    results.checkpoint = { dir: DIR, gib: statSync(join(DIR, "model.safetensors")).size / 2 ** 30, writeSeconds: null };
    return DIR;
  }
  log(`writing a random ${QUICK ? "small" : "Qwen1.5-1.8B-shaped"} bf16 checkpoint to ${DIR}`);
  const t0 = performance.now();
  await makeTestModel(DIR, MODEL);
  writeFileSync(join(DIR, "bench-shape.json"), want);
  results.checkpoint = { dir: DIR, gib: statSync(join(DIR, "model.safetensors")).size / 2 ** 30, writeSeconds: (performance.now() - t0) / 1000 };
  log(`  ${fmt(results.checkpoint.gib)} GiB in ${fmt(results.checkpoint.writeSeconds!, 1)} s`);
  return DIR;
}

async function pythonBaseline(dir: string, inputs: string, xFile: string, bf16Fast: boolean): Promise<void> {
  // The cached loop in bf16 only where the CPU multiplies bf16 fast (oneDNN, AVX-512): elsewhere
  // libtorch's bf16 product is a scalar loop and one step takes minutes.
  const loops: ["faithful" | "cached", "f32" | "bf16"][] = [["faithful", "f32"], ["cached", "f32"], ...(bf16Fast ? [["cached", "bf16"] as ["cached", "bf16"]] : [])];
  for (const [mode, dtype] of loops) {
    log(`python baseline (${mode}, ${dtype}), ${PLAN.pySteps} steps`);
    const before = cpuSnapshot();
    const r = await python<{ times: number[]; losses: number[]; load_s: number }>(
      ["loop", "--model", dir, "--inputs", inputs, "--mode", mode, "--dtype", dtype, "--steps", String(PLAN.pySteps), ...(mode === "faithful" ? ["--x-out", xFile] : [])],
      threads(),
    );
    const stepSeconds = median(r.times.slice(1)); // step 1 also pays first-touch allocations
    const flops = mode === "faithful" ? faithfulPerStep : perVectorStep;
    const others = othersShare(before, cpuSnapshot());
    results.python.push({ mode, dtype, stepSeconds, times: r.times, losses: r.losses, loadSeconds: r.load_s, vectorStepsPerSecond: 1 / stepSeconds, gflops: flops / stepSeconds / 1e9, others });
    log(`  ${fmt(stepSeconds, 3)} s/step (${r.times.map((t) => t.toFixed(3)).join(", ")}; others used ${pct(others)} of the CPU)`);
  }
}

async function memoryRow(dir: string, dtype: "f32" | "bf16", activations: string, rows: number, steps: number): Promise<void> {
  log(`peak memory: ${dtype} ortho run (blocks 0..16 loaded, 9..16 kept), B = ${rows}, ${steps} steps, in a child process`);
  const out = await run(process.execPath, [join(packageRoot, "dist", "bench", "memory-child.js"), dir, dtype, String(rows), String(steps)], { prefix: "  mem| " });
  const r = JSON.parse(out.trim().split("\n").pop()!) as Omit<MemoryRow, "dtype" | "activations" | "rows" | "steps">;
  results.memory.push({ dtype, activations, rows, steps, ...r });
  log(`  peak RSS ${fmt(r.maxRssMiB / 1024, 2)} GiB`);
}

async function lossCompare(dtype: "f32" | "bf16", activations: string, count: number, steps: number): Promise<void> {
  const m = await loadModel(DEFAULT_MODEL_DIR, { device: DEVICE, dtype });
  try {
    const theta0 = benchTheta0(m.hidden, 3, 8); // norm 8, the demo's radius
    const t0 = performance.now();
    const e = await ortho(m, { tokens: PROMPT_TOKENS, theta0, count, block: count, steps, progressEvery: 50 });
    const row: LossRow = { dtype, activations, count, steps, seconds: (performance.now() - t0) / 1000, losses: e.log.map((l) => l.loss), relLosses: e.log.map((l) => l.relLoss) };
    results.lossCompare.push(row);
    log(`  ${dtype} (${activations} activations): final relative losses ${row!.relLosses.map((r) => r.toFixed(4)).join(" ")} in ${fmt(row!.seconds, 1)} s`);
  } finally {
    m.dispose();
  }
}

// ------------------------------------------------------------------ main
async function main(): Promise<void> {
  if (argv.includes("--render")) {
    // Re-render RESULTS.md from RESULTS.json (e.g. after editing bench/NOTES.md); measures nothing.
    const { report } = await import("./report.js");
    writeFileSync(OUT, report(JSON.parse(readFileSync(OUT.replace(/\.md$/, ".json"), "utf8")) as Results));
    log(`re-rendered ${OUT}`);
    return;
  }
  const addon = native();
  if (QUALITY_ONLY) {
    const previous = previousResults();
    if (previous) Object.assign(results, previous);
    results.quality = await runQuality(addon.version().torch, threads(), QUICK, log);
    await writeResults();
    return;
  }
  log(`melbo bench${QUICK ? " --quick (small model: numbers are meaningless)" : ""}; ${threads()} threads`);
  const pyInfo = await python<NonNullable<MachineInfo["pythonTorch"]>>(["info"], threads()).catch(() => null);
  results.machine = machineInfo(addon.version().torch, threads(), pyInfo);
  results.device = DEVICE;
  const acts = DEVICE === "cpu" ? bf16Activations(results.machine.cpuFlags) : "bf16"; // GPUs multiply bf16 natively
  // Few-row bf16 products take melbo's AVX-512 BF16 kernels (native/skinny_bf16.cpp) where the CPU has them.
  const bf16Kernels = DEVICE === "cpu" && kernelSupport(results.machine.cpuFlags).bf16Kernels;

  if (!SKIP.has("limits")) {
    log("matrix-product limits (python3-torch: the same libtorch and BLAS as the addon)");
    const rows = QUICK ? ["--f32-rows", "26,416", "--bf16-rows", "26", "--reps", "3", "--bf16-reps", "1"] : [];
    results.limits = await python<Limit[]>(["limits", "--hidden", String(SHAPE.hidden), "--intermediate", String(SHAPE.intermediate), ...rows], threads());
  }

  const dir = await checkpoint();
  const d = SHAPE.hidden;
  const theta0 = benchTheta0(d, 1, THETA0_NORM);
  const inputs = join(dir, "bench-inputs.safetensors");
  await writeSafetensors(inputs, [
    { name: "tokens", dtype: "I32", shape: [PROMPT_TOKENS.length], data: PROMPT_TOKENS },
    { name: "theta0", dtype: "F32", shape: [d], data: theta0 },
  ]);
  const xFile = join(dir, "bench-x.f32");
  if (!SKIP.has("python")) await pythonBaseline(dir, inputs, xFile, DEVICE === "cpu" && acts === "bf16");

  // ---- melbo f32: blocks 0..16 loaded, resid(8) computed, blocks 0..8 released (as an ortho run does)
  let x: Float32Array | undefined;
  if (!SKIP.has("f32")) {
    log("melbo f32: loading blocks 0..16 (bf16 checkpoint converted to f32)");
    const m = await loadModel(dir, { device: DEVICE, dtype: "f32", blocks: { from: 0, to: TARGET } });
    results.kernels.push(m.info(KERNEL_ROWS));
    try {
      x = (await m.forward(PROMPT_TOKENS, { layers: [SOURCE] })).resid.get(SOURCE)!;
      m.release(SOURCE + 1, true);
      if (existsSync(xFile)) {
        const px = new Float32Array(readFileSync(xFile).buffer.slice(0));
        let diff = 0, mx = 0;
        for (let i = 0; i < x.length; i++) {
          diff = Math.max(diff, Math.abs(x[i]! - px[i]!));
          mx = Math.max(mx, Math.abs(px[i]!));
        }
        results.xParity = { maxAbsDiff: diff, maxAbs: mx };
        log(`  resid(8): max |melbo - python| = ${diff.toExponential(2)} (max |x| ${fmt(mx)})`);
      }
      await orthoCall(m, x, theta0, 1, 1); // warm-up: first-touch allocations
      const exact = await orthoRow("f32 B=1 (exact)", m, "f32", "f32", x, theta0, 1, Math.max(PLAN.steps, PLAN.pySteps), PLAN.calls);
      const cached = results.python.find((p) => p.mode === "cached" && p.dtype !== "bf16");
      if (cached) {
        const n = Math.min(cached.losses.length, exact.losses.length);
        let worst = 0;
        for (let i = 1; i < n; i++) worst = Math.max(worst, Math.abs(exact.losses[i]! - cached.losses[i]!) / Math.max(1e-12, Math.abs(cached.losses[i]!)));
        results.lossParity = { steps: n, maxRelDiff: worst };
        log(`  per-step losses vs the Python loop (steps 2..${n}): max relative difference ${worst.toExponential(2)}`);
      }
      await withEnv({ MELBO_SKINNY_ROWS: "0" }, () => orthoRow("f32 B=1, BLAS only (lever off)", m, "f32", "f32", x!, theta0, 1, PLAN.steps, PLAN.calls));
      for (const B of BLOCKS) await orthoRow(`f32 B=${B}`, m, "f32", "f32", x, theta0, B, PLAN.steps, PLAN.calls);
      for (const B of LARGE_BLOCKS) await orthoRow(`f32 B=${B}`, m, "f32", "f32", x, theta0, B, PLAN.steps, 2);
      if (!SKIP.has("profile")) {
        await profileRow("f32 B=1", m, x, theta0, 1);
        await profileRow(`f32 B=${Math.max(...BLOCKS)}`, m, x, theta0, Math.max(...BLOCKS));
      }
    } finally {
      m.dispose();
    }
  }
  if (x === undefined && existsSync(xFile)) x = new Float32Array(readFileSync(xFile).buffer.slice(0));

  // ---- melbo bf16 weights (blocks 9..16 only: zero-copy from the bf16 file)
  if (!SKIP.has("bf16") && x) {
    log(`melbo bf16: blocks 9..16, activations ${acts} (automatic choice on this CPU)`);
    const m = await loadModel(dir, { device: DEVICE, dtype: "bf16", blocks: { from: SOURCE + 1, to: TARGET } });
    results.kernels.push(m.info(KERNEL_ROWS));
    try {
      await orthoCall(m, x, theta0, 1, 1);
      for (const B of [1, ...BLOCKS]) {
        await orthoRow(`bf16 B=${B}`, m, "bf16", acts, x, theta0, B, PLAN.steps, PLAN.calls);
        if (B === 1 && acts === "f32") {
          await withEnv({ MELBO_SKINNY_ROWS: "0" }, () => orthoRow("bf16 B=1, widened + BLAS (lever off)", m, "bf16", acts, x!, theta0, 1, PLAN.steps, PLAN.calls));
        }
        if (B === 1 && acts === "bf16" && bf16Kernels) {
          await withEnv({ MELBO_SKINNY_ROWS: "0" }, () => orthoRow("bf16 B=1, oneDNN only (lever off)", m, "bf16", acts, x!, theta0, 1, PLAN.steps, PLAN.calls));
        }
      }
      if (!SKIP.has("profile")) {
        await profileRow("bf16 B=1", m, x, theta0, 1);
        await profileRow(`bf16 B=${Math.max(...BLOCKS)}`, m, x, theta0, Math.max(...BLOCKS));
      }
    } finally {
      m.dispose();
    }
  }
  if (!SKIP.has("bf16native") && x && acts !== "bf16") {
    log("melbo bf16 with bf16 activations and bf16 matrix products (MELBO_BF16_MATMUL=bf16): B = 1, one timed call");
    process.env["MELBO_BF16_MATMUL"] = "bf16";
    const m = await loadModel(dir, { device: DEVICE, dtype: "bf16", blocks: { from: SOURCE + 1, to: TARGET } });
    delete process.env["MELBO_BF16_MATMUL"];
    try {
      // One call, profiled (the profiler's cost is negligible next to seconds-long bf16 GEMMs).
      const file = join(dir, "profile-bf16-native.json");
      process.env["MELBO_PROFILE"] = file;
      const before = cpuSnapshot();
      const r = await orthoCall(m, x, theta0, 1, PLAN.nativeSteps);
      delete process.env["MELBO_PROFILE"];
      const stepSeconds = r.perStepMs / 1000;
      results.ortho.push({
        label: "bf16 B=1 (bf16 GEMM)", dtype: "bf16", activations: "bf16", rows: 1, stepSeconds, callSeconds: [stepSeconds], losses: r.losses,
        others: othersShare(before, cpuSnapshot()),
        vectorStepsPerSecond: 1 / stepSeconds, gflops: perVectorStep / stepSeconds / 1e9,
      });
      const p = profileFromTrace(file, PLAN.nativeSteps - 1);
      results.profiles.push({ label: "bf16 B=1 (bf16 GEMM)", stepMs: r.perStepMs, ops: p.ops.slice(0, 14), totalMs: p.totalMs });
      rmSync(file, { force: true });
      log(`  ${fmt(stepSeconds, 2)} s/step`);
    } finally {
      m.dispose();
    }
  }

  // ---- steered generation on the embedded default model
  if (!SKIP.has("generate")) {
    if (!existsSync(join(DEFAULT_MODEL_DIR, "config.json"))) {
      log("writing the embedded default model (models/default)");
      await makeTestModel(DEFAULT_MODEL_DIR, DEFAULT_MODEL_OPTIONS);
    }
    const gm = await loadModel(DEFAULT_MODEL_DIR, { device: DEVICE });
    try {
      const V = 64, N = 50;
      const vectors = new Float32Array(V * gm.hidden);
      for (let v = 0; v < V; v++) vectors.set(benchTheta0(gm.hidden, 100 + v, 8), v * gm.hidden);
      const calls: number[] = [];
      await gm.generate(PROMPT_TOKENS, { vectors, at: SOURCE, maxNewTokens: 2, temperature: 1, seed: 7, stopTokens: [] }); // warm-up
      const bench = new Bench({ name: "generate", iterations: PLAN.genIters, time: 0, warmup: false, throws: true });
      bench.add("generate", async () => {
        const t0 = performance.now();
        const out = await gm.generate(PROMPT_TOKENS, { vectors, at: SOURCE, maxNewTokens: N, temperature: 1, seed: 7, stopTokens: [] });
        if (out.tokens.some((t) => t.length !== N)) throw new Error("generation stopped early");
        calls.push((performance.now() - t0) / 1000);
      });
      log(`steered generation: ${V} vectors x ${N} tokens on models/default`);
      await bench.run();
      const res = bench.tasks[0]!.result;
      if (res.state !== "completed") throw new Error(`generate: ${res.state}`);
      const seconds = res.latency.p50 / 1000;
      // Where a call's time goes: the prompt (N = 1), then per new token the forward and the sampling.
      const timed = async (n: number, temperature: number) => {
        const t0 = performance.now();
        await gm.generate(PROMPT_TOKENS, { vectors, at: SOURCE, maxNewTokens: n, temperature, seed: 7, stopTokens: [] });
        return (performance.now() - t0) / 1000;
      };
      const prompt = await timed(1, 0), greedy = await timed(11, 0), sampled = await timed(11, 1);
      results.generation = {
        vectors: V, tokens: N, seconds, tokensPerSecond: (V * N) / seconds, calls: calls.slice(-PLAN.genIters),
        promptSeconds: prompt, forwardPerToken: (greedy - prompt) / 10, samplingPerToken: (sampled - greedy) / 10,
      };
      log(`  ${fmt(results.generation.tokensPerSecond, 0)} tokens/s (prompt ${fmt(prompt, 2)} s, per token: forward ${fmt(results.generation.forwardPerToken, 3)} s, sampling ${fmt(results.generation.samplingPerToken, 3)} s)`);
    } finally {
      gm.dispose();
    }
  }

  // ---- peak memory of an ortho run on the 1.8B-shaped bf16 checkpoint (child processes)
  if (!SKIP.has("memory")) {
    await memoryRow(dir, "bf16", acts, Math.max(...BLOCKS), 2);
    await memoryRow(dir, "bf16", acts, Math.max(...BLOCKS), 2); // twice: a peak can vary between runs
    await memoryRow(dir, "f32", "f32", Math.max(...BLOCKS), 2);
  }

  // ---- bf16 vs f32 final losses on the embedded default model
  if (!SKIP.has("losses")) {
    log(`final losses, bf16 vs f32, on models/default: ${PLAN.lossCount} vectors (one block), ${PLAN.lossSteps} steps`);
    await lossCompare("f32", "f32", PLAN.lossCount, PLAN.lossSteps);
    await lossCompare("bf16", acts, PLAN.lossCount, PLAN.lossSteps);
    if (acts !== "bf16" && !SKIP.has("bf16native")) {
      process.env["MELBO_BF16_MATMUL"] = "bf16";
      try {
        await lossCompare("bf16", "bf16", 2, PLAN.nativeLossSteps);
        await lossCompare("f32", "f32", 2, PLAN.nativeLossSteps); // the f32 reference for the same settings
      } finally {
        delete process.env["MELBO_BF16_MATMUL"];
      }
    }
  }

  results.loadavgEnd = loadavg();
  results.othersWholeRun = othersShare(startCpu, cpuSnapshot());
  // Last, and outside the timed sections above: it takes ~25 min on 2 cores.
  if (!SKIP.has("quality")) results.quality = await runQuality(addon.version().torch, threads(), QUICK, log);
  else results.quality = previousResults()?.quality; // keep the last quality run in RESULTS.md
  results.totalSeconds = (performance.now() - started) / 1000;
  await writeResults();
}

function previousResults(): Results | undefined {
  const json = OUT.replace(/\.md$/, ".json");
  return existsSync(json) ? (JSON.parse(readFileSync(json, "utf8")) as Results) : undefined;
}

async function writeResults(): Promise<void> {
  const { report, QUALITY_SVG } = await import("./report.js");
  writeFileSync(OUT, report(results));
  writeFileSync(OUT.replace(/\.md$/, ".json"), JSON.stringify(results, null, 1) + "\n");
  if (results.quality) {
    const { qualitySvg } = await import("./quality-report.js");
    writeFileSync(join(dirname(OUT), QUALITY_SVG), qualitySvg(results.quality));
  }
  log(`wrote ${OUT}`);
}

async function mainAndCleanUp(): Promise<void> {
  try {
    await main();
  } finally {
    // The 3.7 GB checkpoint goes, unless asked to keep it (--keep) or placed by the user (--dir).
    if (!KEEP && arg("dir") === undefined) await rm(DIR, { recursive: true, force: true });
  }
}

export type { OrthoRow, PyRow, Limit, Profile, MemoryRow, LossRow };

mainAndCleanUp().catch((e: unknown) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exitCode = 1;
});
