// MELBO-ortho (docs/algorithm.md §2): given θ0, find vectors orthogonal to θ0 and to each other
// that reproduce θ0's effect at the target block. The step loop of a block runs natively;
// this module owns the basis, the stop rules, progress and the run files (checkpoint/resume).

import { MelboError } from "../errors.js";
import { checkFinite, checkSlice } from "../model/checks.js";
import { ORTHO_DEFAULTS } from "./defaults.js";
import type { Model } from "../model/model.js";
import type { InBlockOrthogonalisation } from "../native.js";
import { Rng } from "../util/rng.js";
import { OrthonormalBasis, maxAbsCosine, norm, row } from "./basis.js";
import { readOrthoRun, writeOrthoRun, type RunState, type VectorLogLine } from "./ortho-files.js";
import { checkSameModel, promptDifference, settingDifference } from "./resume-check.js";
import { searchProgress, type SearchProgress } from "./progress.js";
import { readTrace, writeTrace, type TraceLine } from "./trace-file.js";

export type Projection = "post" | "grad";
/** Where rows 2…B of a block start: at θ0 (like row 1), or at seeded random directions in the complement of the basis. */
export type BlockStart = "theta0" | "random";

export interface OrthoOptions {
  /** Prompt token ids (e.g. model.promptTokens(text)); or give `prompt`. */
  tokens?: Int32Array;
  /** Prompt text, wrapped in the model's chat template (used when `tokens` is absent). */
  prompt?: string;
  /** The seed vector θ0, [d]. */
  theta0: Float32Array;
  /** How many vectors to find after θ0. */
  count: number;
  source?: number; // default 8
  target?: number; // default 16
  /** Vectors optimised at once (block mode); 1 = the sequential algorithm. */
  block?: number;
  steps?: number; // default 1000
  lr?: number; // default 0.01
  betas?: [number, number]; // default [0.9, 0.999]
  eps?: number; // default 1e-8
  /** "post" (seed-exact, default): project θ after each Adam step; "grad": also project the gradient before it. */
  projection?: Projection;
  /** Rows 2…B of a block: where they start (default "random"). Row 1 always starts at θ0. */
  blockStart?: BlockStart;
  /** Norm of the random starts, as a multiple of ‖θ0‖ (default ORTHO_DEFAULTS.startNorm, 0.01). */
  startNorm?: number;
  /** How a block's rows are made orthogonal to each other (default "first-then-symmetric"). */
  inBlock?: InBlockOrthogonalisation;
  /** Project each row's gradient off the block's rows that constrain it (default true; either projection: in "post" the basis part stays seed-exact). */
  gradientInBlock?: boolean;
  /** Seed of the random starts (default 0): vector k starts from its own stream. */
  seed?: number;
  /** > 0: a vector's steps end once its loss is at or below this (default 0: off, the original's semantics). */
  lossTolerance?: number;
  /** Stop once `patience` consecutive vectors have a norm below `minNorm` (defaults 0.1, 10). */
  minNorm?: number;
  patience?: number;
  /** Rows whose norm falls below this after the in-block orthogonalisation are dropped (default 1e-5). */
  dropNorm?: number;
  /** Directory for vectors.safetensors + log.jsonl, written after every block. */
  out?: string;
  /** Continue the run saved in `out` (its settings must match). */
  resume?: boolean;
  /** Extra metadata for the vectors file (model path, prompt text, θ0 source). */
  metadata?: Record<string, string>;
  signal?: AbortSignal;
  /** Free blocks 0..source and the embedding once resid(source) is computed (CLI: saves memory). */
  releaseEarlyBlocks?: boolean;
  /** Progress events every this many steps (default 10). */
  progressEvery?: number;
  /** > 0 (with `out`): write each vector's r every this many steps to OUT/trace.jsonl (default 0: off). */
  traceEvery?: number;
  /** Called once before the search starts with the number of vectors taken from a saved run (0 when none). */
  onResume?: (found: number) => void;
  onProgress?: (p: OrthoProgress) => void;
  /** Each vector as it is accepted (after its block, before the block's checkpoint is written). */
  onVector?: (line: VectorLogLine, theta: Float32Array) => void;
  /** A row that vanished in the in-block orthogonalisation (its norm after it). */
  onDropped?: (norm: number) => void;
}

