// A minimal GGUF v3 writer for Qwen2 checkpoints in F32, so that llama.cpp (through
// node-llama-cpp) can serve as an independent reference implementation in the parity tests.
//
// Format (little endian): magic "GGUF", version u32 = 3, tensor count u64, metadata count u64,
// then the metadata key/value pairs, then one info record per tensor (name, n_dims u32, dims u64
// innermost first, type u32, offset u64 relative to the data section), padding to the alignment,
// then the tensor data, each tensor starting at a multiple of the alignment.
//
// Facts about llama.cpp's qwen2 loader that this relies on:
// - tensors are written unchanged with their dims reversed (GGUF lists the innermost dim first);
//   there is no Q/K permutation for qwen2 (it uses NeoX-style RoPE like Hugging Face);
// - `qwen2.rope.freq_base` must be set, otherwise it silently defaults to 10000;
// - the BPE tokenizer needs its merges, even when only token ids are evaluated;
// - with tied embeddings there is no `output.weight`: llama.cpp reuses `token_embd.weight`.

import { closeSync, openSync, readFileSync, writeSync } from "node:fs";
import { join } from "node:path";

import type { Qwen2Config } from "../../src/model/types.js";
import { readCheckpoint } from "../../src/model/checkpoint.js";
import { readSafetensorsTensor } from "../../src/model/safetensors.js";

export interface GgufTensor {
  shape: number[]; // Hugging Face (row-major) shape, outermost first
  data: Float32Array;
}

export interface Qwen2GgufInput {
  config: Qwen2Config;
  /** Tensors by Hugging Face name (`model.layers.0.self_attn.q_proj.weight`, ...). */
  tensors: Map<string, GgufTensor>;
  /** A Hugging Face `tokenizer.json` (BPE) whose vocabulary and merges are embedded. */
  tokenizerJsonPath: string;
  /** `qwen2.context_length`; Qwen2 configs use 32768. */
  contextLength?: number;
  name?: string;
}

const ALIGNMENT = 32;

// GGUF metadata value types.
const GGUF_UINT32 = 4;
const GGUF_INT32 = 5;
const GGUF_FLOAT32 = 6;
const GGUF_BOOL = 7;
const GGUF_STRING = 8;
const GGUF_ARRAY = 9;

// ggml tensor type.
const GGML_TYPE_F32 = 0;

// llama.cpp token types (gguf.TokenType in the Python converter).
const TOKEN_NORMAL = 1;
const TOKEN_CONTROL = 3;
const TOKEN_USER_DEFINED = 4;
const TOKEN_UNUSED = 5;

