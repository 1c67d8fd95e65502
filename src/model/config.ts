// Reads and validates a Hugging Face Qwen2 config.json. Everything downstream (tensor shapes,
// the native model) trusts the returned Qwen2Config, so every check happens here, once.

import { join } from "node:path";
import { MelboError } from "../errors.js";
import { readJsonObject } from "../util/json.js";
import type { Qwen2Config } from "./types.js";

export const SUPPORTED_ARCHITECTURE = "Qwen2ForCausalLM";
const SUPPORTED_TEXT = `supported: ${SUPPORTED_ARCHITECTURE} — Qwen1.5, Qwen2, Qwen2.5`;

type Json = Record<string, unknown>;

function positiveInt(raw: Json, key: string, file: string): number {
  const v = raw[key];
  if (v === undefined || v === null) throw new MelboError(`missing field "${key}"`, { file });
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0) {
    throw new MelboError(`field "${key}" must be a positive integer, found ${JSON.stringify(v)}`, { file });
  }
  return v;
}

function positiveNumber(raw: Json, key: string, file: string, fallback: number): number {
  const v = raw[key];
  // Hugging Face's Qwen2Config has defaults for these two; absent (or null) means the default.
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
    throw new MelboError(`field "${key}" must be a positive number, found ${JSON.stringify(v)}`, { file });
  }
  return v;
}

function tokenId(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** Validates the parsed config.json object; `file` is only used in messages. */
export function parseConfig(raw: Json, file: string): Qwen2Config {
  const archs = raw["architectures"];
  if (!Array.isArray(archs) || archs.length === 0 || !archs.every((a) => typeof a === "string")) {
    throw new MelboError(`missing field "architectures" (${SUPPORTED_TEXT})`, { file });
  }
  const architecture = archs[0] as string;
  if (archs.length !== 1 || architecture !== SUPPORTED_ARCHITECTURE) {
    throw new MelboError(`unsupported architecture ${JSON.stringify(archs.length === 1 ? architecture : archs)} (${SUPPORTED_TEXT})`, { file });
  }
  const modelType = raw["model_type"];
  if (modelType !== undefined && modelType !== "qwen2") {
    throw new MelboError(`unsupported model_type ${JSON.stringify(modelType)} (expected "qwen2"; ${SUPPORTED_TEXT})`, { file });
  }
  const act = raw["hidden_act"];
  if (act !== undefined && act !== "silu") {
    throw new MelboError(`unsupported hidden_act ${JSON.stringify(act)} (Qwen2 uses "silu")`, { file });
  }
  // Scaled RoPE variants (YaRN, dynamic NTK) change the computation; melbo implements plain RoPE only.
  const ropeScaling = raw["rope_scaling"];
  if (ropeScaling !== undefined && ropeScaling !== null) {
    throw new MelboError(`unsupported rope_scaling ${JSON.stringify(ropeScaling)} (only plain RoPE is implemented)`, { file });
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
  const ropeTheta = positiveNumber(raw, "rope_theta", file, 10000);
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
    throw new MelboError(`head_dim ${JSON.stringify(explicitHeadDim)} differs from hidden_size / num_attention_heads = ${headDim}`, { file });
  }

  const tie = raw["tie_word_embeddings"];
  if (tie !== undefined && typeof tie !== "boolean") {
    throw new MelboError(`field "tie_word_embeddings" must be true or false, found ${JSON.stringify(tie)}`, { file });
  }

  const bos = raw["bos_token_id"];
  if (bos !== undefined && bos !== null && !tokenId(bos)) {
    throw new MelboError(`field "bos_token_id" must be a token id or null, found ${JSON.stringify(bos)}`, { file });
  }
  const eosRaw = raw["eos_token_id"];
  if (eosRaw === undefined || eosRaw === null) throw new MelboError(`missing field "eos_token_id"`, { file });
  const eos = Array.isArray(eosRaw) ? eosRaw : [eosRaw];
  if (eos.length === 0 || !eos.every(tokenId)) {
    throw new MelboError(`field "eos_token_id" must be a token id or a non-empty array of token ids, found ${JSON.stringify(eosRaw)}`, { file });
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

/** Reads `<dir>/config.json` and validates it as a Qwen2 configuration. */
export async function readConfig(dir: string): Promise<Qwen2Config> {
  const file = join(dir, "config.json");
  return parseConfig(await readJsonObject(file, "config.json"), file);
}