/** Everything that decides the numbers, saved with the run and checked on resume. */
export interface OrthoSettings {
  source: number;
  target: number;
  tokens: number[];
  block: number;
  steps: number;
  lr: number;
  betas: [number, number];
  eps: number;
  projection: Projection;
  blockStart: BlockStart;
  startNorm: number;
  inBlock: InBlockOrthogonalisation;
  gradientInBlock: boolean;
  seed: number;
  lossTolerance: number;
  minNorm: number;
  patience: number;
  dropNorm: number;
  dtype: string;
}

/** Progress of a block's step loop (progress.ts), with the block's losses at the last step. */
export interface OrthoProgress extends SearchProgress {
  meanLoss: number;
  minLoss: number;
}

/** What a finished search returns. */
export interface OrthoResult {
  reason: StopReason;
  /** Vectors found (after θ0), `dropped`: rows that vanished. */
  found: number;
  dropped: number;
  maxAbsCos: number;
  /** [(found + 1) × d]: row 0 is θ0. */
  vectors: Float32Array;
  log: VectorLogLine[];
  /** Vectors taken from a saved run. */
  resumedFrom: number;
  /** The slice's inputs: resid(source) [T × d], z0 = mean resid(target) under θ0 [d], and r's denominator ‖z0 − z(0)‖. */
  inputs: { x: Float32Array; z0: Float32Array; denominator: number };
}

/**
 * count: N found; norm: `patience` consecutive vectors below minNorm; dimension: the basis spans
 * all d dimensions; vanished: a whole block was dropped, so the next (identical) block would be too.
 */
export type StopReason = "count" | "norm" | "dimension" | "vanished";

function settingsOf(model: Model, o: OrthoOptions, tokens: Int32Array): OrthoSettings {
  const D = ORTHO_DEFAULTS;
  return {
    source: o.source ?? D.source,
    target: o.target ?? D.target,
    tokens: [...tokens],
    block: o.block ?? D.block,
    steps: o.steps ?? D.steps,
    lr: o.lr ?? D.lr,
    betas: o.betas ?? [...D.betas],
    eps: o.eps ?? D.eps,
    projection: o.projection ?? D.projection,
    blockStart: o.blockStart ?? D.blockStart,
    startNorm: o.startNorm ?? D.startNorm,
    inBlock: o.inBlock ?? D.inBlock,
    gradientInBlock: o.gradientInBlock ?? D.gradientInBlock,
    seed: o.seed ?? D.seed,
    lossTolerance: o.lossTolerance ?? D.lossTolerance,
    minNorm: o.minNorm ?? D.minNorm,
    patience: o.patience ?? D.patience,
    dropNorm: o.dropNorm ?? D.dropNorm,
    dtype: model.info().dtype,
  };
}

function validate(model: Model, o: OrthoOptions, s: OrthoSettings): void {
  const d = model.hidden;
  if (o.theta0.length !== d) throw new MelboError(`θ0 has ${o.theta0.length} values, the model's hidden size is ${d}`);
  checkFinite(o.theta0, "θ0");
  if (!(norm(o.theta0) > 0)) throw new MelboError("θ0 is the zero vector: there is no effect to reproduce");
  checkSlice(model.config.numLayers, s.source, s.target);
  if (!Number.isInteger(o.count) || o.count < 1) throw new MelboError(`count must be a positive integer, got ${o.count}`);
  if (!Number.isInteger(s.block) || s.block < 1) throw new MelboError(`block must be a positive integer, got ${s.block}`);
  if (!Number.isInteger(s.steps) || s.steps < 0) throw new MelboError(`steps must be a non-negative integer, got ${s.steps}`);
  if (!(s.lr > 0)) throw new MelboError(`lr must be > 0, got ${s.lr}`);
  if (!(s.patience >= 1) || !Number.isInteger(s.patience)) throw new MelboError(`patience must be a positive integer, got ${s.patience}`);
  if (s.projection !== "post" && s.projection !== "grad") throw new MelboError(`projection must be "post" or "grad", got "${String(s.projection)}"`);
  if (s.blockStart !== "theta0" && s.blockStart !== "random") throw new MelboError(`blockStart must be "theta0" or "random", got "${String(s.blockStart)}"`);
  if (!(s.startNorm > 0) || !Number.isFinite(s.startNorm)) throw new MelboError(`startNorm must be a positive number, got ${s.startNorm}`);
  if (!["gram-schmidt", "first-then-symmetric", "symmetric"].includes(s.inBlock)) {
    throw new MelboError(`inBlock must be "gram-schmidt", "first-then-symmetric" or "symmetric", got "${String(s.inBlock)}"`);
  }
  if (!Number.isSafeInteger(s.seed)) throw new MelboError(`seed must be an integer, got ${s.seed}`);
}


