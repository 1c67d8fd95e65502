// A loaded Qwen2 checkpoint: the public face of the native engine. Validates every input on
// the JS side so the user gets a MelboError naming the problem, never a native crash.

import { MelboError } from "../errors.js";
import { native, type ComputeDtype, type Device, type InBlockOrthogonalisation, type NativeAbortFlag, type NativeLoopFields, type NativeModel, type NativeTensorSource } from "../native.js";
import { readCheckpoint } from "./checkpoint.js";
import { layoutSlots, type LayoutPart } from "./qwen2-layout.js";
import { checkBlock, checkFinite, checkSlice } from "./checks.js";
import { modelFingerprint, type ModelFingerprint } from "./fingerprint.js";
import { loadTokenizer, type PromptOptions, type TextCodec } from "./tokenizer.js";
import type { Checkpoint, Qwen2Config } from "./types.js";

export interface LoadOptions {
  /** Compute dtype: "f32" (default, exact) or "bf16" (fast). Weights are converted on load. */
  dtype?: ComputeDtype;
  /** Blocks to hold, inclusive (default: all). A job on blocks 0..16 of 24 never maps the rest. */
  blocks?: { from?: number; to?: number };
  /** Load the token embedding (default: when blocks start at 0). */
  embedding?: boolean;
  /** Load the final norm and lm_head (default: when blocks end at the last block). */
  head?: boolean;
  /**
   * "cpu" (default) or a GPU: "cuda", "cuda:N". Needs melbo built against a CUDA libtorch
   * (README, Set-up details). Weights are read on the CPU and copied to the device; inputs and
   * results stay plain typed arrays. bf16 on a GPU computes in bf16.
   */
  device?: Device;
}

/** Checks a device name before any file is read: a clear error instead of a late native one. */
export function checkDevice(device: string): Device {
  if (!/^(cpu|cuda(:\d+)?)$/.test(device)) throw new MelboError(`device must be "cpu", "cuda" or "cuda:N", got "${device}"`);
  if (device !== "cpu" && !native().cudaAvailable()) {
    throw new MelboError(
      `device "${device}": no CUDA device is available to this melbo build (libtorch ${native().version().torch}` +
        `${native().cudaKernelsBuilt() ? "" : ", a CPU-only build"}); rebuild against a CUDA libtorch (LIBTORCH=…, README) or use "cpu"`,
    );
  }
  return device as Device;
}

export interface Steering {
  /** One vector per batch row: [batch * d]. */
  vectors: Float32Array;
  /** Block whose output resid(at) gets the vector added at every position. */
  at: number;
  /** Steering strength per row: row b adds scales[b] · vector b (default 1 each; negative flips it). */
  scales?: readonly number[];
}

export interface ForwardOptions {
  /** Blocks k whose output resid(k) to return. */
  layers?: number[];
  /** Return logits for all positions. */
  logits?: boolean;
  steer?: Steering;
  /** Rows in `tokens` ([batch * seq]); default: the number of steering vectors, else 1. */
  batch?: number;
}

export interface ForwardResult {
  batch: number;
  seq: number;
  /** resid(k): [batch * seq * d] float32, for each requested block. */
  resid: Map<number, Float32Array>;
  /** [batch * seq * vocab] float32, when asked for. */
  logits?: Float32Array;
}

export interface GenerateOptions {
  /** Steering vectors [B * d], one continuation per vector; none = one unsteered row. */
  vectors?: Float32Array;
  at?: number;
  /** Steering strength per vector: row b adds scales[b] · vector b (default 1 each; negative flips it). */
  scales?: readonly number[];
  /**
   * One sampling seed per row: row b's tokens then depend only on its own seed, not on the rows
   * beside it in the batch. Default: every row draws from one generator seeded with `seed`.
   */
  rowSeeds?: readonly number[];
  /** Also return each row's logits at the first answer position (the token after the prompt). */
  firstLogits?: boolean;
  maxNewTokens: number;
  /** 0 (default) = greedy. */
  temperature?: number;
  topP?: number;
  seed?: number;
  /** Default: the checkpoint's EOS tokens. Pass [] to never stop early. */
  stopTokens?: number[];
}

