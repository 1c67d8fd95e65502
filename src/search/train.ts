// MELBO (docs/algorithm.md §3): unsupervised steering vectors θ, ‖θ‖ = R, that maximise how much
// they change resid(target) of one or several prompts. The step loop runs natively
// (Model.trainBlock); this module owns the prompts' inputs, the seeds, the basis of learned
// vectors (orthogonal mode), batching (independent mode), progress and the run files.

import { MelboError } from "../errors.js";
import { checkSlice } from "../model/checks.js";
import { TRAIN_DEFAULTS } from "./defaults.js";
import type { Model, TrainExampleInput } from "../model/model.js";
import { Rng } from "../util/rng.js";
import { OrthonormalBasis, maxAbsCosine, norm } from "./basis.js";
import { formatPositions, resolvePositions, toPositions, type Positions } from "./positions.js";
import { checkSameModel, promptDifference, settingDifference } from "./resume-check.js";
import { searchProgress, type SearchProgress } from "./progress.js";
import { readTrace, writeTrace, type TraceLine } from "./trace-file.js";
import { readTrainRun, writeTrainRun, type TrainLogLine, type TrainRunFiles } from "./train-files.js";
import type { ModelFingerprint } from "../model/fingerprint.js";

export interface TrainOptions {
  /** Example prompts as token ids (e.g. model.promptTokens(text)); at least one. */
  prompts: Int32Array[];
  /** Vectors to train. */
  count: number;
  /** R: every vector has this norm. */
  radius: number;
  p?: number; // default 2
  q?: number; // default p
  /** Default: defaultBlocks(model) (7 and L − 9, the original's choice; 7 → 15 for 24 blocks). */
  source?: number;
  target?: number;
  positions?: Positions | string; // default all; "last:4" is read as { kind: "last", count: 4 }
  steps?: number; // default 300
  /** Train the vectors independently (batched) instead of each orthogonal to all earlier ones. */
  independent?: boolean;
  /** Independent mode: vectors per native batch (default 32). */
  batch?: number;
  /** Vector k starts from randn drawn with seed + k (default seed 0). */
  seed?: number;
  lr?: number; // default 1e-3
  betas?: [number, number]; // default [0.9, 0.98]
  eps?: number; // default 1e-8
  /** Directory for vectors.safetensors + log.jsonl, rewritten after every vector (or batch). */
  out?: string;
  /** Continue the run saved in `out` (its model, prompts and settings must match; `count` may grow). */
  resume?: boolean;
  /** Extra metadata for the vectors file (model path, prompt text). */
  metadata?: Record<string, string>;
  signal?: AbortSignal;
  /** Free blocks 0..source and the embedding once the prompts' inputs are computed. */
  releaseEarlyBlocks?: boolean;
  progressEvery?: number; // default 10
  /** > 0 (with `out`): write each vector's objective every this many steps to OUT/trace.jsonl (default 0: off). */
  traceEvery?: number;
  onProgress?: (p: TrainProgress) => void;
  onVector?: (line: TrainLogLine, theta: Float32Array) => void;
  /** Called once before training starts with the number of vectors taken from a saved run (0 when none). */
  onResume?: (rows: number) => void;
}

/** Everything that decides the numbers, saved in the vectors file's metadata. */
export interface TrainSettings {
  source: number;
  target: number;
  radius: number;
  p: number;
  q: number;
  positions: string;
  steps: number;
  independent: boolean;
  batch: number;
  seed: number;
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  amsgrad: boolean;
  prompts: number[][];
  dtype: string;
}

/** Progress of a batch's step loop (progress.ts), with the objective over its rows before the step. */
export interface TrainProgress extends SearchProgress {
  meanObjective: number;
  maxObjective: number;
}

export interface TrainResult {
  /** [count * d], row k = vector k. */
  vectors: Float32Array;
  log: TrainLogLine[];
  /** Largest |cos| between two vectors (≈ 0 in orthogonal mode). */
  maxAbsCos: number;
  settings: TrainSettings;
}

/** The original's blocks: source 7, target L − 9 (its hidden_states[L − 8]); 7 → 15 for 24 blocks. */
export function defaultBlocks(numLayers: number): { source: number; target: number } {
  return { source: 7, target: numLayers - 9 };
}

/** Start direction of the vector with this seed: randn(d), from its own stream. */
export function startDirection(seed: number, d: number): Float32Array {
  return new Rng(seed, "melbo-train-start").fillNormal(new Float32Array(d));
}

