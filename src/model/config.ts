// Reads and validates a Hugging Face Qwen2 config.json. Everything downstream (tensor shapes,
// the native model) trusts the returned Qwen2Config, so every check happens here, once.

import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { MelboError, describeError } from "../errors.js";
import { isJsonObject } from "../util/json.js";
import type { Qwen2Config } from "./types.js";

export const SUPPORTED_ARCHITECTURE = "Qwen2ForCausalLM";
const SUPPORTED_TEXT = `supported: ${SUPPORTED_ARCHITECTURE} — Qwen1.5, Qwen2, Qwen2.5`;

type Json = Record<string, unknown>;

/** A JSON value for a message: JSON, except the numbers JSON cannot write (1e999 parses to Infinity). */
function show(v: unknown): string {
  if (typeof v === "number" && !Number.isFinite(v)) return String(v);
  if (Object.is(v, -0)) return "-0";
  const text = JSON.stringify(v);
  return text === undefined ? String(v) : text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/**
 * Upper limits on the sizes in a config.json, far above every real Qwen2-family model (the
 * largest: 80 blocks, hidden 8192, intermediate 49152, vocab 152064, 1M positions). An absurd
 * size (num_hidden_layers 1e9) is refused here, before anything is allocated for it: the
 * expected-tensor table alone would have 12 entries per block.
 */
export const CONFIG_LIMITS = {
  num_hidden_layers: 1024,
  hidden_size: 65536,
  intermediate_size: 1048576,
  num_attention_heads: 1024,
  num_key_value_heads: 1024,
  vocab_size: 8388608,
  max_position_embeddings: 16777216,
} as const;
type LimitedField = keyof typeof CONFIG_LIMITS;

/** A config.json larger than this is refused before it is read (real ones are about 1 KB). */
export const MAX_CONFIG_BYTES = 1024 * 1024;

function positiveInt(raw: Json, key: LimitedField, file: string): number {
  const v = raw[key];
  if (v === undefined || v === null) throw new MelboError(`missing field "${key}"`, { file });
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0) {
    throw new MelboError(`field "${key}" must be a positive integer, found ${show(v)}`, { file });
  }
  const limit = CONFIG_LIMITS[key];
  if (v > limit) throw new MelboError(`field "${key}" is ${v}, over melbo's limit of ${limit} (no real model comes near it)`, { file });
  return v;
}

function positiveNumber(raw: Json, key: string, file: string, fallback: number): number {
  const v = raw[key];
  // Hugging Face's Qwen2Config has defaults for these two; absent (or null) means the default.
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
    throw new MelboError(`field "${key}" must be a positive number, found ${show(v)}`, { file });
  }
  return v;
}