export interface OrthoLossGradOptions {
  /** resid(source) of the unsteered prompt: [seq * d]. */
  x: Float32Array;
  /** [batch * d] */
  thetas: Float32Array;
  /** Target mean of resid(target): [d]. */
  z0: Float32Array;
  source: number;
  target: number;
}

/** What both native optimiser loops take: steps of Adam on the slice from block source to block target. */
export interface LoopOptions {
  steps: number;
  source: number;
  target: number;
  lr: number;
  betas: [number, number];
  eps: number;
}

/** The native request's fields for `o`'s loop settings. */
function loopFields(o: LoopOptions): NativeLoopFields {
  return { steps: o.steps, source: o.source, target: o.target, lr: o.lr, beta1: o.betas[0], beta2: o.betas[1], eps: o.eps };
}

export interface OrthoBlockOptions extends LoopOptions {
  x: Float32Array; // [seq * d] resid(source) of the unsteered prompt
  theta0: Float32Array; // [d]
  basis: Float64Array; // [m * d] orthonormal
  rows: number;
  projection: "post" | "grad";
  /** [rows * d]: each row's start (row 0 should be θ0); absent = θ0 for every row. */
  starts?: Float32Array;
  /** Default "gram-schmidt" (index order). */
  inBlock?: InBlockOrthogonalisation;
  /** Project each row's gradient off the block rows that constrain it, in either projection mode (default false). */
  gradientInBlock?: boolean;
  lossTolerance: number; // 0 = off
  progressEvery?: number;
  /** > 0: record every row's loss at steps 1, 1+K, 1+2K, … (OrthoBlockResult.trace). */
  traceEvery?: number;
  signal?: AbortSignal;
}

export interface OrthoBlockProgress {
  step: number;
  steps: number;
  meanLoss: number;
  minLoss: number;
}

export interface OrthoBlockResult {
  thetas: Float32Array; // [rows * d]
  losses: Float32Array; // [rows], at the final thetas
  steps: Int32Array; // [rows]
  /** [points * rows] with traceEvery: the loss each recorded step started from. */
  trace?: Float32Array;
}

/** One example prompt of a MELBO training, prepared once (nothing before the source block reruns). */
export interface TrainExampleInput {
  x: Float32Array; // [seq * d] resid(source) of the unsteered prompt
  positions: Int32Array; // [n] target positions, each in 0..seq-1
  z0: Float32Array; // [n * d] resid(target) of the unsteered prompt at those positions
}

export interface TrainBlockOptions extends LoopOptions {
  examples: TrainExampleInput[];
  /** [rows * d] start directions (e.g. seeded randn): projected out of `learned` when orthogonal, scaled to R. */
  starts: Float32Array;
  /** [m * d] orthonormal rows (float64) the vectors must stay orthogonal to; used when `orthogonal`. */
  learned: Float64Array;
  radius: number;
  p: number;
  q: number;
  weightDecay: number;
  amsgrad: boolean;
  orthogonal: boolean;
  progressEvery?: number;
  signal?: AbortSignal;
}

export interface TrainBlockProgress {
  step: number;
  steps: number;
  meanObjective: number; // over the rows, at the thetas this step started from
  maxObjective: number;
}

export interface TrainBlockResult {
  thetas: Float32Array; // [rows * d], norm R
  objectives: Float32Array; // [rows]: F at the final thetas
  trace: Float32Array; // [steps * rows]: F at the thetas each step started from
  radiusError: Float32Array; // [steps]: max over rows of |‖θ‖ − R| after each step
}

/** Native searches report progress every this many steps unless told otherwise. */
const PROGRESS_EVERY = 10;

export class Model {
  private handle: NativeModel | null;

  private constructor(
    readonly checkpoint: Checkpoint,
    readonly codec: TextCodec,
    handle: NativeModel,
  ) {
    this.handle = handle;
  }

  get dir(): string {
    return this.checkpoint.dir;
  }
  get config(): Qwen2Config {
    return this.checkpoint.config;
  }
  /** d_model */
  get hidden(): number {
    return this.checkpoint.config.hiddenSize;
  }
  /** Which blocks and parts are held now. */
  /** Blocks, dtypes, device, and the kernel each product takes at `rows` (B·T) rows (default [26]). */
  info(rows?: number[]): ReturnType<NativeModel["info"]> {
    if (rows !== undefined && !rows.every((r) => Number.isInteger(r) && r >= 1)) throw new MelboError(`info: row counts must be positive integers, got ${rows.join(", ")}`);
    return rows === undefined ? this.native().info() : this.native().info(rows);
  }

