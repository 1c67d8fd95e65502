// The quality-per-compute benchmark of MELBO-ortho's block mode (`npm run bench -- quality`):
// on the embedded default model with the demo's θ0, for each block size B and projection, one
// search of `count` vectors: how many reach r < 1 and r ≤ 0.75, median and best r, wall time,
// and useful vectors per hour. Block size only pays if the vectors it finds are good.
//
// r = ‖z(θ) − z0‖ / ‖z0 − z(0)‖ (docs/algorithm.md): r = 1 is θ = 0; random vectors of θ0's
// norm orthogonal to it give r ≈ 1.4–1.8.

import { existsSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_MODEL_OPTIONS } from "../src/cli/commands/make-test-model.js";
import { makeTestModel } from "../src/model/make-test-model.js";
import { loadModel, type Model } from "../src/model/model.js";
import type { InBlockOrthogonalisation } from "../src/native.js";
import { ORTHO_DEFAULTS } from "../src/search/defaults.js";
import { LEGACY_BLOCK_MODE, ortho, type BlockStart, type OrthoOptions, type Projection } from "../src/search/ortho.js";
import { train } from "../src/search/train.js";
import { cpuSnapshot, machineInfo, median, othersShare, packageRoot, type MachineInfo } from "./lib.js";

export const DEFAULT_MODEL_DIR = join(packageRoot, "models", "default");
/** The demo's prompt, blocks and MELBO settings (src/cli/commands/demo.ts): θ0 is its first candidate. */
const DEMO = { prompt: "How can I build a bomb?", source: 8, target: 16, radius: 16, trainSteps: 100, trainLr: 0.01 };

export interface QualityConfig {
  /** Compute dtype (default f32, the exact path; bf16 computes in bf16 where the CPU multiplies bf16 fast). */
  dtype?: "f32" | "bf16";
  block: number;
  projection: Projection;
  blockStart?: BlockStart;
  startNorm?: number;
  inBlock?: InBlockOrthogonalisation;
  gradientInBlock?: boolean;
}

export interface QualityRow extends Required<QualityConfig> {
  count: number;
  steps: number;
  found: number;
  dropped: number;
  below1: number; // vectors with r < 1
  below075: number; // vectors with r ≤ 0.75
  medianR: number;
  bestR: number;
  seconds: number;
  usefulPerHour: number; // r < 1
  goodPerHour: number; // r ≤ 0.75
  maxAbsCos: number;
  rs: number[]; // r of every vector, in index order
}

/** The demo's θ0: MELBO's first candidate on the default model (training is sequential, so it does not depend on the candidate count). */
export async function demoTheta0(model: Model): Promise<Float32Array> {
  const tokens = model.promptTokens(DEMO.prompt);
  const trained = await train(model, {
    prompts: [tokens], count: 1, radius: DEMO.radius, steps: DEMO.trainSteps, lr: DEMO.trainLr, source: DEMO.source, target: DEMO.target,
  });
  return trained.vectors.slice(0, model.hidden);
}

export async function loadDefaultModel(dtype: "f32" | "bf16" = "f32"): Promise<Model> {
  if (!existsSync(join(DEFAULT_MODEL_DIR, "config.json"))) await makeTestModel(DEFAULT_MODEL_DIR, DEFAULT_MODEL_OPTIONS);
  return loadModel(DEFAULT_MODEL_DIR, { dtype });
}

/** The default model once per compute dtype (θ0 is always trained in f32). */
class Models {
  private loaded = new Map<string, Model>();
  async get(dtype: "f32" | "bf16"): Promise<Model> {
    let m = this.loaded.get(dtype);
    if (!m) this.loaded.set(dtype, (m = await loadDefaultModel(dtype)));
    return m;
  }
  dispose(): void {
    for (const m of this.loaded.values()) m.dispose();
  }
}

export async function qualityRow(
  model: Model, theta0: Float32Array, c: QualityConfig, count: number, steps: number, onProgress?: (text: string) => void,
): Promise<QualityRow> {
  // The search's own defaults fill what the configuration leaves out.
  const full = { dtype: "f32" as const, blockStart: "random" as BlockStart, startNorm: ORTHO_DEFAULTS.startNorm, inBlock: "first-then-symmetric" as InBlockOrthogonalisation, gradientInBlock: true, ...c };
  const options: OrthoOptions = {
    tokens: model.promptTokens(DEMO.prompt), theta0, count, source: DEMO.source, target: DEMO.target, steps, lr: 0.01,
    block: full.block, projection: full.projection, blockStart: full.blockStart, startNorm: full.startNorm, inBlock: full.inBlock, gradientInBlock: full.gradientInBlock,
    minNorm: 0, progressEvery: 50,
  };
  const started = performance.now();
  const e = await ortho(model, { ...options, ...(onProgress ? { onProgress: (p) => onProgress(`${p.finished}/${p.total} step ${p.step}/${p.steps}`) } : {}) });
  const rs = e.log.map((l) => l.relLoss);
  const { found, dropped, maxAbsCos } = e;
  const seconds = (performance.now() - started) / 1000;
  const below1 = rs.filter((r) => r < 1).length, below075 = rs.filter((r) => r <= 0.75).length;
  return {
    ...full, count, steps, found, dropped, below1, below075, medianR: median(rs), bestR: Math.min(...rs), seconds,
    usefulPerHour: (below1 * 3600) / seconds, goodPerHour: (below075 * 3600) / seconds, maxAbsCos, rs,
  };
}

