// The one typed view of the native addon. Loaded lazily: requiring it costs ~0.5 s and
// ~160 MB (libtorch's shared libraries), which commands like --help should not pay.

import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { MelboError } from "./errors.js";

export type ComputeDtype = "f32" | "bf16";

/** How the rows of an ortho block are made orthogonal to each other (native/projection.h). */
export type InBlockOrthogonalisation = "gram-schmidt" | "first-then-symmetric" | "symmetric";

/** One checkpoint tensor, named for the native side by its role (qwen2-layout.ts) and block (-1: outside the blocks). */
export interface NativeTensorSource {
  name: string; // the checkpoint's name, for messages only
  role: string;
  block: number;
  path: string;
  dtype: string;
  shape: number[];
  offset: number;
  nbytes: number;
}

export interface NativeConfig {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  tieWordEmbeddings: boolean;
}

/** Where a model's weights live and its computations run: "cpu", "cuda" (= "cuda:0") or "cuda:N". */
export type Device = "cpu" | "cuda" | `cuda:${number}`;

export interface NativeLoadOptions {
  config: NativeConfig;
  dtype: ComputeDtype;
  device: Device;
  firstBlock: number;
  lastBlock: number;
  embedding: boolean;
  head: boolean;
  tensors: NativeTensorSource[];
}

/** What both native optimiser loops (orthoBlock, trainBlock) take: the slice and Adam's settings. */
export interface NativeLoopFields {
  steps: number;
  source: number;
  target: number;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
}

export interface NativeModel {
  forward(o: {
    tokens: Int32Array; // [batch * seq]
    batch: number;
    layers: number[];
    logits: boolean;
    steer?: { vectors: Float32Array; at: number }; // vectors [batch * d]
  }): Promise<{ resid: Float32Array[]; logits?: Float32Array }>;
  orthoLossGrad(o: {
    x: Float32Array; // [seq * d]
    seq: number;
    thetas: Float32Array; // [batch * d]
    batch: number;
    z0: Float32Array; // [d]
    source: number;
    target: number;
  }): Promise<{ loss: Float32Array; grad: Float32Array }>;
  generate(o: {
    tokens: Int32Array; // [seq]
    vectors?: Float32Array; // [batch * d]
    batch?: number;
    at?: number;
    maxNewTokens: number;
    temperature: number;
    topP: number;
    seed: number;
    rowSeeds?: number[]; // [batch]: each row draws from its own generator
    stopTokens: number[];
    firstLogits?: boolean;
  }): Promise<{ tokens: Int32Array; lengths: Int32Array; firstLogits?: Float32Array }>; // tokens [batch * maxNewTokens], -1 padded; firstLogits [batch * vocab]
  orthoBlock(
    o: {
      x: Float32Array; // [seq * d] resid(source)
      seq: number;
      theta0: Float32Array; // [d]
      basis: Float64Array; // [m * d] orthonormal rows
      rows: number;
      projectGradient: boolean;
      starts?: Float32Array; // [rows * d]; absent = theta0 for every row
      inBlock: InBlockOrthogonalisation;
      projectGradientInBlock: boolean;
      lossTolerance: number;
      progressEvery: number;
      traceEvery: number; // > 0: loss of every row at steps 1, 1+K, …; 0 = none
      abort?: NativeAbortFlag;
    } & NativeLoopFields,
    onProgress?: (p: { step: number; steps: number; meanLoss: number; minLoss: number }) => void,
  ): Promise<{ thetas: Float32Array; losses: Float32Array; steps: Int32Array; trace?: Float32Array /* [points * rows] */ }>;
  trainBlock(
    o: {
      examples: { x: Float32Array; seq: number; positions: Int32Array; z0: Float32Array }[]; // x [seq * d], z0 [positions * d]
      thetas: Float32Array; // [rows * d] start directions
      rows: number;
      learned: Float64Array; // [m * d] orthonormal rows
      radius: number;
      p: number;
      q: number;
      weightDecay: number;
      amsgrad: boolean;
      orthogonal: boolean;
      progressEvery: number;
      abort?: NativeAbortFlag;
    } & NativeLoopFields,
    onProgress?: (p: { step: number; steps: number; meanObjective: number; maxObjective: number }) => void,
  ): Promise<{ thetas: Float32Array; objectives: Float32Array; trace: Float32Array; radiusError: Float32Array }>;
  sliceMean(o: { x: Float32Array; seq: number; thetas: Float32Array; batch: number; source: number; target: number }): Promise<Float32Array>;
  release(o: { below: number; embedding: boolean }): void;
  /** rows: the B·T row counts to report kernel paths for (default [26]). */
  info(rows?: number[]): NativeModelInfo;
  dispose(): void;
}

