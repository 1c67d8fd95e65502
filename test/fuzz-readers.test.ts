// Seeded property-based fuzzing of the two readers every checkpoint goes through first: the
// safetensors header parser (parseSafetensorsHeader) and the config parser (parseConfig /
// parseConfigText), in memory, no files. Inputs start valid and are broken by byte flips,
// truncations, random JSON values in fields, and random shapes, offsets and dtypes.
//
// Property: an input either parses into something that satisfies every invariant the loader
// relies on (offsets inside the file, sizes consistent, no overlaps; sizes within the limits,
// heads dividing the width, token ids in the vocabulary), or throws a MelboError naming the file:
// never another exception type, never a hang. Unbroken inputs must parse to exactly what was
// generated. MELBO_FUZZ_CASES=N (per reader; default 100000) and MELBO_FUZZ_SEED=S reproduce
// or lengthen a run; a failure prints its seed, case number and input.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MelboError } from "../src/errors.js";
import { expectedTensorShapes } from "../src/model/qwen2-layout.js";
import { CONFIG_LIMITS, parseConfig, parseConfigText } from "../src/model/config.js";
import { ALL_DTYPES, DTYPE_SIZE, WEIGHT_DTYPES, parseSafetensorsHeader, type SafetensorsHeader } from "../src/model/safetensors.js";
import type { Qwen2Config, SafetensorsDtype } from "../src/model/types.js";
import { Rng } from "../src/util/rng.js";

const CASES = Number(process.env["MELBO_FUZZ_CASES"] ?? 100_000);
const SEED = Number(process.env["MELBO_FUZZ_SEED"] ?? 15);
if (!Number.isSafeInteger(CASES) || CASES < 1) throw new Error(`MELBO_FUZZ_CASES must be a positive integer, got ${process.env["MELBO_FUZZ_CASES"]}`);
if (!Number.isSafeInteger(SEED)) throw new Error(`MELBO_FUZZ_SEED must be an integer, got ${process.env["MELBO_FUZZ_SEED"]}`);
/** A single input taking this long counts as a hang. */
const SLOW_MS = 1000;

// ---------------------------------------------------------------- random values

