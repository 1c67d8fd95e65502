// llama.cpp as an independent reference: node-llama-cpp (prebuilt CPU binary) installed in its
// own package folder, test/reference/llama, by scripts/install-llama-reference.sh. It is loaded
// by absolute path so that the project itself does not depend on it.
//
// Evaluation is exact in the sense that matters for parity: F32 weights (the GGUF from
// test/helpers/gguf.ts), F32 KV cache, no flash attention, CPU only, and no sampling (the
// default sampler config of controlledEvaluate is greedy; its probabilities are a plain float32
// softmax of the full logits row).

import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

// dist/test/helpers/ → repository root, or test/helpers/ when run from source.
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, "scripts", "install-llama-reference.sh"))) return dir;
    dir = resolve(dir, "..");
  }
  throw new Error("llama reference: cannot find the repository root");
}

const ENTRY = "test/reference/llama/node_modules/node-llama-cpp/dist/index.js";

// The parts of node-llama-cpp's API used here (its own types live in a folder that tsc does not
// see).
export interface LlamaModule {
  getLlama(options: Record<string, unknown>): Promise<Llama>;
  /** GGUF metadata as llama.cpp's readers see it, nested by key (`qwen2.rope.freq_base`). */
  readGgufFileInfo(path: string, options: { readTensorInfo: boolean }): Promise<{ metadata: GgufMetadata }>;
}
export type GgufMetadata = Record<string, any>;
interface Llama {
  loadModel(options: Record<string, unknown>): Promise<LlamaModel>;
  dispose(): Promise<void>;
}
interface LlamaModel {
  createContext(options: Record<string, unknown>): Promise<LlamaContext>;
  dispose(): Promise<void>;
}
interface LlamaContext {
  getSequence(): LlamaSequence;
  dispose(): Promise<void>;
}
type EvalItem = number | [number, { generateNext: { probabilities?: boolean; token?: boolean } }];
interface EvalOutput {
  next: { token?: number | null; probabilities?: Map<number, number> };
}
interface LlamaSequence {
  controlledEvaluate(input: EvalItem[]): Promise<(EvalOutput | undefined)[]>;
  dispose(): void;
}

let modulePromise: Promise<LlamaModule> | undefined;

/** node-llama-cpp, or an error that says how to install it. */
export async function loadLlamaModule(): Promise<LlamaModule> {
  if (modulePromise === undefined) {
    const entry = join(repoRoot(), ENTRY);
    if (!existsSync(entry)) {
      throw new Error(
        `the llama.cpp reference is not installed (${entry} is missing): run scripts/install-llama-reference.sh`,
      );
    }
    modulePromise = import(pathToFileURL(entry).href) as Promise<LlamaModule>;
  }
  return modulePromise;
}

let llamaPromise: Promise<Llama> | undefined;

async function getLlama(): Promise<Llama> {
  if (llamaPromise === undefined) {
    llamaPromise = (async () => {
      const m = await loadLlamaModule();
      return m.getLlama({
        gpu: false,
        build: "never", // never download or compile llama.cpp: the prebuilt binary or an error
        skipDownload: true,
        usePrebuiltBinaries: true,
        progressLogs: false,
        logLevel: "error",
      });
    })();
  }
  return llamaPromise;
}

/** Disposes the shared Llama instance (call once at the end of a test file). */
export async function disposeLlama(): Promise<void> {
  if (llamaPromise === undefined) return;
  const p = llamaPromise;
  llamaPromise = undefined;
  await (await p).dispose();
}

/** One GGUF loaded in llama.cpp, with a context for `maxTokens` tokens. */
export interface LlamaReference {
  /**
   * Next-token distribution after every prefix of `tokens`: element i is P(· | tokens[0..i]),
   * a Float32Array over the full vocabulary.
   */
  nextTokenProbabilities(tokens: number[]): Promise<Float32Array[]>;
  /** `n` tokens generated greedily (argmax, no stop at end-of-sequence) after `tokens`. */
  greedy(tokens: number[], n: number): Promise<number[]>;
  dispose(): Promise<void>;
}

/** Loads a GGUF once for several evaluations (loading the Qwen vocabulary takes seconds). */
export async function openLlamaReference(ggufPath: string, maxTokens = 256): Promise<LlamaReference> {
  const llama = await getLlama();
  const model = await llama.loadModel({ modelPath: ggufPath, gpuLayers: 0, useMmap: false });
  let context: LlamaContext;
  try {
    const size = Math.max(256, maxTokens);
    context = await model.createContext({
      contextSize: size,
      batchSize: size, // the whole prompt in one batch
      sequences: 1,
      flashAttention: false,
      experimentalKvCacheKeyType: "F32",
      experimentalKvCacheValueType: "F32",
      threads: 2,
    });
  } catch (e) {
    await model.dispose();
    throw e;
  }
  const ctx = context;

  // Each evaluation starts from an empty KV cache, in a fresh sequence.
  async function withSequence<T>(n: number, fn: (seq: LlamaSequence) => Promise<T>): Promise<T> {
    if (n > maxTokens) throw new Error(`llama reference: ${n} tokens, context opened for ${maxTokens}`);
    const seq = ctx.getSequence();
    try {
      return await fn(seq);
    } finally {
      seq.dispose();
    }
  }

  return {
    nextTokenProbabilities: (tokens) =>
      withSequence(tokens.length, async (seq) => {
        const input: EvalItem[] = tokens.map((t) => [t, { generateNext: { probabilities: true } }]);
        const res = await seq.controlledEvaluate(input);
        return res.map((r) => toDense(r?.next.probabilities));
      }),
    greedy: (tokens, n) =>
      withSequence(tokens.length + n, async (seq) => {
        const out: number[] = [];
        let input: EvalItem[] = tokens.map((t, i) =>
          i === tokens.length - 1 ? [t, { generateNext: { token: true } }] : t,
        );
        while (out.length < n) {
          const res = await seq.controlledEvaluate(input);
          const next = res[res.length - 1]?.next.token;
          if (next === undefined || next === null) throw new Error("llama reference: no token generated");
          out.push(next);
          input = [[next, { generateNext: { token: true } }]];
        }
        return out;
      }),
    async dispose() {
      await ctx.dispose();
      await model.dispose();
    },
  };
}

function toDense(probs: Map<number, number> | undefined): Float32Array {
  if (probs === undefined) throw new Error("llama reference: no probabilities returned");
  const vocab = probs.size; // the whole vocabulary: no sampler stage truncates it
  const out = new Float32Array(vocab);
  for (const [token, p] of probs) {
    if (token < 0 || token >= vocab) throw new Error(`llama reference: token ${token} out of range`);
    out[token] = p;
  }
  return out;
}

async function once<T>(ggufPath: string, maxTokens: number, fn: (r: LlamaReference) => Promise<T>): Promise<T> {
  const ref = await openLlamaReference(ggufPath, maxTokens);
  try {
    return await fn(ref);
  } finally {
    await ref.dispose();
  }
}

/**
 * Next-token distribution after every prefix of `tokens`: element i is P(· | tokens[0..i]),
 * a Float32Array over the full vocabulary.
 */
export function llamaNextTokenProbabilities(ggufPath: string, tokens: number[]): Promise<Float32Array[]> {
  return once(ggufPath, tokens.length, (r) => r.nextTokenProbabilities(tokens));
}

/** `n` tokens generated greedily (argmax, no stop at end-of-sequence) after `tokens`. */
export function llamaGreedy(ggufPath: string, tokens: number[], n: number): Promise<number[]> {
  return once(ggufPath, tokens.length + n, (r) => r.greedy(tokens, n));
}