  static async load(dir: string, options: LoadOptions = {}): Promise<Model> {
    const device = checkDevice(options.device ?? "cpu");
    const checkpoint = await readCheckpoint(dir);
    const codec = await loadTokenizer(checkpoint.dir);
    const c = checkpoint.config;
    const from = options.blocks?.from ?? 0;
    const to = options.blocks?.to ?? c.numLayers - 1;
    if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to >= c.numLayers || from > to + 1) {
      throw new MelboError(`blocks ${from}..${to} are out of range: this model has blocks 0..${c.numLayers - 1}`, { file: checkpoint.dir });
    }
    const embedding = options.embedding ?? from === 0;
    const head = options.head ?? to === c.numLayers - 1;
    const tensors = tensorSources(checkpoint, { from, to, embedding, head });
    const handle = await native().loadModel({
      config: c,
      dtype: options.dtype ?? "f32",
      device,
      firstBlock: from,
      lastBlock: to,
      embedding,
      head,
      tensors,
    });
    return new Model(checkpoint, codec, handle);
  }

  /** Token ids of a prompt: chat template with the default system message, or raw text. */
  promptTokens(prompt: string, options: PromptOptions = {}): Int32Array {
    const tokens = this.codec.promptTokens(prompt, options);
    if (tokens.length === 0) throw new MelboError("the prompt is empty after tokenization");
    return tokens;
  }

  async forward(tokens: Int32Array, options: ForwardOptions = {}): Promise<ForwardResult> {
    const d = this.hidden;
    const batch = options.batch ?? (options.steer ? options.steer.vectors.length / d : 1);
    if (!Number.isInteger(batch) || batch < 1) throw new MelboError(`batch must be a positive integer, got ${batch}`);
    if (tokens.length === 0 || tokens.length % batch !== 0) {
      throw new MelboError(`tokens hold ${tokens.length} ids, not a non-empty [batch ${batch} × seq] array`);
    }
    this.checkTokens(tokens);
    this.checkLength(tokens.length / batch, 0);
    const layers = [...new Set(options.layers ?? [])];
    for (const k of layers) checkBlock(this.config.numLayers, k, "layer");
    if (options.steer) this.checkSteering(options.steer.vectors, options.steer.at, batch);
    const steer = options.steer ? { vectors: this.scaled(options.steer.vectors, options.steer.scales, batch), at: options.steer.at } : undefined;
    const out = await this.native().forward({
      tokens,
      batch,
      layers,
      logits: options.logits ?? false,
      ...(steer ? { steer } : {}),
    });
    const resid = new Map<number, Float32Array>();
    layers.forEach((k, i) => resid.set(k, out.resid[i]!));
    return { batch, seq: tokens.length / batch, resid, ...(out.logits ? { logits: out.logits } : {}) };
  }

  /** Loss ‖mean_T f_{s→t}(x + θ_b) − z0‖₂ per row and its gradient with respect to θ_b. */
  async orthoLossGrad(o: OrthoLossGradOptions): Promise<{ loss: Float32Array; grad: Float32Array }> {
    const d = this.hidden;
    this.checkSlice(o.source, o.target);
    if (o.x.length === 0 || o.x.length % d !== 0) throw new MelboError(`x must be [seq × ${d}], got ${o.x.length} values`);
    if (o.z0.length !== d) throw new MelboError(`z0 must have ${d} values, got ${o.z0.length}`);
    if (o.thetas.length === 0 || o.thetas.length % d !== 0) throw new MelboError(`thetas must be [batch × ${d}], got ${o.thetas.length} values`);
    checkFinite(o.thetas, "thetas");
    return this.native().orthoLossGrad({
      x: o.x,
      seq: o.x.length / d,
      thetas: o.thetas,
      batch: o.thetas.length / d,
      z0: o.z0,
      source: o.source,
      target: o.target,
    });
  }

  /** z(θ_b) = mean over positions of f_{s→t}(x + θ_b): [batch * d]. */
  async sliceMean(o: { x: Float32Array; thetas: Float32Array; source: number; target: number }): Promise<Float32Array> {
    const d = this.hidden;
    this.checkSlice(o.source, o.target);
    if (o.x.length === 0 || o.x.length % d !== 0) throw new MelboError(`x must be [seq × ${d}], got ${o.x.length} values`);
    if (o.thetas.length === 0 || o.thetas.length % d !== 0) throw new MelboError(`thetas must be [batch × ${d}], got ${o.thetas.length} values`);
    checkFinite(o.thetas, "thetas");
    return this.native().sliceMean({ x: o.x, seq: o.x.length / d, thetas: o.thetas, batch: o.thetas.length / d, source: o.source, target: o.target });
  }

  /** Continuations of one prompt, one per steering vector (KV cache, batched). New tokens only. */
  async generate(tokens: Int32Array, options: GenerateOptions): Promise<{ tokens: Int32Array[]; firstLogits?: Float32Array /* [B * vocab] */ }> {
    if (tokens.length === 0) throw new MelboError("generate: the prompt has no tokens");
    this.checkTokens(tokens);
    if (!Number.isInteger(options.maxNewTokens) || options.maxNewTokens < 0) {
      throw new MelboError(`maxNewTokens must be a non-negative integer, got ${options.maxNewTokens}`);
    }
    this.checkLength(tokens.length, options.maxNewTokens);
    const temperature = options.temperature ?? 0;
    const topP = options.topP ?? 1;
    if (!(temperature >= 0)) throw new MelboError(`temperature must be >= 0, got ${temperature}`);
    if (!(topP > 0 && topP <= 1)) throw new MelboError(`topP must be in (0, 1], got ${topP}`);
    const seed = options.seed ?? 0;
    if (!Number.isSafeInteger(seed) || seed < 0) throw new MelboError(`seed must be a non-negative integer, got ${seed}`);
    let batch = 1;
    let vectors: Float32Array | undefined;
    if (options.vectors) {
      batch = options.vectors.length / this.hidden;
      if (options.at === undefined) throw new MelboError("generate: steering vectors need the block 'at'");
      this.checkSteering(options.vectors, options.at, batch);
      vectors = this.scaled(options.vectors, options.scales, batch);
    } else if (options.scales !== undefined) {
      throw new MelboError("generate: scales need steering vectors");
    }
    if (options.rowSeeds !== undefined) {
      if (options.rowSeeds.length !== batch) throw new MelboError(`rowSeeds must have one seed per row (${batch}), got ${options.rowSeeds.length}`);
      for (const s of options.rowSeeds) if (!Number.isSafeInteger(s) || s < 0) throw new MelboError(`row seeds must be non-negative integers, got ${s}`);
    }
    const out = await this.native().generate({
      tokens,
      ...(vectors ? { vectors, batch, at: options.at! } : {}),
      maxNewTokens: options.maxNewTokens,
      temperature,
      topP,
      seed,
      ...(options.rowSeeds ? { rowSeeds: [...options.rowSeeds] } : {}),
      stopTokens: options.stopTokens ?? [...this.codec.eosTokenIds],
      ...(options.firstLogits ? { firstLogits: true } : {}),
    });
    const rows: Int32Array[] = [];
    for (let b = 0; b < batch; b++) {
      rows.push(out.tokens.slice(b * options.maxNewTokens, b * options.maxNewTokens + out.lengths[b]!));
    }
    return { tokens: rows, ...(out.firstLogits ? { firstLogits: out.firstLogits } : {}) };
  }

  /**
   * Runs `steps` MELBO-ortho steps for a block of `rows` vectors natively (see search/ortho.ts,
   * which owns the basis, the stop rules and the files). Rejects with an AbortError on abort.
   */
  async orthoBlock(o: OrthoBlockOptions, onProgress?: (p: OrthoBlockProgress) => void): Promise<OrthoBlockResult> {
    const d = this.hidden;
    this.checkSlice(o.source, o.target);
    if (o.theta0.length !== d) throw new MelboError(`θ0 must have ${d} values (the model's hidden size), got ${o.theta0.length}`);
    if (o.x.length === 0 || o.x.length % d !== 0) throw new MelboError(`x must be [seq × ${d}], got ${o.x.length} values`);
    if (o.basis.length % d !== 0) throw new MelboError(`basis must be [m × ${d}], got ${o.basis.length} values`);
    checkFinite(o.theta0, "θ0");
    if (!Number.isInteger(o.rows) || o.rows < 1) throw new MelboError(`rows must be a positive integer, got ${o.rows}`);
    if (o.starts !== undefined) {
      if (o.starts.length !== o.rows * d) throw new MelboError(`starts must be [rows × ${d}] = ${o.rows * d} values, got ${o.starts.length}`);
      checkFinite(o.starts, "starts");
    }
    return this.withAbortFlag(o.signal, (abort) =>
      this.native().orthoBlock(
        {
          x: o.x,
          seq: o.x.length / d,
          theta0: o.theta0,
          basis: o.basis,
          rows: o.rows,
          ...loopFields(o),
          projectGradient: o.projection === "grad",
          ...(o.starts ? { starts: o.starts } : {}),
          inBlock: o.inBlock ?? "gram-schmidt",
          projectGradientInBlock: o.gradientInBlock ?? false,
          lossTolerance: o.lossTolerance,
          progressEvery: o.progressEvery ?? PROGRESS_EVERY,
          traceEvery: o.traceEvery ?? 0,
          ...(abort ? { abort } : {}),
        },
        onProgress,
      ),
    );
  }

  /**
   * Runs `steps` MELBO training steps (docs/algorithm.md §3) for `rows` vectors natively, each row its
   * own AdamW. search/train.ts owns the seeds, the learned basis and the files. Rejects with an
   * AbortError on abort.
   */
  async trainBlock(o: TrainBlockOptions, onProgress?: (p: TrainBlockProgress) => void): Promise<TrainBlockResult> {
    const d = this.hidden;
    this.checkSlice(o.source, o.target);
    if (o.examples.length === 0) throw new MelboError("training needs at least one example prompt");
    o.examples.forEach((e, i) => {
      if (e.x.length === 0 || e.x.length % d !== 0) throw new MelboError(`example ${i}: x must be [seq × ${d}], got ${e.x.length} values`);
      const seq = e.x.length / d;
      if (e.positions.length === 0) throw new MelboError(`example ${i}: no target positions`);
      for (const t of e.positions) {
        if (!Number.isInteger(t) || t < 0 || t >= seq) throw new MelboError(`example ${i}: target position ${t} is out of range 0..${seq - 1}`);
      }
      if (e.z0.length !== e.positions.length * d) throw new MelboError(`example ${i}: z0 must be [${e.positions.length} × ${d}], got ${e.z0.length} values`);
      checkFinite(e.x, `example ${i}: x`);
      checkFinite(e.z0, `example ${i}: z0`);
    });
    if (o.starts.length === 0 || o.starts.length % d !== 0) throw new MelboError(`start directions must be [rows × ${d}], got ${o.starts.length} values`);
    checkFinite(o.starts, "start directions");
    if (o.learned.length % d !== 0) throw new MelboError(`learned vectors must be [m × ${d}], got ${o.learned.length} values`);
    for (const [name, x] of [["radius R", o.radius], ["p", o.p], ["q", o.q], ["lr", o.lr]] as const) {
      if (!(Number.isFinite(x) && x > 0)) throw new MelboError(`${name} must be a number > 0, got ${x}`);
    }
    if (!Number.isInteger(o.steps) || o.steps < 0) throw new MelboError(`steps must be a non-negative integer, got ${o.steps}`);
    return this.withAbortFlag(o.signal, (abort) =>
      this.native().trainBlock(
        {
          examples: o.examples.map((e) => ({ x: e.x, seq: e.x.length / d, positions: e.positions, z0: e.z0 })),
          thetas: o.starts,
          rows: o.starts.length / d,
          learned: o.learned,
          radius: o.radius,
          p: o.p,
          q: o.q,
          ...loopFields(o),
          weightDecay: o.weightDecay,
          amsgrad: o.amsgrad,
          orthogonal: o.orthogonal,
          progressEvery: o.progressEvery ?? PROGRESS_EVERY,
          ...(abort ? { abort } : {}),
        },
        onProgress,
      ),
    );
  }

  /** What identifies this model for a saved run: its config and a fingerprint of the embedding and blocks 0..lastBlock (model/fingerprint.ts). */
  fingerprint(lastBlock: number): Promise<ModelFingerprint> {
    checkBlock(this.config.numLayers, lastBlock, "block");
    return modelFingerprint(this.checkpoint, lastBlock);
  }

  /** Frees blocks below `below` (and the embedding) once a job no longer needs them. */
  release(below: number, embedding = true): void {
    this.native().release({ below, embedding });
  }

  dispose(): void {
    this.handle?.dispose();
    this.handle = null;
  }

  /**
   * Runs a native job with an AbortFlag wired to `signal` (none without a signal); an aborted
   * job rejects with the signal's reason.
   */
  private async withAbortFlag<T>(signal: AbortSignal | undefined, job: (flag: NativeAbortFlag | undefined) => Promise<T>): Promise<T> {
    if (!signal) return job(undefined);
    signal.throwIfAborted();
    const flag = new (native().AbortFlag)();
    const onAbort = () => flag.abort();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      return await job(flag);
    } catch (e) {
      if (signal.aborted) throw signal.reason ?? new DOMException("aborted", "AbortError");
      throw e;
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }

  private native(): NativeModel {
    if (this.handle === null) throw new MelboError("this model was disposed");
    return this.handle;
  }

  private checkTokens(tokens: Int32Array): void {
    const V = this.config.vocabSize;
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i]!;
      if (t < 0 || t >= V) throw new MelboError(`token id ${t} at position ${i} is outside the vocabulary 0..${V - 1}`);
    }
  }

  private checkLength(promptLength: number, newTokens: number): void {
    const max = this.config.maxPositionEmbeddings;
    if (promptLength + newTokens > max) {
      throw new MelboError(
        `the prompt has ${promptLength} tokens${newTokens ? ` + ${newTokens} new` : ""}, more than this model's max_position_embeddings (${max})`,
        { file: this.checkpoint.dir },
      );
    }
  }

  private checkSlice(source: number, target: number): void {
    checkSlice(this.config.numLayers, source, target);
  }

  /** `vectors` [batch * d] with row b multiplied by scales[b] (the same array when no scales). */
  private scaled(vectors: Float32Array, scales: readonly number[] | undefined, batch: number): Float32Array {
    if (scales === undefined) return vectors;
    if (scales.length !== batch) throw new MelboError(`scales must have one value per steering vector (${batch}), got ${scales.length}`);
    const d = this.hidden;
    const out = new Float32Array(vectors.length);
    scales.forEach((scale, b) => {
      if (!Number.isFinite(scale)) throw new MelboError(`scale ${b} is ${scale}, not a finite number`);
      for (let i = b * d; i < (b + 1) * d; i++) out[i] = vectors[i]! * scale;
    });
    checkFinite(out, "scaled steering vectors");
    return out;
  }

  private checkSteering(vectors: Float32Array, at: number, batch: number): void {
    const d = this.hidden;
    checkBlock(this.config.numLayers, at, "steering block");
    if (vectors.length !== batch * d) {
      throw new MelboError(`steering vectors must be [${batch} × ${d}] = ${batch * d} values, got ${vectors.length}`);
    }
    checkFinite(vectors, "steering vectors");
  }
}

/**
 * The checkpoint's tensors for a load of `part`, each named by its role: the native loader knows
 * no checkpoint names (the layout is qwen2-layout.ts).
 */
export function tensorSources(checkpoint: Checkpoint, part: LayoutPart): NativeTensorSource[] {
  return layoutSlots(checkpoint.config, part).map(({ name, role, block }) => {
    const e = checkpoint.tensors.get(name);
    if (e === undefined) throw new MelboError(`missing tensor "${name}"`, { file: checkpoint.dir });
    return { name, role, block, path: e.path, dtype: e.dtype, shape: e.shape, offset: e.offset, nbytes: e.nbytes };
  });
}

export function loadModel(dir: string, options: LoadOptions = {}): Promise<Model> {
  return Model.load(dir, options);
}