function settingsOf(model: Model, o: TrainOptions): TrainSettings {
  const blocks = defaultBlocks(model.config.numLayers);
  const D = TRAIN_DEFAULTS;
  const p = o.p ?? D.p;
  return {
    source: o.source ?? blocks.source,
    target: o.target ?? blocks.target,
    radius: o.radius,
    p,
    q: o.q ?? p,
    positions: formatPositions(toPositions(o.positions)),
    steps: o.steps ?? D.steps,
    independent: o.independent ?? D.independent,
    batch: o.batch ?? D.batch,
    seed: o.seed ?? D.seed,
    lr: o.lr ?? D.lr,
    betas: o.betas ?? [...D.betas],
    eps: o.eps ?? D.eps,
    weightDecay: D.weightDecay,
    amsgrad: D.amsgrad,
    prompts: o.prompts.map((t) => [...t]),
    dtype: model.info().dtype,
  };
}

/** Source and target blocks, as given or defaulted, checked against the model's L blocks. */
export function trainBlocks(numLayers: number, source: number | undefined, target: number | undefined): { source: number; target: number } {
  const L = numLayers;
  const defaults = defaultBlocks(L);
  if (source === undefined && target === undefined && (defaults.target <= defaults.source || defaults.target >= L)) {
    throw new MelboError(`the default blocks 7 → L − 9 do not fit a model with ${L} blocks: choose the source and target blocks`);
  }
  const s = source ?? defaults.source;
  const t = target ?? defaults.target;
  checkSlice(L, s, t);
  return { source: s, target: t };
}

function validate(model: Model, o: TrainOptions, s: TrainSettings): void {
  trainBlocks(model.config.numLayers, o.source, o.target);
  if (o.prompts.length === 0) throw new MelboError("training needs at least one prompt");
  o.prompts.forEach((t, i) => {
    if (t.length === 0) throw new MelboError(`prompt ${i} has no tokens`);
  });
  for (const [name, x] of [["radius R", s.radius], ["p", s.p], ["q", s.q], ["lr", s.lr]] as const) {
    if (!(Number.isFinite(x) && x > 0)) throw new MelboError(`${name} must be a number > 0, got ${x}`);
  }
  if (!Number.isInteger(o.count) || o.count < 1) throw new MelboError(`count must be a positive integer, got ${o.count}`);
  if (!Number.isInteger(s.steps) || s.steps < 0) throw new MelboError(`steps must be a non-negative integer, got ${s.steps}`);
  if (!Number.isInteger(s.batch) || s.batch < 1) throw new MelboError(`batch must be a positive integer, got ${s.batch}`);
  if (!Number.isSafeInteger(s.seed) || s.seed < 0 || !Number.isSafeInteger(s.seed + o.count)) {
    throw new MelboError(`seed must be a non-negative integer (seed + count a safe integer), got ${s.seed}`);
  }
  if (!s.independent && o.count > model.hidden) {
    throw new MelboError(`count ${o.count} orthogonal vectors do not fit in ${model.hidden} dimensions`);
  }
}

/** Throws "cannot resume: …" naming the first difference between the saved run and this one. */
function checkResumable(model: Model, saved: TrainRunFiles<TrainSettings>, now: TrainSettings, fingerprint: ModelFingerprint, folder: string): void {
  const fail = (why: string) => {
    throw new MelboError(`cannot resume: ${why}`, { file: folder });
  };
  if (saved.d !== model.hidden) fail(`the saved vectors have d = ${saved.d}, this model ${model.hidden}`);
  checkSameModel(saved.model, fingerprint, folder);
  const prompts = saved.settings.prompts ?? [];
  if (prompts.length !== now.prompts.length) fail(`the run was saved with ${prompts.length} prompt(s), now ${now.prompts.length}`);
  for (let i = 0; i < prompts.length; i++) {
    const diff = promptDifference(model, prompts[i]!, now.prompts[i]!, prompts.length > 1 ? `prompt ${i + 1}` : "the prompt");
    if (diff) fail(diff);
  }
  const diff = settingDifference(now, saved.settings, "prompts");
  if (diff) fail(`${diff.key} differs (saved ${diff.saved}, now ${diff.now})`);
}

/**
 * Each prompt's resid(source) and its unsteered resid(target) at the target positions. `model`
 * must hold blocks 0..target.
 */
export async function trainInputs(model: Model, prompts: Int32Array[], source: number, target: number, positions: Positions): Promise<TrainExampleInput[]> {
  const d = model.hidden;
  const out: TrainExampleInput[] = [];
  for (const [i, tokens] of prompts.entries()) {
    const at = resolvePositions(positions, tokens.length, i);
    const f = await model.forward(tokens, { layers: [source, target] });
    const resid = f.resid.get(target)!; // [seq * d]
    const z0 = new Float32Array(at.length * d); // [n * d]
    at.forEach((t, r) => z0.set(resid.subarray(t * d, (t + 1) * d), r * d));
    out.push({ x: f.resid.get(source)!, positions: at, z0 });
  }
  return out;
}

