// melbo's rows of the GPU benchmark (bench/gpu/run.sh): vector-steps per second of the native
// ortho block loop for each block size B and dtype, on a Qwen1.5-1.8B-shaped slice (blocks 9..16
// of a random checkpoint made on the machine, steering at the output of block 8), with the peak
// device memory of each row. The PyTorch baselines run on the same checkpoint and inputs
// (bench/python/baseline.py), written here as bench-inputs.safetensors.
//
//   node dist/bench/gpu/throughput.js --device cuda --dir DIR --json OUT.json
//        [--blocks 1,16,64,256,1024] [--dtypes f32,bf16] [--steps 20] [--tiny]
//
// --tiny: a small shape and few steps, for the CPU dry run (bench/gpu/run.sh --cpu-dry-run).
// A row's time covers one whole orthoBlock call of `steps` steps after a warm-up call (its
// z0 forward included, as in a search); a row that runs out of memory is recorded as such.

import { spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { makeTestModel, type TestModelOptions } from "../../src/model/make-test-model.js";
import { checkDevice, loadModel } from "../../src/model/model.js";
import { writeSafetensors } from "../../src/model/safetensors.js";
import type { ComputeDtype } from "../../src/native.js";
import { Rng } from "../../src/util/rng.js";
import { PROMPT_TOKENS, QWEN15_1P8B, basisOf, benchTheta0 } from "../lib.js";

const argv = process.argv.slice(2);
const arg = (name: string): string | undefined => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const TINY = argv.includes("--tiny");
const DEVICE = checkDevice(arg("device") ?? "cuda");
const DIR = resolve(arg("dir") ?? "/tmp/melbo-gpu-bench");
const JSON_OUT = resolve(arg("json") ?? join(DIR, "melbo-rows.json"));
const BLOCKS = (arg("blocks") ?? (TINY ? "1,4,16" : "1,16,64,256,1024")).split(",").map(Number);
const DTYPES = (arg("dtypes") ?? "f32,bf16").split(",") as ComputeDtype[];
const STEPS = Number(arg("steps") ?? (TINY ? 3 : 20));
const SOURCE = 8, TARGET = 16;

/** Blocks 0..16 are all a search at 8 → 16 reads: the checkpoint stops there (less to write). */
const MODEL: TestModelOptions = TINY
  ? { ...QWEN15_1P8B, layers: TARGET + 1, hidden: 128, heads: 4, kvHeads: 4, intermediate: 352 }
  : { ...QWEN15_1P8B, layers: TARGET + 1 };

export interface ThroughputRow {
  dtype: ComputeDtype;
  rows: number;
  steps: number;
  seconds: number | null;
  vectorStepsPerSecond: number | null;
  /** Largest device memory the process held during the row (nvidia-smi), MiB; null on the CPU. */
  peakMiB: number | null;
  error?: string;
}

const log = (s: string) => process.stderr.write(`[gpu bench] ${s}\n`);

async function checkpoint(): Promise<string> {
  const want = JSON.stringify(MODEL);
  const shapeFile = join(DIR, "bench-shape.json");
  if (existsSync(shapeFile) && readFileSync(shapeFile, "utf8") === want) return DIR;
  log(`writing a random ${TINY ? "tiny" : "Qwen1.5-1.8B-shaped"} checkpoint (blocks 0..${TARGET}) to ${DIR}`);
  const t0 = performance.now();
  await makeTestModel(DIR, MODEL);
  writeFileSync(shapeFile, want);
  log(`  in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return DIR;
}

/** Samples this process's GPU memory (nvidia-smi) until stopped; null where there is no nvidia-smi. */
function gpuMemoryPoller(): { stop: () => Promise<number | null> } {
  if (DEVICE === "cpu") return { stop: async () => null };
  let peak: number | null = null;
  const child = spawn("nvidia-smi", ["--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits", "-lms", "100"], { stdio: ["ignore", "pipe", "ignore"] });
  child.on("error", () => undefined);
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    for (const line of chunk.split("\n")) {
      const [pid, mib] = line.split(",").map((s) => Number(s.trim()));
      if (pid === process.pid && Number.isFinite(mib)) peak = Math.max(peak ?? 0, mib!);
    }
  });
  return {
    stop: async () => {
      child.kill();
      return peak;
    },
  };
}

async function main(): Promise<void> {
  const dir = await checkpoint();
  const rows: ThroughputRow[] = [];
  for (const dtype of DTYPES) {
    const model = await loadModel(dir, { device: DEVICE, dtype, blocks: { to: TARGET }, head: false });
    try {
      const d = model.hidden;
      const theta0 = benchTheta0(d, 3, 8); // norm 8, the demo's radius (bench/run.ts's loss rows use the same)
      if (dtype === DTYPES[0]) {
        // The baselines' inputs: the same prompt and θ0 (bench/python/baseline.py reads them).
        await writeSafetensors(join(dir, "bench-inputs.safetensors"), [
          { name: "tokens", dtype: "I32", shape: [PROMPT_TOKENS.length], data: PROMPT_TOKENS },
          { name: "theta0", dtype: "F32", shape: [d], data: theta0 },
        ]);
      }
      const x = (await model.forward(PROMPT_TOKENS, { layers: [SOURCE] })).resid.get(SOURCE)!;
      model.release(SOURCE + 1, true);
      const basis = basisOf(theta0);
      for (const B of BLOCKS) {
        const rng = new Rng(B, "bench-starts");
        const starts = new Float32Array(B * d);
        starts.set(theta0);
        for (let r = 1; r < B; r++) starts.set(rng.fillNormal(new Float32Array(d), 0.01), r * d);
        const call = (steps: number) =>
          model.orthoBlock({
            x, theta0, basis, rows: B, steps, starts, source: SOURCE, target: TARGET, lr: 0.01, betas: [0.9, 0.999], eps: 1e-8,
            projection: "post", inBlock: "first-then-symmetric", gradientInBlock: true, lossTolerance: 0,
          });
        const poller = gpuMemoryPoller();
        try {
          await call(2); // warm-up: allocator, kernels, autotuning
          const t0 = performance.now();
          await call(STEPS);
          const seconds = (performance.now() - t0) / 1000;
          const row: ThroughputRow = { dtype, rows: B, steps: STEPS, seconds, vectorStepsPerSecond: (B * STEPS) / seconds, peakMiB: await poller.stop() };
          rows.push(row);
          log(`${dtype} B=${B}: ${row.vectorStepsPerSecond!.toFixed(1)} vector-steps/s (${seconds.toFixed(2)} s for ${STEPS} steps), peak ${row.peakMiB ?? "-"} MiB`);
        } catch (e) {
          const error = e instanceof Error ? e.message.split("\n")[0]! : String(e);
          rows.push({ dtype, rows: B, steps: STEPS, seconds: null, vectorStepsPerSecond: null, peakMiB: await poller.stop(), error });
          log(`${dtype} B=${B}: failed: ${error}`);
        }
      }
    } finally {
      model.dispose();
    }
  }
  writeFileSync(JSON_OUT, JSON.stringify({ device: DEVICE, tiny: TINY, shape: MODEL, source: SOURCE, target: TARGET, prompt: PROMPT_TOKENS.length, rows }, null, 1) + "\n");
  log(`wrote ${JSON_OUT}`);
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