function tokenId(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** Validates the parsed config.json object; `file` is only used in messages. */
export function parseConfig(raw: Json, file: string): Qwen2Config {
  if (!isJsonObject(raw)) throw new MelboError("config.json must be a JSON object", { file });
  const archs = raw["architectures"];
  if (!Array.isArray(archs) || archs.length === 0 || !archs.every((a) => typeof a === "string")) {
    throw new MelboError(`missing field "architectures" (${SUPPORTED_TEXT})`, { file });
  }
  const architecture = archs[0] as string;
  if (archs.length !== 1 || architecture !== SUPPORTED_ARCHITECTURE) {
    throw new MelboError(`unsupported architecture ${show(archs.length === 1 ? architecture : archs)} (${SUPPORTED_TEXT})`, { file });
  }
  const modelType = raw["model_type"];
  if (modelType !== undefined && modelType !== "qwen2") {
    throw new MelboError(`unsupported model_type ${show(modelType)} (expected "qwen2"; ${SUPPORTED_TEXT})`, { file });
  }
  const act = raw["hidden_act"];
  if (act !== undefined && act !== "silu") {
    throw new MelboError(`unsupported hidden_act ${show(act)} (Qwen2 uses "silu")`, { file });
  }
  // Scaled RoPE variants (YaRN, dynamic NTK) change the computation; melbo implements plain RoPE only.
  const ropeScaling = raw["rope_scaling"];
  if (ropeScaling !== undefined && ropeScaling !== null) {
    throw new MelboError(`unsupported rope_scaling ${show(ropeScaling)} (only plain RoPE is implemented)`, { file });
  }

  const hiddenSize = positiveInt(raw, "hidden_size", file);
  const intermediateSize = positiveInt(raw, "intermediate_size", file);
  const numLayers = positiveInt(raw, "num_hidden_layers", file);
  const numHeads = positiveInt(raw, "num_attention_heads", file);
  // HF: num_key_value_heads absent means multi-head attention (as many KV heads as heads).
  const numKvHeads = raw["num_key_value_heads"] === undefined || raw["num_key_value_heads"] === null
    ? numHeads
    : positiveInt(raw, "num_key_value_heads", file);
  const vocabSize = positiveInt(raw, "vocab_size", file);
  const rmsNormEps = positiveNumber(raw, "rms_norm_eps", file, 1e-6);
  // The engine computes in float32: an epsilon that rounds to 0 there divides by zero on a zero row.
  if (Math.fround(rmsNormEps) === 0) throw new MelboError(`rms_norm_eps ${rmsNormEps} is 0 in float32 (real models use 1e-6 or 1e-5)`, { file });
  const ropeTheta = positiveNumber(raw, "rope_theta", file, 10000);
  // inv_freq = theta^(-2i/head_dim) overflows float32 for tiny theta; real models use 1e4–1e6.
  if (ropeTheta < 1) throw new MelboError(`rope_theta ${ropeTheta} is below 1 (real models use 1e4–1e6)`, { file });
  // The longest sequence the model was built for (prompt + generated tokens); HF's default.
  const maxPositionEmbeddings = raw["max_position_embeddings"] === undefined ? 32768 : positiveInt(raw, "max_position_embeddings", file);

  if (hiddenSize % numHeads !== 0) {
    throw new MelboError(`hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${numHeads}`, { file });
  }
  if (numHeads % numKvHeads !== 0) {
    throw new MelboError(`num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`, { file });
  }
  const headDim = hiddenSize / numHeads;
  if (headDim % 2 !== 0) {
    // RoPE rotates pairs of coordinates (rotate_half), so the head dimension must be even.
    throw new MelboError(`head dimension ${headDim} (hidden_size / num_attention_heads) must be even for RoPE`, { file });
  }
  const explicitHeadDim = raw["head_dim"];
  if (explicitHeadDim !== undefined && explicitHeadDim !== null && explicitHeadDim !== headDim) {
    throw new MelboError(`head_dim ${show(explicitHeadDim)} differs from hidden_size / num_attention_heads = ${headDim}`, { file });
  }

  const tie = raw["tie_word_embeddings"];
  if (tie !== undefined && typeof tie !== "boolean") {
    throw new MelboError(`field "tie_word_embeddings" must be true or false, found ${show(tie)}`, { file });
  }

  const bos = raw["bos_token_id"];
  if (bos !== undefined && bos !== null && !tokenId(bos)) {
    throw new MelboError(`field "bos_token_id" must be a token id or null, found ${show(bos)}`, { file });
  }
  const eosRaw = raw["eos_token_id"];
  if (eosRaw === undefined || eosRaw === null) throw new MelboError(`missing field "eos_token_id"`, { file });
  const eos = Array.isArray(eosRaw) ? eosRaw : [eosRaw];
  if (eos.length === 0 || !eos.every(tokenId)) {
    throw new MelboError(`field "eos_token_id" must be a token id or a non-empty array of token ids, found ${show(eosRaw)}`, { file });
  }
  const ids: [string, unknown][] = [["bos_token_id", bos], ...eos.map((e): [string, unknown] => ["eos_token_id", e])];
  for (const [key, id] of ids) {
    if (typeof id === "number" && id >= vocabSize) {
      throw new MelboError(`${key} ${id} is outside the vocabulary (vocab_size ${vocabSize})`, { file });
    }
  }

  return {
    architecture,
    hiddenSize,
    intermediateSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    vocabSize,
    rmsNormEps,
    ropeTheta,
    maxPositionEmbeddings,
    tieWordEmbeddings: tie === true,
    bosTokenId: typeof bos === "number" ? bos : null,
    eosTokenId: eos as number[],
  };
}

/** Parses the text of a config.json and validates it; `file` is only used in messages. */
export function parseConfigText(text: string, file: string): Qwen2Config {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new MelboError(`invalid JSON: ${describeError(e)}`, { file, cause: e });
  }
  if (!isJsonObject(parsed)) throw new MelboError("config.json must be a JSON object", { file });
  return parseConfig(parsed, file);
}

/**
 * The size of `file` when it is a regular file; null when it does not exist (and `missingOk`).
 * Checked before a checkpoint file is read: a FIFO blocks a read forever and /dev/zero never
 * ends (a tokenizer.json linked to it took 15 s and 600 MB to fail). `what` names it in messages.
 */
export async function checkRegularFile(file: string, what: string, missingOk = false): Promise<number | null> {
  let info;
  try {
    info = await stat(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") {
      if (missingOk) return null;
      throw new MelboError(`missing ${what}`, { file, cause: e });
    }
    throw new MelboError(`cannot read ${what}: ${describeError(e)}`, { file, cause: e });
  }
  if (!info.isFile()) throw new MelboError(`${what} is not a regular file (${info.isDirectory() ? "a directory" : "a special file"})`, { file });
  return info.size;
}

/** Reads `<dir>/config.json` and validates it as a Qwen2 configuration. */
export async function readConfig(dir: string): Promise<Qwen2Config> {
  const file = join(dir, "config.json");
  const size = (await checkRegularFile(file, "config.json"))!;
  if (size > MAX_CONFIG_BYTES) throw new MelboError(`config.json has ${size} bytes, over the ${MAX_CONFIG_BYTES}-byte limit (real ones have about 1 KB)`, { file });
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    throw new MelboError(`cannot read config.json: ${describeError(e)}`, { file, cause: e });
  }
  return parseConfigText(text, file);
}