class Gen {
  constructor(readonly rng: Rng) {}
  int(n: number): number {
    return Math.floor(this.rng.uniform() * n);
  }
  chance(p: number): boolean {
    return this.rng.uniform() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  /** Numbers that break validators: edges, signs, fractions, overflow. */
  number(): number {
    return this.pick([
      0, -0, 1, -1, 2, 3, 7, 8, 1.5, -2.5, 0.1, 1e-6, 1e-50, 5e-324, 255, 256, 65535, 65536, 1e6, 2 ** 31, 2 ** 32, 2 ** 52,
      2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, 1e15, 1e21, 1e300, -1e300, Number.MAX_VALUE, this.int(1000), -this.int(1000), this.rng.uniform() * 1e9,
    ]);
  }
  string(): string {
    return this.pick(["", "x", "F32", "BF16", "F16", "F64", "I32", "I64", "U8", "bf16", "__metadata__", "qwen2", "silu", "Qwen2ForCausalLM", "\u0000", "é", "🙂", "a".repeat(this.int(40))]);
  }
  /** A random JSON value, up to `depth` levels of arrays and objects. */
  json(depth = 2): unknown {
    const k = this.int(depth > 0 ? 8 : 5);
    switch (k) {
      case 0: return null;
      case 1: return this.chance(0.5);
      case 2: case 3: return this.number();
      case 4: return this.string();
      case 5: case 6: return Array.from({ length: this.int(4) }, () => this.json(depth - 1));
      default: return Object.fromEntries(Array.from({ length: this.int(3) }, () => [this.string(), this.json(depth - 1)]));
    }
  }
}

function hex(bytes: Uint8Array, max = 600): string {
  const shown = Buffer.from(bytes.subarray(0, max)).toString("hex");
  return bytes.length > max ? `${shown}… (${bytes.length} bytes)` : shown;
}

/** Runs one input; returns null, or a description of a broken property. */
function expectMelbo(e: unknown, file: string): string | null {
  if (!(e instanceof MelboError)) return `threw ${e instanceof Error ? `${e.name}: ${e.message}\n${e.stack}` : String(e)} instead of a MelboError`;
  if (e.file !== file || !e.message.includes(file)) return `MelboError does not name ${file}: ${e.message}`;
  return null;
}

// ---------------------------------------------------------------- safetensors

interface GenTensor {
  name: string;
  dtype: string;
  shape: unknown;
  offsets: unknown;
}

/** A valid header: tensors packed in order, with gaps sometimes, and data padded at the end. */
function validSafetensors(g: Gen): { tensors: GenTensor[]; metadata: Record<string, string> | null; dataSize: number } {
  const n = g.int(6);
  const tensors: GenTensor[] = [];
  let at = 0;
  const names = new Set<string>();
  for (let i = 0; i < n; i++) {
    let name = g.pick(["w", "b", "model.embed_tokens.weight", "vectors", "t", "é", "x.y"]) + (g.chance(0.5) ? String(i) : "");
    if (names.has(name) || name === "__metadata__") name = `${name}_${i}`;
    names.add(name);
    const dtype = g.pick(ALL_DTYPES);
    const shape = Array.from({ length: g.int(4) }, () => g.int(5));
    const nbytes = shape.reduce((a, b) => a * b, 1) * DTYPE_SIZE[dtype];
    if (g.chance(0.2)) at += g.int(16); // a gap: allowed
    tensors.push({ name, dtype, shape, offsets: [at, at + nbytes] });
    at += nbytes;
  }
  const metadata = g.chance(0.5) ? Object.fromEntries(Array.from({ length: g.int(3) }, (_, i) => [`k${i}`, g.string()])) : null;
  return { tensors, metadata, dataSize: at + (g.chance(0.3) ? g.int(32) : 0) };
}

function headerObject(tensors: GenTensor[], metadata: unknown): Record<string, unknown> {
  const h: Record<string, unknown> = {};
  if (metadata !== null) h["__metadata__"] = metadata;
  for (const t of tensors) h[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: t.offsets };
  return h;
}

function fileBytes(headerText: string, dataSize: number, pad: boolean): Uint8Array {
  let h = Buffer.from(headerText, "utf8");
  if (pad && h.length % 8 !== 0) h = Buffer.concat([h, Buffer.alloc(8 - (h.length % 8), 0x20)]);
  const out = new Uint8Array(8 + h.length + dataSize);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  return out;
}

/** One fuzz input: a file in memory, and whether it is the unbroken valid file. */
function safetensorsCase(g: Gen): { bytes: Uint8Array; valid: GenTensor[] | null; allow: readonly SafetensorsDtype[] } {
  const base = validSafetensors(g);
  const tensors = base.tensors.map((t) => ({ ...t }));
  let metadata: unknown = base.metadata;
  let dataSize = base.dataSize;
  const allow = g.chance(0.5) ? ALL_DTYPES : WEIGHT_DTYPES;
  let broken = false;
  // Field-level mutations, before the header is written.
  const fieldMutations = g.chance(0.6) ? 1 + g.int(3) : 0;
  for (let m = 0; m < fieldMutations && tensors.length > 0; m++) {
    const t = g.pick(tensors);
    const off = t.offsets as [number, number];
    broken = true;
    switch (g.int(12)) {
      case 0: t.dtype = g.chance(0.5) ? g.string() : (g.json() as string); break;
      case 1: t.shape = g.json(); break;
      case 2: t.shape = Array.isArray(t.shape) ? t.shape.map((x: unknown) => (g.chance(0.5) ? g.number() : x)) : [g.number()]; break;
      case 3: t.shape = [...(Array.isArray(t.shape) ? t.shape : []), g.pick([0, 1, 2, 2 ** 30])]; break;
      case 4: t.offsets = g.json(); break;
      case 5: t.offsets = Array.isArray(off) ? [off[0] + g.int(9) - 4, off[1] + g.int(9) - 4] : [g.int(9), g.int(9)]; break;
      case 6: t.offsets = Array.isArray(off) ? [off[1], off[0]] : off; break;
      case 7: { const other = g.pick(tensors); t.offsets = other.offsets; t.shape = other.shape; t.dtype = other.dtype; break; }
      case 8: t.offsets = [g.number(), g.number()]; break;
      case 9: metadata = g.chance(0.5) ? g.json() : { k: g.json() }; break;
      case 10: dataSize = Math.max(0, dataSize - 1 - g.int(16)); break;
      default: t.name = g.pick(["", "__metadata__", t.name + "\u0000"]); break;
    }
  }
  let text = JSON.stringify(headerObject(tensors, metadata));
  if (g.chance(0.05)) {
    text = JSON.stringify(g.json(3));
    broken = true;
  }
  let bytes = fileBytes(text, dataSize, g.chance(0.8));
  // Byte-level mutations of the written file.
  const byteMutations = g.chance(0.5) ? 1 + g.int(4) : 0;
  for (let m = 0; m < byteMutations; m++) {
    broken = true;
    switch (g.int(6)) {
      case 0: case 1: { // flip a byte, mostly in the length prefix and the header
        const end = Math.min(bytes.length, 8 + text.length + 8);
        if (end > 0) {
          const at = g.int(end);
          bytes[at] = bytes[at]! ^ (1 << g.int(8));
        }
        break;
      }
      case 2: bytes = bytes.subarray(0, g.int(bytes.length + 1)); break;
      case 3: { // a random header length
        if (bytes.length >= 8) new DataView(bytes.buffer, bytes.byteOffset).setBigUint64(0, g.pick([0n, 1n, 2n, BigInt(g.int(2 ** 31)), 2n ** 63n, 2n ** 64n - 1n]), true);
        break;
      }
      case 4: { // a header length off by a little
        if (bytes.length >= 8) {
          const dv = new DataView(bytes.buffer, bytes.byteOffset);
          const len = dv.getBigUint64(0, true) + BigInt(g.int(17) - 8);
          dv.setBigUint64(0, len < 0n ? 0n : len, true);
        }
        break;
      }
      default: { // append or insert bytes
        const extra = Uint8Array.from({ length: 1 + g.int(8) }, () => g.int(256));
        const at = g.int(bytes.length + 1);
        const out = new Uint8Array(bytes.length + extra.length);
        out.set(bytes.subarray(0, at));
        out.set(extra, at);
        out.set(bytes.subarray(at), at + extra.length);
        bytes = out;
      }
    }
  }
  const validDtypes = tensors.every((t) => (allow as readonly string[]).includes(t.dtype));
  return { bytes, valid: broken || !validDtypes ? null : tensors, allow };
}

/** The invariants readCheckpoint, readVectors and the native loader rely on. */
function safetensorsInvariants(h: SafetensorsHeader<SafetensorsDtype>, bytes: Uint8Array, file: string, allow: readonly string[]): string | null {
  const fileSize = bytes.length;
  const headerLen = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (h.fileSize !== fileSize) return `fileSize ${h.fileSize}, the input has ${fileSize} bytes`;
  if (h.dataOffset !== 8 + headerLen || h.dataOffset > fileSize) return `dataOffset ${h.dataOffset} for header length ${headerLen} in ${fileSize} bytes`;
  for (const [k, v] of Object.entries(h.metadata)) if (typeof v !== "string") return `metadata ${k} is not a string`;
  const ranges: [number, number, string][] = [];
  for (const t of h.tensors) {
    if (typeof t.name !== "string" || t.name.length === 0 || t.name === "__metadata__") return `bad tensor name ${JSON.stringify(t.name)}`;
    if (t.path !== file) return `tensor ${t.name}: path ${t.path}`;
    if (!allow.includes(t.dtype)) return `tensor ${t.name}: dtype ${t.dtype} not allowed`;
    if (!Array.isArray(t.shape) || !t.shape.every((x) => Number.isSafeInteger(x) && x >= 0)) return `tensor ${t.name}: shape ${JSON.stringify(t.shape)}`;
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (!Number.isSafeInteger(numel) || numel * DTYPE_SIZE[t.dtype] !== t.nbytes) return `tensor ${t.name}: ${t.nbytes} bytes for ${t.dtype} ${JSON.stringify(t.shape)}`;
    if (!Number.isSafeInteger(t.offset) || t.offset < h.dataOffset || t.offset + t.nbytes > fileSize) return `tensor ${t.name}: [${t.offset}, ${t.offset + t.nbytes}) outside the data [${h.dataOffset}, ${fileSize})`;
    if (t.nbytes > 0) ranges.push([t.offset, t.offset + t.nbytes, t.name]);
  }
  ranges.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < ranges.length; i++) if (ranges[i]![0] < ranges[i - 1]![1]) return `tensors ${ranges[i - 1]![2]} and ${ranges[i]![2]} overlap`;
  return null;
}