/**
 * The block mode melbo had before distinct starts (every row starts at θ0, Gram–Schmidt in index
 * order, no in-block gradient projection): large blocks lose most rows' quality with it
 * (docs/algorithm.md). Kept to compare with and to continue runs saved before.
 */
export const LEGACY_BLOCK_MODE = { blockStart: "theta0", inBlock: "gram-schmidt", gradientInBlock: false, startNorm: 1 } as const;

/** Settings of runs saved before block starts and in-block modes existed: what those runs did. */
const LEGACY_BLOCK_SETTINGS = { ...LEGACY_BLOCK_MODE, seed: 0 } as const;

/**
 * Where the rows of the block whose first vector gets index `first` (1-based, θ0 is 0) start:
 * row 0 at θ0, so that it follows the sequential algorithm; with "random", row r > 0 at a
 * direction drawn from its own seeded stream (vector index first + r, so that a resumed run
 * draws the same numbers), projected onto the complement of the basis, scaled to
 * startNorm·‖θ0‖. Undefined when every row starts at θ0.
 */
export function blockStarts(theta0: Float32Array, basis: OrthonormalBasis, rows: number, first: number, s: OrthoSettings): Float32Array | undefined {
  if (s.blockStart === "theta0" || rows === 1) return undefined;
  const d = theta0.length;
  const starts = new Float32Array(rows * d);
  starts.set(theta0, 0);
  const target = s.startNorm * norm(theta0);
  for (let r = 1; r < rows; r++) {
    const draw = new Rng(s.seed, `melbo-ortho-start-${first + r}`).fillNormal(new Float32Array(d));
    const w = basis.projectOut(Float64Array.from(draw));
    const n = norm(w);
    for (let i = 0; i < d; i++) starts[r * d + i] = (w[i]! * target) / n;
  }
  return starts;
}

/** Null when the settings agree, else the first difference in words. The tokens are compared by resume-check.ts (as text). */
function sameSettings(a: OrthoSettings, saved: OrthoSettings): string | null {
  const diff = settingDifference(a, { ...LEGACY_BLOCK_SETTINGS, ...saved }, "tokens");
  if (diff === null) return null;
  const hint = diff.key in LEGACY_BLOCK_SETTINGS && !(diff.key in saved)
    ? "; the run was saved before block modes: resume it with the legacy block mode (--block-mode legacy)"
    : diff.key === "startNorm" ? `; resume it with --start-norm ${diff.saved}` : "";
  return `${diff.key} differs (saved ${diff.saved}, now ${diff.now})${hint}`;
}

/** Null when θ0 is the saved row 0 bit for bit, else how it differs. */
function thetaDifference(saved: Float32Array, now: Float32Array): string | null {
  let differ = 0, largest = 0, at = 0;
  for (let i = 0; i < saved.length; i++) {
    const diff = Math.abs(saved[i]! - now[i]!);
    if (saved[i] !== now[i]) differ++;
    if (diff > largest) [largest, at] = [diff, i];
  }
  if (differ === 0) return null;
  return `θ0 differs from the saved run's row 0 in ${differ} of ${saved.length} values (the largest difference, ${largest.toExponential(1)}, at index ${at})`;
}

