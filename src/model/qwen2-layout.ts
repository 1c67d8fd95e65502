// The Hugging Face Qwen2 checkpoint layout, written down once: every tensor's name in the
// checkpoint, the role the native engine knows it by, and the shape config.json implies for it.
// The checkpoint reader validates files against this table, the loader sends tensors to the
// native side by role (native/weights.cpp never spells a checkpoint name), the fingerprint and
// the test-model writer list tensors from it.

import type { Qwen2Config } from "./types.js";

/** The native engine's names for a block's tensors: Hugging Face's module names, camel-cased. */
export type BlockRole =
  | "inputLayernorm"
  | "qProj"
  | "qProjBias"
  | "kProj"
  | "kProjBias"
  | "vProj"
  | "vProjBias"
  | "oProj"
  | "postAttentionLayernorm"
  | "gateProj"
  | "upProj"
  | "downProj";

/** The tensors outside the blocks. */
export type ModelRole = "embedTokens" | "norm" | "lmHead";

/** One tensor of the layout: `block` is -1 for the tensors outside the blocks. */
export interface TensorSlot {
  name: string;
  role: BlockRole | ModelRole;
  block: number;
  /** [out, in] for Linear weights, as torch stores them. */
  shape: number[];
}

interface Dims {
  d: number; // hidden_size
  q: number; // num_attention_heads × head_dim (== d for Qwen2)
  kv: number; // num_key_value_heads × head_dim
  inter: number; // intermediate_size
}

// Suffix after "model.layers.N.", role, shape: in the order of modeling_qwen2.py's modules.
const BLOCK_TENSORS: readonly (readonly [string, BlockRole, (s: Dims) => number[]])[] = [
  ["input_layernorm.weight", "inputLayernorm", (s) => [s.d]],
  ["self_attn.q_proj.weight", "qProj", (s) => [s.q, s.d]],
  ["self_attn.q_proj.bias", "qProjBias", (s) => [s.q]],
  ["self_attn.k_proj.weight", "kProj", (s) => [s.kv, s.d]],
  ["self_attn.k_proj.bias", "kProjBias", (s) => [s.kv]],
  ["self_attn.v_proj.weight", "vProj", (s) => [s.kv, s.d]],
  ["self_attn.v_proj.bias", "vProjBias", (s) => [s.kv]],
  ["self_attn.o_proj.weight", "oProj", (s) => [s.d, s.q]],
  ["post_attention_layernorm.weight", "postAttentionLayernorm", (s) => [s.d]],
  ["mlp.gate_proj.weight", "gateProj", (s) => [s.inter, s.d]],
  ["mlp.up_proj.weight", "upProj", (s) => [s.inter, s.d]],
  ["mlp.down_proj.weight", "downProj", (s) => [s.d, s.inter]],
];

export const EMBED_TOKENS = "model.embed_tokens.weight";
const FINAL_NORM = "model.norm.weight";
const LM_HEAD = "lm_head.weight";

function dims(c: Qwen2Config): Dims {
  return { d: c.hiddenSize, q: c.numHeads * c.headDim, kv: c.numKvHeads * c.headDim, inter: c.intermediateSize };
}

/** The parameter names of decoder block `layer`. */
export function blockTensorNames(layer: number): string[] {
  return BLOCK_TENSORS.map(([suffix]) => `model.layers.${layer}.${suffix}`);
}

/** Which parts of a model a load asks for. */
export interface LayoutPart {
  /** Blocks from..to (from > to: none). */
  from: number;
  to: number;
  embedding: boolean;
  /** The final norm and the lm_head (the embedding when the two are tied). */
  head: boolean;
}

/** The tensors a load of `part` reads, each with its role and expected shape. */
export function layoutSlots(config: Qwen2Config, part: LayoutPart): TensorSlot[] {
  const s = dims(config);
  const slots: TensorSlot[] = [];
  const tiedHead = part.head && config.tieWordEmbeddings;
  if (part.embedding || tiedHead) slots.push({ name: EMBED_TOKENS, role: "embedTokens", block: -1, shape: [config.vocabSize, s.d] });
  for (let k = part.from; k <= part.to; k++) {
    for (const [suffix, role, shape] of BLOCK_TENSORS) slots.push({ name: `model.layers.${k}.${suffix}`, role, block: k, shape: shape(s) });
  }
  if (part.head) {
    slots.push({ name: FINAL_NORM, role: "norm", block: -1, shape: [s.d] });
    if (!config.tieWordEmbeddings) slots.push({ name: LM_HEAD, role: "lmHead", block: -1, shape: [config.vocabSize, s.d] });
  }
  return slots;
}

/** Every tensor the config requires, with its shape. */
export function expectedTensorShapes(config: Qwen2Config): Map<string, number[]> {
  const whole = { from: 0, to: config.numLayers - 1, embedding: true, head: true };
  return new Map(layoutSlots(config, whole).map((t) => [t.name, t.shape]));
}