// ---------------------------------------------------------------- config

const INT_FIELDS = ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size", "max_position_embeddings"] as const;
const ALL_FIELDS = [
  ...INT_FIELDS, "architectures", "model_type", "hidden_act", "rope_scaling", "rms_norm_eps", "rope_theta", "head_dim",
  "tie_word_embeddings", "bos_token_id", "eos_token_id",
] as const;

/** A valid Qwen2 config.json object (small sizes mostly, near the limits sometimes). */
function validConfig(g: Gen): Record<string, unknown> {
  const big = g.chance(0.05);
  const headDim = 2 * (1 + g.int(big ? 64 : 8));
  const kv = 1 + g.int(big ? 16 : 4);
  const heads = kv * (1 + g.int(big ? 8 : 4));
  const hidden = heads * headDim;
  const vocab = big ? CONFIG_LIMITS.vocab_size - g.int(1000) : 100 + g.int(200000);
  const c: Record<string, unknown> = {
    architectures: ["Qwen2ForCausalLM"],
    hidden_size: hidden,
    intermediate_size: 1 + g.int(big ? CONFIG_LIMITS.intermediate_size : 1000),
    num_hidden_layers: 1 + g.int(big ? CONFIG_LIMITS.num_hidden_layers : 40),
    num_attention_heads: heads,
    num_key_value_heads: kv,
    vocab_size: vocab,
    eos_token_id: g.chance(0.5) ? g.int(vocab) : [g.int(vocab), g.int(vocab)],
  };
  if (g.chance(0.8)) c["model_type"] = "qwen2";
  if (g.chance(0.8)) c["hidden_act"] = "silu";
  if (g.chance(0.7)) c["rms_norm_eps"] = g.pick([1e-6, 1e-5, 1e-12, 0.5]);
  if (g.chance(0.7)) c["rope_theta"] = g.pick([10000, 1e6, 1, 5e5]);
  if (g.chance(0.5)) c["max_position_embeddings"] = 1 + g.int(131072);
  if (g.chance(0.3)) c["head_dim"] = headDim;
  if (g.chance(0.5)) c["tie_word_embeddings"] = g.chance(0.5);
  if (g.chance(0.5)) c["bos_token_id"] = g.chance(0.2) ? null : g.int(vocab);
  if (g.chance(0.2)) c["rope_scaling"] = null;
  if (g.chance(0.3)) c["sliding_window"] = g.json(); // unknown fields are ignored
  return c;
}