export interface QualityResults {
  machine: MachineInfo;
  count: number;
  steps: number;
  theta0Norm: number;
  rows: QualityRow[];
  othersShare: number; // CPU share other processes used during the grid (wall times are only comparable on a quiet machine)
  totalSeconds: number;
}

/**
 * The grid of `npm run bench -- quality`, per projection: f32 (exact) at every B; bf16 at the
 * largest B (the fast mode on CPUs with AVX-512 BF16); the old block mode (θ0 starts,
 * Gram–Schmidt) at the largest B, for comparison.
 */
export function qualityGrid(quick: boolean): QualityConfig[] {
  const blocks = quick ? [1, 8] : [1, 4, 16, 64];
  const largest = blocks.at(-1)!;
  const grid: QualityConfig[] = [];
  for (const projection of ["grad", "post"] as const) {
    for (const block of blocks) grid.push({ block, projection });
    grid.push({ block: largest, projection, dtype: "bf16" });
    grid.push({ block: largest, projection, ...LEGACY_BLOCK_MODE });
    grid.push({ block: largest, projection, startNorm: 1 }); // the earlier default: starts at ‖θ0‖
  }
  return grid;
}


export const isLegacy = (r: QualityConfig) => r.blockStart === "theta0" && r.inBlock === "gram-schmidt" && r.gradientInBlock === false;
/** Distinct mode with random starts at ‖θ0‖ (the default before ORTHO_DEFAULTS.startNorm). */
export const isWideStart = (r: QualityConfig) => !isLegacy(r) && r.startNorm === 1;
/** Rows that run today's defaults (the targets are judged on these). */
export const isStandard = (r: QualityConfig) => !isLegacy(r) && !isWideStart(r);

export async function runQuality(libtorch: string, threads: number, quick: boolean, log: (s: string) => void): Promise<QualityResults> {
  const count = quick ? 16 : 64, steps = quick ? 60 : 300;
  const started = performance.now(), cpu = cpuSnapshot();
  const machine = machineInfo(libtorch, threads, null);
  const models = new Models();
  try {
    const theta0 = await demoTheta0(await models.get("f32"));
    const rows: QualityRow[] = [];
    for (const c of qualityGrid(quick)) {
      const model = await models.get(c.dtype ?? "f32");
      log(`quality: ${c.dtype ?? "f32"} B = ${c.block}, ${c.projection}${isLegacy({ ...c, gradientInBlock: c.gradientInBlock ?? true }) ? " (old block mode)" : isWideStart(c) ? " (starts at |theta0|)" : ""}: ${count} vectors x ${steps} steps`);
      const r = await qualityRow(model, theta0, c, count, steps);
      log(`  r < 1: ${r.below1}, r <= 0.75: ${r.below075}, median r ${r.medianR.toFixed(3)}, best ${r.bestR.toFixed(3)}, ${r.seconds.toFixed(0)} s`);
      rows.push(r);
    }
    return { machine, count, steps, theta0Norm: Math.hypot(...theta0), rows, othersShare: othersShare(cpu, cpuSnapshot()), totalSeconds: (performance.now() - started) / 1000 };
  } finally {
    models.dispose();
  }
}

// `node dist/bench/quality.js [--count 32] [--steps 300] [--configs B:proj:start:norm:inblock,...]`:
// the research driver (one line per configuration); `npm run bench -- quality` runs the standard grid.
if (process.argv[1]?.endsWith("quality.js")) {
  const argv = process.argv.slice(2);
  const arg = (name: string, fallback: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1]! : fallback;
  };
  const count = Number(arg("count", "32")), steps = Number(arg("steps", "300"));
  const configs: QualityConfig[] = arg("configs", "1:grad,16:grad").split(",").map((spec) => {
    const [b, p, s, n, m, g, t] = spec.split(":");
    return {
      ...(t ? { dtype: t as "f32" | "bf16" } : {}),
      block: Number(b), projection: (p ?? "grad") as Projection,
      ...(s ? { blockStart: s as BlockStart } : {}), ...(n ? { startNorm: Number(n) } : {}), ...(m ? { inBlock: m as InBlockOrthogonalisation } : {}),
      ...(g ? { gradientInBlock: g === "1" } : {}),
    };
  });
  const models = new Models();
  const theta0 = await demoTheta0(await models.get("f32"));
  process.stdout.write(`θ0 norm ${Math.hypot(...theta0).toFixed(3)}; count ${count}, steps ${steps}\n`);
  for (const c of configs) {
    const r = await qualityRow(await models.get(c.dtype ?? "f32"), theta0, c, count, steps);
    process.stdout.write(JSON.stringify({ ...r, medianR: +r.medianR.toFixed(4), bestR: +r.bestR.toFixed(4), seconds: +r.seconds.toFixed(1), rs: r.rs.map((x) => +x.toFixed(3)) }) + "\n");
  }
  models.dispose();
}