function meanOverPositions(resid: Float32Array, seq: number, d: number): Float64Array {
  const z = new Float64Array(d);
  for (let t = 0; t < seq; t++) for (let i = 0; i < d; i++) z[i]! += resid[t * d + i]!;
  for (let i = 0; i < d; i++) z[i]! /= seq;
  return z;
}

/** resid(source) of the prompt, z0 = z(θ0), and ‖z(θ0) − z(0)‖ (the denominator of the relative loss). */
export async function orthoInputs(
  model: Model,
  tokens: Int32Array,
  theta0: Float32Array,
  source: number,
  target: number,
): Promise<{ x: Float32Array; z0: Float32Array; denominator: number }> {
  const d = model.hidden;
  const plain = await model.forward(tokens, { layers: [source, target] });
  const steered = await model.forward(tokens, { layers: [target], steer: { vectors: theta0, at: source } });
  const z0 = meanOverPositions(steered.resid.get(target)!, tokens.length, d);
  const zZero = meanOverPositions(plain.resid.get(target)!, tokens.length, d);
  let s = 0;
  for (let i = 0; i < d; i++) s += (z0[i]! - zZero[i]!) ** 2;
  return { x: plain.resid.get(source)!, z0: Float32Array.from(z0), denominator: Math.sqrt(s) };
}

/**
 * Runs MELBO-ortho. `model` must hold blocks 0..target (it is not modified unless
 * releaseEarlyBlocks is set). Reports progress and each vector through the options' callbacks
 * (progress.ts) and resolves with all vectors (row 0 = θ0).
 */