/** Mutates a config object in place; true when it may no longer be valid. */
function mutateConfig(g: Gen, c: Record<string, unknown>): boolean {
  const n = 1 + g.int(3);
  for (let i = 0; i < n; i++) {
    const field = g.pick(ALL_FIELDS);
    switch (g.int(5)) {
      case 0: delete c[field]; break;
      case 1: c[field] = g.json(); break;
      case 2: c[field] = g.number(); break;
      case 3: c[field] = typeof c[field] === "number" ? (c[field] as number) * g.pick([0, -1, 2, 3, 0.5, 1e9]) : g.string(); break;
      default: c[field] = g.pick([null, [], {}, "8", true, [c[field]]]);
    }
  }
  return true;
}

function mutateText(g: Gen, text: string): string {
  const b = Buffer.from(text, "utf8");
  switch (g.int(5)) {
    case 0: return b.subarray(0, g.int(b.length + 1)).toString("utf8");
    case 1: {
      const at = g.int(b.length);
      if (at < b.length) b[at] = b[at]! ^ (1 << g.int(8));
      return b.toString("utf8");
    }
    case 2: { // a number replaced by one JSON.stringify cannot write
      return text.replace(/-?\d+(\.\d+)?(e[+-]?\d+)?/, g.pick(["1e999", "-1e999", "-0", "9007199254740993", "1e-400", "NaN", "0x10"]));
    }
    case 3: { const at = g.int(text.length + 1); return text.slice(0, at) + g.pick(["{", "}", ",", "\"", "]", "\u0000", " ", "\ufeff"]) + text.slice(at); }
    default: return JSON.stringify(g.json(3));
  }
}