/**
 * Trains `count` vectors: in orthogonal mode one after another, each against all earlier ones;
 * in independent mode in batches of `batch` rows. Vector k starts from startDirection(seed + k),
 * so vector k of any run equals vector 0 of a one-vector run with seed + k (independent mode).
 */
export async function train(model: Model, options: TrainOptions): Promise<TrainResult> {
  const settings = settingsOf(model, options);
  validate(model, options, settings);
  const d = model.hidden;
  const positions = toPositions(options.positions);
  const examples = await trainInputs(model, options.prompts, settings.source, settings.target, positions);
  if (options.releaseEarlyBlocks) model.release(settings.source + 1, true);

  const count = options.count;
  const vectors = new Float32Array(count * d);
  let log: TrainLogLine[] = [];
  const basis = new OrthonormalBasis(d, settings.independent ? 1 : count);
  // What the run ran on, saved with it and checked on resume: read only when there is a run folder.
  const fingerprint = options.out !== undefined ? await model.fingerprint(settings.target) : undefined;
  let done = 0;
  const traceEvery = options.traceEvery ?? 0;
  if (!Number.isInteger(traceEvery) || traceEvery < 0) throw new MelboError(`traceEvery must be a non-negative integer, got ${traceEvery}`);
  let traces: TraceLine[] = [];
  if (options.resume) {
    if (options.out === undefined) throw new MelboError("resume needs an output directory");
    const saved = await readTrainRun<TrainSettings>(options.out);
    if (saved) {
      checkResumable(model, saved, settings, fingerprint!, options.out);
      done = Math.min(saved.state.rows, count);
      vectors.set(saved.vectors.subarray(0, done * d));
      log = saved.log.slice(0, done);
      traces = await readTrace(options.out, (index) => index < done);
      // The basis grows from the saved float32 rows exactly as it did the first time, so the
      // vectors after them are the ones an uninterrupted run finds.
      if (!settings.independent) for (let k = 0; k < done; k++) basis.add(vectors.subarray(k * d, (k + 1) * d));
    }
  }
  const resumedFrom = done;
  options.onResume?.(resumedFrom);
  const started = performance.now();
  const onProgress = options.onProgress;
  while (done < count) {
    const rows = settings.independent ? Math.min(settings.batch, count - done) : 1;
    const starts = new Float32Array(rows * d);
    for (let r = 0; r < rows; r++) starts.set(startDirection(settings.seed + done + r, d), r * d);
    const batchStarted = performance.now();
    const result = await model.trainBlock(
      {
        examples, starts, learned: settings.independent ? new Float64Array(0) : basis.rows().slice(),
        radius: settings.radius, p: settings.p, q: settings.q, steps: settings.steps,
        source: settings.source, target: settings.target, lr: settings.lr, betas: settings.betas, eps: settings.eps,
        weightDecay: settings.weightDecay, amsgrad: settings.amsgrad, orthogonal: !settings.independent,
        progressEvery: options.progressEvery,
        ...(options.signal ? { signal: options.signal } : {}),
      },
      onProgress &&
        ((p) => {
          const at = searchProgress({ finished: done, rows, step: p.step, steps: p.steps }, { total: count, resumedFrom, started });
          onProgress({ ...at, meanObjective: p.meanObjective, maxObjective: p.maxObjective });
        }),
    );
    const seconds = (performance.now() - batchStarted) / 1000 / rows;
    for (let r = 0; r < rows; r++) {
      const theta = result.thetas.slice(r * d, (r + 1) * d);
      vectors.set(theta, (done + r) * d);
      // Orthogonal mode: the next vector avoids this one. A vector inside the span of the
      // earlier ones is impossible (it was projected out of them at every step).
      if (!settings.independent && !basis.add(theta)) throw new Error(`vector ${done + r} has no direction outside the earlier ones`);
      const line: TrainLogLine = {
        index: done + r,
        objective: result.objectives[r]!,
        startObjective: settings.steps > 0 ? result.trace[r]! : result.objectives[r]!,
        norm: norm(theta),
        steps: settings.steps,
        seconds,
        seed: settings.seed + done + r,
      };
      log.push(line);
      if (traceEvery > 0) {
        const objective: number[] = [];
        for (let s = 0; s < settings.steps; s += traceEvery) objective.push(result.trace[s * rows + r]!);
        traces.push({ index: done + r, every: traceEvery, objective });
      }
      options.onVector?.(line, theta);
    }
    done += rows;
    if (options.out !== undefined) {
      if (traceEvery > 0 || traces.length > 0) await writeTrace(options.out, traces);
      await writeTrainRun(options.out, { settings, state: { rows: done, count }, vectors: vectors.slice(0, done * d), d, log, model: fingerprint! }, options.metadata);
    }
  }
  return { vectors, log, maxAbsCos: maxAbsCosine(vectors, count, d), settings };
}