export interface NativeModelInfo {
  firstBlock: number;
  lastBlock: number;
  embedding: boolean;
  head: boolean;
  dtype: ComputeDtype;
  device: string;
  /** The dtype activations are computed in (bf16 weights compute in f32 on CPUs without a fast bf16 product). */
  activations: ComputeDtype;
  rows: number[];
  /** Per product of a block: the kernel it takes at each of `rows` (docs/architecture.md, kernel choice). */
  products: { name: string; out: number; in: number; paths: string[] }[];
}

export interface NativeAbortFlag {
  abort(): void;
  aborted(): boolean;
}

export interface NativeAddon {
  AbortFlag: new () => NativeAbortFlag;
  cudaKernelsBuilt(): boolean;
  /** Synchronous projection of a block (tests of the kernel and its CPU twin). */
  projectBlock(o: { rows: Float64Array; basis: Float64Array; d: number; device?: "cpu" | "cuda"; reference?: boolean; inBlock?: InBlockOrthogonalisation }): Float64Array;
  version(): { torch: string };
  getThreads(): number;
  setThreads(n: number): void;
  cudaAvailable(): boolean;
  loadModel(o: NativeLoadOptions): Promise<NativeModel>;
  /** PyTorch .pt bytes (torch.save: a tensor, or a list/tuple of tensors) → each tensor as float32; sync (native/pickle_io.h). */
  loadPt(bytes: Uint8Array): { shape: number[]; dtype: "float32" | "float64" | "float16" | "bfloat16"; data: Float32Array }[];
  /** The bytes torch.save writes for an [n, d] float32 tensor (torch::pickle_save); sync. */
  savePt(o: { data: Float32Array; n: number; d: number }): Buffer;
}

const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
let addon: NativeAddon | undefined;

/**
 * Path of the built addon (cmake-js output), or the file named by MELBO_ADDON (the sanitizer
 * build of scripts/test-sanitize.sh, build-sanitize/Release/melbo_native.node).
 */
export function addonPath(): string {
  const chosen = process.env["MELBO_ADDON"];
  if (chosen !== undefined && chosen !== "") return resolve(chosen);
  return join(packageRoot, "build", "Release", "melbo_native.node");
}

export function native(): NativeAddon {
  if (addon) return addon;
  const path = addonPath();
  if (!existsSync(path)) {
    if (process.env["MELBO_ADDON"]) throw new MelboError("MELBO_ADDON names a file that does not exist", { file: path });
    // A checkout has scripts/setup.sh; an installed package (npm pack ships only the install script) is rebuilt by npm.
    const howTo = existsSync(join(packageRoot, "scripts", "setup.sh")) ? "run `bash scripts/setup.sh` (or `npm run build:native`)" : "run `npm rebuild melbo` (build/cmake-js.log says why the install's build failed)";
    throw new MelboError(`the native addon is not built: ${howTo}`, { file: path });
  }
  const loaded = createRequire(import.meta.url)(path) as NativeAddon;
  const envThreads = Number(process.env["MELBO_THREADS"] ?? "");
  loaded.setThreads(Number.isInteger(envThreads) && envThreads > 0 ? envThreads : availableParallelism());
  addon = loaded;
  return loaded;
}

/** Number of threads libtorch uses for one job (default: the available cores, or MELBO_THREADS). */
export function setThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new MelboError(`threads must be a positive integer, got ${n}`);
  native().setThreads(n);
}

export function getThreads(): number {
  return native().getThreads();
}