function configInvariants(c: Qwen2Config): string | null {
  const ints: [string, number, number][] = [
    ["hiddenSize", c.hiddenSize, CONFIG_LIMITS.hidden_size], ["intermediateSize", c.intermediateSize, CONFIG_LIMITS.intermediate_size],
    ["numLayers", c.numLayers, CONFIG_LIMITS.num_hidden_layers], ["numHeads", c.numHeads, CONFIG_LIMITS.num_attention_heads],
    ["numKvHeads", c.numKvHeads, CONFIG_LIMITS.num_key_value_heads], ["vocabSize", c.vocabSize, CONFIG_LIMITS.vocab_size],
    ["maxPositionEmbeddings", c.maxPositionEmbeddings, CONFIG_LIMITS.max_position_embeddings], ["headDim", c.headDim, CONFIG_LIMITS.hidden_size],
  ];
  for (const [k, v, limit] of ints) if (!Number.isSafeInteger(v) || v < 1 || v > limit) return `${k} = ${v}`;
  if (c.numHeads * c.headDim !== c.hiddenSize) return `heads ${c.numHeads} × head dim ${c.headDim} ≠ hidden ${c.hiddenSize}`;
  if (c.headDim % 2 !== 0) return `odd head dim ${c.headDim}`;
  if (c.numHeads % c.numKvHeads !== 0) return `kv heads ${c.numKvHeads} do not divide heads ${c.numHeads}`;
  if (!(Number.isFinite(c.rmsNormEps) && c.rmsNormEps > 0 && Math.fround(c.rmsNormEps) > 0)) return `rmsNormEps ${c.rmsNormEps}`;
  if (!(Number.isFinite(c.ropeTheta) && c.ropeTheta >= 1)) return `ropeTheta ${c.ropeTheta}`;
  if (typeof c.tieWordEmbeddings !== "boolean") return `tieWordEmbeddings ${String(c.tieWordEmbeddings)}`;
  if (c.eosTokenId.length === 0 || !c.eosTokenId.every((id) => Number.isSafeInteger(id) && id >= 0 && id < c.vocabSize)) return `eos ${JSON.stringify(c.eosTokenId)}`;
  if (c.bosTokenId !== null && !(Number.isSafeInteger(c.bosTokenId) && c.bosTokenId >= 0 && c.bosTokenId < c.vocabSize)) return `bos ${c.bosTokenId}`;
  if (c.architecture !== "Qwen2ForCausalLM") return `architecture ${c.architecture}`;
  // What readCheckpoint builds from it: a table of bounded size with addressable shapes.
  if (c.numLayers <= 64) {
    const shapes = expectedTensorShapes(c);
    if (shapes.size !== 12 * c.numLayers + (c.tieWordEmbeddings ? 2 : 3)) return `${shapes.size} expected tensors`;
    for (const [name, shape] of shapes) {
      const numel = shape.reduce((a, b) => a * b, 1);
      if (!shape.every((x) => Number.isSafeInteger(x) && x > 0) || !Number.isSafeInteger(numel * 8)) return `tensor ${name}: shape ${JSON.stringify(shape)}`;
    }
  }
  return null;
}

/** What parseConfig must return for an unbroken valid config. */
function expectedConfig(c: Record<string, unknown>): Partial<Qwen2Config> {
  const eos = c["eos_token_id"];
  return {
    hiddenSize: c["hidden_size"] as number,
    intermediateSize: c["intermediate_size"] as number,
    numLayers: c["num_hidden_layers"] as number,
    numHeads: c["num_attention_heads"] as number,
    numKvHeads: c["num_key_value_heads"] as number,
    vocabSize: c["vocab_size"] as number,
    eosTokenId: Array.isArray(eos) ? eos : [eos as number],
  };
}

// ---------------------------------------------------------------- the loops

interface Tally { cases: number; parsed: number; refused: number; slowest: number; messages: Map<string, number> }

function tally(): Tally {
  return { cases: 0, parsed: 0, refused: 0, slowest: 0, messages: new Map() };
}

function record(t: Tally, e: unknown, file: string): void {
  t.refused++;
  // The kind of message, without the file and the numbers: shows what the loop reached.
  const kind = (e as Error).message.replace(file + ": ", "").replace(/"[^"]*"/g, "\"…\"").replace(/\[[^\]]*\]|\{[^}]*\}/g, "…").replace(/-?\d+(\.\d+)?(e[+-]?\d+)?/g, "N").slice(0, 50);
  t.messages.set(kind, (t.messages.get(kind) ?? 0) + 1);
}

function summary(name: string, t: Tally, seconds: number): string {
  const top = [...t.messages.entries()].sort((a, b) => b[1] - a[1]).slice(0, 12).map(([m, n]) => `    ${String(n).padStart(6)}  ${m}`).join("\n");
  return `${name}: ${t.cases} cases (seed ${SEED}) in ${seconds.toFixed(1)} s: ${t.parsed} parsed, ${t.refused} refused with a MelboError; ` +
    `${t.messages.size} kinds of message; slowest case ${t.slowest.toFixed(1)} ms\n${top}`;
}