/** Growable little-endian byte buffer. */
class ByteWriter {
  private buf = new Uint8Array(1 << 20);
  private view = new DataView(this.buf.buffer);
  private readonly utf8 = new TextEncoder();
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u32(v: number): void {
    this.reserve(4);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
  }
  i32(v: number): void {
    this.reserve(4);
    this.view.setInt32(this.length, v, true);
    this.length += 4;
  }
  u64(v: number): void {
    if (!Number.isSafeInteger(v) || v < 0) throw new Error(`gguf: bad u64 ${v}`);
    this.reserve(8);
    this.view.setBigUint64(this.length, BigInt(v), true);
    this.length += 8;
  }
  f32(v: number): void {
    this.reserve(4);
    this.view.setFloat32(this.length, v, true);
    this.length += 4;
  }
  u8(v: number): void {
    this.reserve(1);
    this.view.setUint8(this.length, v);
    this.length += 1;
  }
  str(s: string): void {
    const bytes = this.utf8.encode(s);
    this.u64(bytes.length);
    this.reserve(bytes.length);
    this.buf.set(bytes, this.length);
    this.length += bytes.length;
  }
  pad(alignment: number): void {
    const n = (alignment - (this.length % alignment)) % alignment;
    this.reserve(n);
    this.buf.fill(0, this.length, this.length + n);
    this.length += n;
  }
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

type MetaValue =
  | { type: "u32"; value: number }
  | { type: "i32"; value: number }
  | { type: "f32"; value: number }
  | { type: "bool"; value: boolean }
  | { type: "str"; value: string }
  | { type: "str[]"; value: string[] }
  | { type: "i32[]"; value: ArrayLike<number> };

function writeMeta(w: ByteWriter, key: string, v: MetaValue): void {
  w.str(key);
  switch (v.type) {
    case "u32":
      w.u32(GGUF_UINT32);
      w.u32(v.value);
      break;
    case "i32":
      w.u32(GGUF_INT32);
      w.i32(v.value);
      break;
    case "f32":
      w.u32(GGUF_FLOAT32);
      w.f32(v.value);
      break;
    case "bool":
      w.u32(GGUF_BOOL);
      w.u8(v.value ? 1 : 0);
      break;
    case "str":
      w.u32(GGUF_STRING);
      w.str(v.value);
      break;
    case "str[]":
      w.u32(GGUF_ARRAY);
      w.u32(GGUF_STRING);
      w.u64(v.value.length);
      for (const s of v.value) w.str(s);
      break;
    case "i32[]":
      w.u32(GGUF_ARRAY);
      w.u32(GGUF_INT32);
      w.u64(v.value.length);
      for (let i = 0; i < v.value.length; i++) w.i32(v.value[i]!);
      break;
  }
}

/** Hugging Face Qwen2 parameter name → GGUF tensor name (null: not written). */
export function ggufTensorName(hfName: string, tied: boolean): string | null {
  if (hfName === "model.embed_tokens.weight") return "token_embd.weight";
  if (hfName === "model.norm.weight") return "output_norm.weight";
  if (hfName === "lm_head.weight") return tied ? null : "output.weight";
  const m = /^model\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(hfName);
  if (m === null) throw new Error(`gguf: unexpected tensor ${hfName}`);
  const [, layer, module, kind] = m;
  const names: Record<string, string> = {
    input_layernorm: "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    post_attention_layernorm: "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
  };
  const g = names[module!];
  if (g === undefined) throw new Error(`gguf: unexpected tensor ${hfName}`);
  return `blk.${layer}.${g}.${kind}`;
}

interface TokenizerJson {
  model: { type: string; vocab: Record<string, number>; merges: (string | [string, string])[] };
  added_tokens?: { id: number; content: string; special: boolean }[];
}

/** Vocabulary as llama.cpp's Hugging Face converter lays it out for a GPT-2 style BPE. */
function tokenizerMetadata(
  tokenizerJsonPath: string,
  vocabSize: number,
): { tokens: string[]; types: Int32Array; merges: string[] } {
  const tj = JSON.parse(readFileSync(tokenizerJsonPath, "utf8")) as TokenizerJson;
  if (tj.model?.type !== "BPE") throw new Error(`gguf: ${tokenizerJsonPath}: not a BPE tokenizer`);
  const tokens: (string | undefined)[] = new Array(vocabSize);
  const types = new Int32Array(vocabSize);
  for (const [text, id] of Object.entries(tj.model.vocab)) {
    if (id < vocabSize) {
      tokens[id] = text;
      types[id] = TOKEN_NORMAL;
    }
  }
  for (const t of tj.added_tokens ?? []) {
    if (t.id >= vocabSize) continue;
    tokens[t.id] = t.content;
    // As convert_hf_to_gguf.py: special (or special-looking) added tokens are control tokens.
    const looksSpecial = t.content.startsWith("<|") && t.content.endsWith("|>");
    types[t.id] = t.special || looksSpecial ? TOKEN_CONTROL : TOKEN_USER_DEFINED;
  }
  for (let i = 0; i < vocabSize; i++) {
    if (tokens[i] === undefined) {
      // The embedding matrix is larger than the tokenizer (151936 against 151669 for Qwen).
      tokens[i] = `[PAD${i}]`;
      types[i] = TOKEN_UNUSED;
    }
  }
  const merges = tj.model.merges.map((m) => (typeof m === "string" ? m : `${m[0]} ${m[1]}`));
  return { tokens: tokens as string[], types, merges };
}

/** Writes a qwen2 GGUF (all tensors F32) that llama.cpp loads. */
export function writeQwen2Gguf(path: string, input: Qwen2GgufInput): void {
  const { config: c, tensors } = input;
  const tied = c.tieWordEmbeddings;

  // Tensor infos, in a deterministic order, with shape checks against the config.
  const d = c.hiddenSize;
  const kvDim = c.numKvHeads * c.headDim;
  const expected = new Map<string, number[]>();
  expected.set("model.embed_tokens.weight", [c.vocabSize, d]);
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`;
    expected.set(`${p}input_layernorm.weight`, [d]);
    expected.set(`${p}self_attn.q_proj.weight`, [c.numHeads * c.headDim, d]);
    expected.set(`${p}self_attn.q_proj.bias`, [c.numHeads * c.headDim]);
    expected.set(`${p}self_attn.k_proj.weight`, [kvDim, d]);
    expected.set(`${p}self_attn.k_proj.bias`, [kvDim]);
    expected.set(`${p}self_attn.v_proj.weight`, [kvDim, d]);
    expected.set(`${p}self_attn.v_proj.bias`, [kvDim]);
    expected.set(`${p}self_attn.o_proj.weight`, [d, c.numHeads * c.headDim]);
    expected.set(`${p}post_attention_layernorm.weight`, [d]);
    expected.set(`${p}mlp.gate_proj.weight`, [c.intermediateSize, d]);
    expected.set(`${p}mlp.up_proj.weight`, [c.intermediateSize, d]);
    expected.set(`${p}mlp.down_proj.weight`, [d, c.intermediateSize]);
  }
  expected.set("model.norm.weight", [d]);
  if (!tied) expected.set("lm_head.weight", [c.vocabSize, d]);

  const infos: { name: string; dims: number[]; data: Float32Array; offset: number }[] = [];
  let offset = 0;
  for (const [hfName, shape] of expected) {
    const t = tensors.get(hfName);
    if (t === undefined) throw new Error(`gguf: missing tensor ${hfName}`);
    if (t.shape.join(",") !== shape.join(",")) {
      throw new Error(`gguf: ${hfName} has shape [${t.shape}], expected [${shape}]`);
    }
    const n = shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== n) throw new Error(`gguf: ${hfName} has ${t.data.length} values, expected ${n}`);
    const name = ggufTensorName(hfName, tied)!;
    infos.push({ name, dims: [...shape].reverse(), data: t.data, offset });
    offset += n * 4;
    offset += (ALIGNMENT - (offset % ALIGNMENT)) % ALIGNMENT;
  }
  // Anything else in the map (o_proj bias, rotary caches...) would silently be ignored by
  // llama.cpp and make the comparison meaningless.
  for (const name of tensors.keys()) {
    if (!expected.has(name) && !(tied && name === "lm_head.weight")) {
      throw new Error(`gguf: tensor ${name} has no place in a qwen2 GGUF`);
    }
  }

  const tok = tokenizerMetadata(input.tokenizerJsonPath, c.vocabSize);
  const meta: [string, MetaValue][] = [
    ["general.architecture", { type: "str", value: "qwen2" }],
    ["general.name", { type: "str", value: input.name ?? "melbo-test" }],
    ["general.alignment", { type: "u32", value: ALIGNMENT }],
    ["general.file_type", { type: "u32", value: 0 }], // all F32
    ["qwen2.context_length", { type: "u32", value: input.contextLength ?? 32768 }],
    ["qwen2.embedding_length", { type: "u32", value: d }],
    ["qwen2.block_count", { type: "u32", value: c.numLayers }],
    ["qwen2.feed_forward_length", { type: "u32", value: c.intermediateSize }],
    ["qwen2.attention.head_count", { type: "u32", value: c.numHeads }],
    ["qwen2.attention.head_count_kv", { type: "u32", value: c.numKvHeads }],
    ["qwen2.attention.layer_norm_rms_epsilon", { type: "f32", value: c.rmsNormEps }],
    ["qwen2.rope.freq_base", { type: "f32", value: c.ropeTheta }],
    ["tokenizer.ggml.model", { type: "str", value: "gpt2" }],
    ["tokenizer.ggml.pre", { type: "str", value: "qwen2" }],
    ["tokenizer.ggml.tokens", { type: "str[]", value: tok.tokens }],
    ["tokenizer.ggml.token_type", { type: "i32[]", value: tok.types }],
    ["tokenizer.ggml.merges", { type: "str[]", value: tok.merges }],
    ["tokenizer.ggml.add_bos_token", { type: "bool", value: false }],
  ];
  if (c.headDim * c.numHeads !== d) {
    // llama.cpp derives the head size from embedding_length / head_count unless told otherwise.
    meta.push(["qwen2.attention.key_length", { type: "u32", value: c.headDim }]);
    meta.push(["qwen2.attention.value_length", { type: "u32", value: c.headDim }]);
  }
  if (c.bosTokenId !== null && c.bosTokenId < c.vocabSize) {
    meta.push(["tokenizer.ggml.bos_token_id", { type: "u32", value: c.bosTokenId }]);
  }
  const eos = c.eosTokenId[0];
  if (eos !== undefined && eos < c.vocabSize) {
    meta.push(["tokenizer.ggml.eos_token_id", { type: "u32", value: eos }]);
  }

  const w = new ByteWriter();
  w.u32(0x46554747); // "GGUF"
  w.u32(3);
  w.u64(infos.length);
  w.u64(meta.length);
  for (const [key, value] of meta) writeMeta(w, key, value);
  for (const t of infos) {
    w.str(t.name);
    w.u32(t.dims.length);
    for (const dim of t.dims) w.u64(dim);
    w.u32(GGML_TYPE_F32);
    w.u64(t.offset);
  }
  w.pad(ALIGNMENT);

  const fd = openSync(path, "w");
  try {
    writeSync(fd, w.bytes());
    let pos = 0;
    const zeros = new Uint8Array(ALIGNMENT);
    for (const t of infos) {
      if (pos < t.offset) {
        writeSync(fd, zeros, 0, t.offset - pos);
        pos = t.offset;
      }
      // Little-endian host (x86-64): the Float32Array bytes are the GGUF bytes.
      const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      for (let at = 0; at < bytes.length; at += 1 << 26) {
        writeSync(fd, bytes, at, Math.min(1 << 26, bytes.length - at));
      }
      pos += bytes.length;
    }
  } finally {
    closeSync(fd);
  }
}

/** Converts a melbo-readable checkpoint directory (any weight dtype) to an F32 qwen2 GGUF. */
export async function exportCheckpointToGguf(modelDir: string, ggufPath: string): Promise<void> {
  const ckpt = await readCheckpoint(modelDir);
  const tensors = new Map<string, GgufTensor>();
  for (const [name, entry] of ckpt.tensors) {
    if (ckpt.config.tieWordEmbeddings && name === "lm_head.weight") continue;
    // F32 as stored; BF16/F16 widened exactly to F32.
    const { data } = await readSafetensorsTensor(entry.path, name);
    if (!(data instanceof Float32Array)) throw new Error(`gguf: ${name} is not an F32/F16/BF16 tensor`);
    tensors.set(name, { shape: entry.shape, data });
  }
  writeQwen2Gguf(ggufPath, {
    config: ckpt.config,
    tensors,
    tokenizerJsonPath: join(modelDir, "tokenizer.json"),
  });
}
