// Choosing R for MELBO (docs/algorithm.md §3: "the right R gives diverse but fluent outputs"): short
// independent trainings over a grid of R, and per R how different the steered outputs are:
// distinct greedy continuations among the vectors, and the spread of the first-token
// KL(P_k ‖ P_unsteered) at the last prompt position (the original's KL(P_k ‖ P_0), §4).
// Too small an R changes nothing; too large an R gives every vector the same broken output.

import { klDivergence, logSoftmax } from "../eval/distribution.js";
import { lowerMedian } from "../util/median.js";
import { MelboError } from "../errors.js";
import type { Model } from "../model/model.js";
import { train, trainBlocks, type TrainOptions, type TrainProgress } from "./train.js";

export interface CalibrateOptions {
  prompts: Int32Array[];
  /** Default: defaultRadii(typical ‖resid(source)‖ of the first prompt). */
  radii?: number[];
  /** Vectors trained per R (default 8). */
  count?: number;
  /** Steps per training (default 100: short, enough to tell the regimes apart). */
  steps?: number;
  /** New tokens per greedy continuation (default 16). */
  maxNewTokens?: number;
  p?: number;
  q?: number;
  source?: number;
  target?: number;
  positions?: TrainOptions["positions"];
  seed?: number;
  signal?: AbortSignal;
  /** Progress of the training for R = radii[radiusIndex]. */
  onProgress?: (radiusIndex: number, radiusCount: number, p: TrainProgress) => void;
}

export interface CalibrationRow {
  radius: number;
  count: number;
  meanObjective: number;
  maxObjective: number;
  /** Distinct greedy continuations of the first prompt among the `count` vectors. */
  distinct: number;
  /** Vectors whose greedy continuation differs from the unsteered one. */
  changed: number;
  /** First-token KL(P_k ‖ P_unsteered) at the last prompt position, over the vectors (nats). */
  klMean: number;
  klMin: number;
  klMax: number;
  /** Each vector's greedy continuation (new tokens only). */
  continuations: Int32Array[];
  /** Each vector's first-token KL, in row order. */
  kls: number[];
  /** The trained vectors [count * d]. */
  vectors: Float32Array;
}

export interface Calibration {
  source: number;
  target: number;
  /** Median ‖resid(source)‖ over the first prompt's tokens: the scale R is compared to. */
  residNorm: number;
  unsteered: Int32Array;
  rows: CalibrationRow[];
}

/** A geometric grid around the residual stream's own scale: ⅛, ¼, ½, 1 and 2 times it (3 digits). */
export function defaultRadii(residNorm: number): number[] {
  return [0.125, 0.25, 0.5, 1, 2].map((f) => Number((f * residNorm).toPrecision(3)));
}

/** Log-probabilities of the next token after `tokens`, one row per steering vector (or unsteered). */
async function nextTokenLogProbs(model: Model, tokens: Int32Array, vectors: Float32Array | null, at: number): Promise<Float64Array[]> {
  const d = model.hidden;
  const V = model.config.vocabSize;
  const seq = tokens.length;
  const n = vectors ? vectors.length / d : 1;
  // forward returns logits at every position ([rows * seq * V] float32): bound the rows per call.
  const chunk = Math.max(1, Math.floor((128 << 20) / (seq * V * 4)));
  const out: Float64Array[] = [];
  for (let start = 0; start < n; start += chunk) {
    const rows = Math.min(chunk, n - start);
    const batch = new Int32Array(rows * seq);
    for (let r = 0; r < rows; r++) batch.set(tokens, r * seq);
    const f = await model.forward(batch, {
      batch: rows,
      logits: true,
      ...(vectors ? { steer: { vectors: vectors.subarray(start * d, (start + rows) * d), at } } : {}),
    });
    for (let r = 0; r < rows; r++) {
      const last = (r * seq + seq - 1) * V;
      out.push(logSoftmax(f.logits!.subarray(last, last + V)));
    }
  }
  return out;
}

/** Runs the grid. `model` must hold every block and the head (generation and logits). */
export async function calibrate(model: Model, o: CalibrateOptions): Promise<Calibration> {
  if (o.prompts.length === 0) throw new MelboError("calibration needs at least one prompt");
  const { source, target } = trainBlocks(model.config.numLayers, o.source, o.target);
  const count = o.count ?? 8;
  const steps = o.steps ?? 100;
  const maxNewTokens = o.maxNewTokens ?? 16;
  if (!Number.isInteger(count) || count < 1) throw new MelboError(`count must be a positive integer, got ${count}`);
  if (!Number.isInteger(steps) || steps < 0) throw new MelboError(`steps must be a non-negative integer, got ${steps}`);
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) throw new MelboError(`maxNewTokens must be a positive integer, got ${maxNewTokens}`);
  const info = model.info();
  if (info.firstBlock !== 0 || info.lastBlock !== model.config.numLayers - 1 || !info.embedding || !info.head) {
    throw new MelboError("calibration generates text: load the whole model (every block, the embedding and the head)");
  }
  const prompt = o.prompts[0]!;
  if (prompt.length === 0) throw new MelboError("prompt 0 has no tokens");
  const d = model.hidden;

  const x = (await model.forward(prompt, { layers: [source] })).resid.get(source)!; // [seq * d]
  const norms: number[] = [];
  for (let t = 0; t < prompt.length; t++) {
    let s = 0;
    for (let i = 0; i < d; i++) s += x[t * d + i]! ** 2;
    norms.push(Math.sqrt(s));
  }
  const residNorm = lowerMedian(norms);
  const radii = o.radii ?? defaultRadii(residNorm);
  if (radii.length === 0) throw new MelboError("the grid of R is empty");
  for (const R of radii) if (!(Number.isFinite(R) && R > 0)) throw new MelboError(`every R must be a number > 0, got ${R}`);

  const unsteered = (await model.generate(prompt, { maxNewTokens })).tokens[0]!;
  const [plain] = await nextTokenLogProbs(model, prompt, null, source);
  const rows: CalibrationRow[] = [];
  for (const [i, radius] of radii.entries()) {
    const trained = await train(model, {
      prompts: o.prompts, count, radius, steps, independent: true, batch: count, source, target,
      ...(o.p !== undefined ? { p: o.p } : {}),
      ...(o.q !== undefined ? { q: o.q } : {}),
      ...(o.positions !== undefined ? { positions: o.positions } : {}),
      ...(o.seed !== undefined ? { seed: o.seed } : {}),
      ...(o.signal ? { signal: o.signal } : {}),
      ...(o.onProgress ? { onProgress: (p: TrainProgress) => o.onProgress!(i, radii.length, p) } : {}),
    });
    const continuations = (await model.generate(prompt, { vectors: trained.vectors, at: source, maxNewTokens })).tokens;
    const key = (t: Int32Array) => t.join(",");
    const kls = (await nextTokenLogProbs(model, prompt, trained.vectors, source)).map((lp) => klDivergence(lp, plain!));
    const objectives = trained.log.map((l) => l.objective);
    rows.push({
      radius,
      count,
      meanObjective: objectives.reduce((a, b) => a + b, 0) / count,
      maxObjective: Math.max(...objectives),
      distinct: new Set(continuations.map(key)).size,
      changed: continuations.filter((c) => key(c) !== key(unsteered)).length,
      klMean: kls.reduce((a, b) => a + b, 0) / count,
      klMin: Math.min(...kls),
      klMax: Math.max(...kls),
      continuations,
      kls,
      vectors: trained.vectors,
    });
  }
  return { source, target, residNorm, unsteered, rows };
}