describe(`fuzz the readers (${CASES} cases each, seed ${SEED}; MELBO_FUZZ_CASES / MELBO_FUZZ_SEED)`, () => {
  it("safetensors headers: a valid header or a MelboError naming the file", (t) => {
    const file = "/fuzz/model.safetensors";
    const g = new Gen(new Rng(SEED, "fuzz-safetensors"));
    const stats = tally();
    const started = performance.now();
    for (let i = 0; i < CASES; i++) {
      const { bytes, valid, allow } = safetensorsCase(g);
      const t0 = performance.now();
      let problem: string | null = null;
      try {
        const h = parseSafetensorsHeader(bytes, file, { allowDtypes: allow });
        stats.parsed++;
        problem = safetensorsInvariants(h, bytes, file, allow);
        if (problem === null && valid !== null) {
          const got = h.tensors.map((x) => ({ name: x.name, dtype: x.dtype, shape: x.shape, offsets: [x.offset - h.dataOffset, x.offset - h.dataOffset + x.nbytes] }));
          const want = valid.map((x) => ({ name: x.name, dtype: x.dtype, shape: x.shape, offsets: x.offsets }));
          try {
            assert.deepEqual(got, want);
          } catch {
            problem = `a valid header parsed to ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`;
          }
        }
      } catch (e) {
        problem = valid !== null ? `a valid file was refused: ${(e as Error).message}` : expectMelbo(e, file);
        if (problem === null) record(stats, e, file);
      }
      const ms = performance.now() - t0;
      stats.slowest = Math.max(stats.slowest, ms);
      stats.cases++;
      if (problem === null && ms > SLOW_MS) problem = `took ${ms.toFixed(0)} ms`;
      if (problem !== null) assert.fail(`seed ${SEED}, case ${i}: ${problem}\ninput (hex): ${hex(bytes)}`);
    }
    const text = summary("safetensors", stats, (performance.now() - started) / 1000);
    t.diagnostic(text.split("\n")[0]!);
    console.log(text);
    // The loop must reach both outcomes and many distinct checks, or the generator is broken.
    assert.ok(stats.parsed > CASES / 10 && stats.refused > CASES / 10, text);
    assert.ok(stats.messages.size >= Math.min(15, CASES / 100), text);
  });

  it("config.json: a consistent config or a MelboError naming the file", (t) => {
    const file = "/fuzz/config.json";
    const g = new Gen(new Rng(SEED, "fuzz-config"));
    const stats = tally();
    const started = performance.now();
    for (let i = 0; i < CASES; i++) {
      const c = validConfig(g);
      const mode = g.int(10); // 0-1: unbroken, 2-6: field mutations, 7-9: text mutations
      const broken = mode >= 2 && mutateConfig(g, c);
      const text = mode >= 7 ? mutateText(g, JSON.stringify(c)) : JSON.stringify(c);
      const t0 = performance.now();
      let problem: string | null = null;
      try {
        const config = mode >= 7 || g.chance(0.5) ? parseConfigText(text, file) : parseConfig(c, file);
        stats.parsed++;
        problem = configInvariants(config);
        if (problem === null && !broken) {
          const want = expectedConfig(c);
          for (const [k, v] of Object.entries(want)) {
            if (JSON.stringify(config[k as keyof Qwen2Config]) !== JSON.stringify(v)) problem = `${k}: parsed ${JSON.stringify(config[k as keyof Qwen2Config])}, expected ${JSON.stringify(v)}`;
          }
        }
      } catch (e) {
        problem = !broken ? `a valid config was refused: ${(e as Error).message}` : expectMelbo(e, file);
        if (problem === null) record(stats, e, file);
      }
      const ms = performance.now() - t0;
      stats.slowest = Math.max(stats.slowest, ms);
      stats.cases++;
      if (problem === null && ms > SLOW_MS) problem = `took ${ms.toFixed(0)} ms`;
      if (problem !== null) assert.fail(`seed ${SEED}, case ${i}: ${problem}\ninput: ${text.slice(0, 2000)}`);
    }
    const text = summary("config", stats, (performance.now() - started) / 1000);
    t.diagnostic(text.split("\n")[0]!);
    console.log(text);
    assert.ok(stats.parsed > CASES / 10 && stats.refused > CASES / 10, text);
    assert.ok(stats.messages.size >= Math.min(15, CASES / 100), text);
  });
});