export async function ortho(model: Model, options: OrthoOptions): Promise<OrthoResult> {
  const tokens = options.tokens ?? (options.prompt !== undefined ? model.promptTokens(options.prompt) : undefined);
  if (tokens === undefined || tokens.length === 0) throw new MelboError("ortho needs a prompt: give `tokens` or `prompt`");
  const settings = settingsOf(model, options, tokens);
  validate(model, options, settings);
  const d = model.hidden;
  const { x, z0, denominator } = await orthoInputs(model, tokens, options.theta0, settings.source, settings.target);
  // What the run ran on, saved with it and checked on resume: read only when there is a run folder.
  const fingerprint = options.out !== undefined ? await model.fingerprint(settings.target) : undefined;

  let vectors: Float32Array[] = [Float32Array.from(options.theta0)];
  let log: VectorLogLine[] = [];
  let traces: TraceLine[] = [];
  const traceEvery = options.traceEvery ?? 0;
  if (!Number.isInteger(traceEvery) || traceEvery < 0) throw new MelboError(`traceEvery must be a non-negative integer, got ${traceEvery}`);
  let state: RunState = { found: 0, dropped: 0, consecutiveSmall: 0, stopReason: null };
  if (options.resume) {
    if (options.out === undefined) throw new MelboError("resume needs an output directory");
    const saved = await readOrthoRun<OrthoSettings>(options.out);
    if (saved) {
      if (saved.d !== d) throw new MelboError(`cannot resume: the saved vectors have d = ${saved.d}, this model ${d}`, { file: options.out });
      checkSameModel(saved.model, fingerprint!, options.out);
      const prompt = promptDifference(model, saved.settings.tokens ?? [], settings.tokens);
      if (prompt) throw new MelboError(`cannot resume: ${prompt}`, { file: options.out });
      const diff = sameSettings(settings, saved.settings);
      if (diff) throw new MelboError(`cannot resume: ${diff}`, { file: options.out });
      const theta = thetaDifference(row(saved.vectors, 0, d), options.theta0);
      if (theta) throw new MelboError(`cannot resume: ${theta}`, { file: options.out });
      vectors = [];
      for (let r = 0; r < saved.vectors.length / d; r++) vectors.push(Float32Array.from(row(saved.vectors, r, d)));
      log = saved.log;
      traces = await readTrace(options.out, (index) => index <= saved.state.found);
      // A run that vanished stays finished; the other stop rules are re-checked (count may grow).
      state = { ...saved.state, stopReason: saved.state.stopReason === "vanished" ? "vanished" : null };
    }
  }
  // The basis is rebuilt from the saved float32 rows exactly as it grew in the first place,
  // which makes a resumed run bit-identical to an uninterrupted one.
  const basis = new OrthonormalBasis(d, vectors.length + settings.block);
  for (const v of vectors) basis.add(v);

  if (options.releaseEarlyBlocks) model.release(settings.source + 1, true);
  const resumedFrom = state.found;
  options.onResume?.(resumedFrom);
  const started = performance.now();
  const onProgress = options.onProgress;
  const flat = () => {
    const out = new Float32Array(vectors.length * d);
    vectors.forEach((v, r) => out.set(v, r * d));
    return out;
  };
  const save = async () => {
    if (options.out !== undefined && (traceEvery > 0 || traces.length > 0)) await writeTrace(options.out, traces);
    if (options.out !== undefined) await writeOrthoRun(options.out, { settings, state, vectors: flat(), d, log, model: fingerprint! }, options.metadata);
  };

  let stop: StopReason | null = null;
  while (stop === null) {
    if (state.stopReason === "vanished") stop = "vanished";
    else if (state.found >= options.count) stop = "count";
    else if (state.consecutiveSmall >= settings.patience) stop = "norm";
    else if (basis.size >= d) stop = "dimension";
    if (stop !== null) break;
    const rows = Math.min(settings.block, options.count - state.found, d - basis.size);
    const starts = blockStarts(options.theta0, basis, rows, state.found + 1, settings);
    const blockStarted = performance.now();
    const result = await model.orthoBlock(
      {
        x, theta0: options.theta0, basis: basis.rows().slice(), rows, steps: settings.steps,
        source: settings.source, target: settings.target, lr: settings.lr, betas: settings.betas, eps: settings.eps,
        projection: settings.projection, lossTolerance: settings.lossTolerance, inBlock: settings.inBlock,
        gradientInBlock: settings.gradientInBlock,
        ...(starts ? { starts } : {}),
        progressEvery: options.progressEvery,
        ...(traceEvery > 0 ? { traceEvery } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      },
      onProgress &&
        ((p) => {
          const at = searchProgress({ finished: state.found, rows, step: p.step, steps: p.steps }, { total: options.count, resumedFrom, started });
          onProgress({ ...at, meanLoss: p.meanLoss, minLoss: p.minLoss });
        }),
    );
    const seconds = (performance.now() - blockStarted) / 1000 / rows;
    const foundBefore = state.found;
    for (let r = 0; r < rows; r++) {
      const theta = result.thetas.slice(r * d, (r + 1) * d);
      const n = norm(theta);
      state.consecutiveSmall = n < settings.minNorm ? state.consecutiveSmall + 1 : 0;
      if (n < settings.dropNorm || !basis.add(theta)) {
        state.dropped++;
        options.onDropped?.(n);
        continue;
      }
      state.found++;
      vectors.push(theta);
      const loss = result.losses[r]!;
      const line: VectorLogLine = { index: state.found, loss, relLoss: loss / denominator, norm: n, steps: result.steps[r]!, seconds };
      log.push(line);
      const trace = result.trace;
      if (trace !== undefined && traceEvery > 0) {
        const points = trace.length / rows;
        traces.push({ index: state.found, every: traceEvery, relLoss: Array.from({ length: points }, (_, j) => trace[j * rows + r]! / denominator) });
      }
      options.onVector?.(line, theta);
    }
    if (state.found === foundBefore) stop = "vanished";
    await save();
  }
  state.stopReason = stop;
  await save();
  const all = flat();
  return {
    reason: stop, found: state.found, dropped: state.dropped, maxAbsCos: maxAbsCosine(all, vectors.length, d), vectors: all, log,
    resumedFrom, inputs: { x, z0, denominator },
  };
}
