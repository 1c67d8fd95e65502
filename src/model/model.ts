// A loaded Qwen2 checkpoint: the public face of the native engine. Validates every input on
// the JS side so the user gets a MelboError naming the problem, never a native crash.

import { MelboError } from "../errors.js";
import { native, type ComputeDtype, type NativeAbortFlag, type NativeModel } from "../native.js";
import { blockTensorNames, readCheckpoint } from "./checkpoint.js";
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
}

export interface Steering {
  /** One vector per batch row: [batch * d]. */
  vectors: Float32Array;
  /** Block whose output resid(at) gets the vector added at every position. */
  at: number;
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

export interface OrthoBlockOptions {
  x: Float32Array; // [seq * d] resid(source) of the unsteered prompt
  theta0: Float32Array; // [d]
  basis: Float64Array; // [m * d] orthonormal
  rows: number;
  steps: number;
  source: number;
  target: number;
  lr: number;
  betas: [number, number];
  eps: number;
  projection: "post" | "grad";
  lossTolerance: number; // 0 = off
  progressEvery?: number;
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
}

function checkFinite(values: Float32Array, what: string): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i]!)) throw new MelboError(`${what} contains a non-finite value (${values[i]}) at index ${i}`);
  }
}

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
  info(): ReturnType<NativeModel["info"]> {
    return this.native().info();
  }

  static async load(dir: string, options: LoadOptions = {}): Promise<Model> {
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
    const names = new Set<string>();
    for (let k = from; k <= to; k++) for (const n of blockTensorNames(k)) names.add(n);
    if (embedding || (head && c.tieWordEmbeddings)) names.add("model.embed_tokens.weight");
    if (head) {
      names.add("model.norm.weight");
      if (!c.tieWordEmbeddings) names.add("lm_head.weight");
    }
    const tensors = [...names].map((name) => {
      const e = checkpoint.tensors.get(name);
      if (e === undefined) throw new MelboError(`missing tensor "${name}"`, { file: checkpoint.dir });
      return { name, path: e.path, dtype: e.dtype, shape: e.shape, offset: e.offset, nbytes: e.nbytes };
    });
    const handle = await native().loadModel({
      config: c,
      dtype: options.dtype ?? "f32",
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
    const layers = [...new Set(options.layers ?? [])];
    for (const k of layers) this.checkBlock(k, "layer");
    if (options.steer) this.checkSteering(options.steer.vectors, options.steer.at, batch);
    const out = await this.native().forward({
      tokens,
      batch,
      layers,
      logits: options.logits ?? false,
      ...(options.steer ? { steer: options.steer } : {}),
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
  async generate(tokens: Int32Array, options: GenerateOptions): Promise<{ tokens: Int32Array[] }> {
    if (tokens.length === 0) throw new MelboError("generate: the prompt has no tokens");
    this.checkTokens(tokens);
    if (!Number.isInteger(options.maxNewTokens) || options.maxNewTokens < 0) {
      throw new MelboError(`maxNewTokens must be a non-negative integer, got ${options.maxNewTokens}`);
    }
    const temperature = options.temperature ?? 0;
    const topP = options.topP ?? 1;
    if (!(temperature >= 0)) throw new MelboError(`temperature must be >= 0, got ${temperature}`);
    if (!(topP > 0 && topP <= 1)) throw new MelboError(`topP must be in (0, 1], got ${topP}`);
    const seed = options.seed ?? 0;
    if (!Number.isSafeInteger(seed) || seed < 0) throw new MelboError(`seed must be a non-negative integer, got ${seed}`);
    let batch = 1;
    if (options.vectors) {
      batch = options.vectors.length / this.hidden;
      if (options.at === undefined) throw new MelboError("generate: steering vectors need the block 'at'");
      this.checkSteering(options.vectors, options.at, batch);
    }
    const out = await this.native().generate({
      tokens,
      ...(options.vectors ? { vectors: options.vectors, batch, at: options.at! } : {}),
      maxNewTokens: options.maxNewTokens,
      temperature,
      topP,
      seed,
      stopTokens: options.stopTokens ?? [...this.codec.eosTokenIds],
    });
    const rows: Int32Array[] = [];
    for (let b = 0; b < batch; b++) {
      rows.push(out.tokens.slice(b * options.maxNewTokens, b * options.maxNewTokens + out.lengths[b]!));
    }
    return { tokens: rows };
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
    let flag: NativeAbortFlag | undefined;
    const signal = o.signal;
    const onAbort = () => flag?.abort();
    if (signal) {
      signal.throwIfAborted();
      flag = new (native().AbortFlag)();
      signal.addEventListener("abort", onAbort, { once: true });
    }
    try {
      return await this.native().orthoBlock(
        {
          x: o.x,
          seq: o.x.length / d,
          theta0: o.theta0,
          basis: o.basis,
          rows: o.rows,
          steps: o.steps,
          source: o.source,
          target: o.target,
          lr: o.lr,
          beta1: o.betas[0],
          beta2: o.betas[1],
          eps: o.eps,
          projectGradient: o.projection === "grad",
          lossTolerance: o.lossTolerance,
          progressEvery: o.progressEvery ?? 10,
          ...(flag ? { abort: flag } : {}),
        },
        onProgress,
      );
    } catch (e) {
      if (signal?.aborted) throw signal.reason ?? new DOMException("aborted", "AbortError");
      throw e;
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /** Frees blocks below `below` (and the embedding) once a job no longer needs them. */
  release(below: number, embedding = true): void {
    this.native().release({ below, embedding });
  }

  dispose(): void {
    this.handle?.dispose();
    this.handle = null;
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

  private checkBlock(k: number, what: string): void {
    const L = this.config.numLayers;
    if (!Number.isInteger(k) || k < 0 || k >= L) throw new MelboError(`${what} ${k} is out of range: this model has blocks 0..${L - 1}`);
  }

  private checkSlice(source: number, target: number): void {
    this.checkBlock(source, "source block");
    this.checkBlock(target, "target block");
    if (source >= target) throw new MelboError(`source block ${source} must come before target block ${target}`);
  }

  private checkSteering(vectors: Float32Array, at: number, batch: number): void {
    const d = this.hidden;
    this.checkBlock(at, "steering block");
    if (vectors.length !== batch * d) {
      throw new MelboError(`steering vectors must be [${batch} × ${d}] = ${batch * d} values, got ${vectors.length}`);
    }
    checkFinite(vectors, "steering vectors");
  }
}

export function loadModel(dir: string, options: LoadOptions = {}): Promise<Model> {
  return Model.load(dir, options);
}
