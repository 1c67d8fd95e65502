// GGUF control vectors: the files llama.cpp reads with `--control-vector FILE` (and
// `--control-vector-scaled FILE:S`), in the layout repeng's ControlVector.export_gguf writes.
//
// File (GGUF v3, little-endian, alignment 32, ggml/src/gguf.cpp): magic "GGUF", version u32 = 3,
// tensor count u64, key/value count u64; key/value pairs (key: u64 length + utf-8, value type
// u32, value); one info record per tensor (name, n_dims u32, dims u64 innermost first, ggml type
// u32, data offset u64 from the start of the data section); zero padding to the alignment; the
// tensor data, each tensor padded to the alignment, the last one included (llama.cpp reads the
// padded size of the whole data section and fails on a file that ends early).
//
// Control-vector keys (repeng/extract.py export_gguf): general.architecture = "controlvector",
// controlvector.model_hint = the model type ("qwen2"), controlvector.layer_count = u32, the
// number of direction tensors; tensors `direction.L`, F32, one dimension [n_embd].
//
// Which L. What llama.cpp does with direction.L (read in the llama.cpp sources bundled with
// node-llama-cpp 3.21.1, test/reference/llama; older releases do the same in
// common.cpp llama_control_vector_load_one and `cur = lctx.cvec.apply_to(ctx0, cur, il)` in
// llama.cpp's per-model graph builders):
//  - common/common.cpp, common_control_vector_load_one: a tensor named "direction.L" with L < 0
//    or unparsable is refused ("invalid/unparsable direction tensor layer index"), L == 0 too
//    ("invalid (zero) direction tensor layer index"); otherwise its values go to
//    data[n_embd * (L - 1)] ("layer 1 at [0]": the buffer has no slot for layer 0).
//  - src/llama-adapter.cpp, llama_adapter_cvec::init: tensors[0] = nullptr ("there's never a
//    tensor for layer 0"), tensors[il] for il = 1 .. n_layer - 1; ::apply copies
//    data + n_embd * (il - 1) into tensors[il], so tensors[il] holds direction.il.
//  - src/llama-adapter.cpp, apply_to(ctx, cur, il): cur + tensors[il], when
//    layer_start <= il <= layer_end (defaults 1 and n_layer: common.cpp sets them when the user
//    gives no --control-vector-layer-range).
//  - src/models/qwen2.cpp (and every other model graph): `for (int il = 0; il < n_layer; ++il)`
//    over the blocks, and at the end of block il, after the MLP's residual add:
//    `cur = build_cvec(cur, il); cb(cur, "l_out", il);`, build_cvec calling apply_to(…, il).
//    il is the 0-based block index, the same as Hugging Face's model.layers[il].
// So direction.L is added to the output of 0-based block L: melbo's `--at S` (added to the
// output of Hugging Face block S) is direction.S. repeng agrees: its ControlVector directions
// are keyed by the index into model.layers and read from hidden_states[layer + 1], the output of
// that block. S = 0 cannot be written (llama.cpp refuses direction.0 and has no slot for it), and
// llama.cpp ignores directions past its last block (il only reaches n_layer - 1).

import { MelboError } from "../../errors.js";

const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
const GGUF_VERSION = 3;
const ALIGNMENT = 32;
const TYPE_UINT32 = 4;
const TYPE_STRING = 8;
const GGML_TYPE_F32 = 0;

/**
 * The direction index of llama.cpp's control vectors that is added where melbo's `--at S` adds a
 * vector (the output of block S, 0-based): L = S, and S = 0 is refused (see the comment above).
 * `numLayers`, when known, bounds S to the model's last block.
 */
export function controlVectorLayer(at: number, numLayers?: number): number {
  if (!Number.isSafeInteger(at) || at < 0) throw new MelboError(`--at must be a block number (0, 1, …), got ${at}`);
  if (at === 0) {
    throw new MelboError(
      "--at 0 cannot be written as a llama.cpp control vector: llama.cpp adds direction.L to the output of block L " +
        "but never to block 0 (it refuses a direction.0 tensor), so a vector added to the output of block 0 has no place in the file; " +
        "steer at block 1 or later, or export another format",
    );
  }
  if (numLayers !== undefined && at >= numLayers) {
    throw new MelboError(`--at ${at} is past the last block of the model the vectors were found on (${numLayers} blocks: 0..${numLayers - 1})`);
  }
  return at;
}

class Bytes {
  private parts: Uint8Array[] = [];
  length = 0;
  private push(b: Uint8Array): void {
    this.parts.push(b);
    this.length += b.length;
  }
  private fixed(size: number, set: (v: DataView) => void): void {
    const b = new Uint8Array(size);
    set(new DataView(b.buffer));
    this.push(b);
  }
  u32(v: number): void {
    this.fixed(4, (d) => d.setUint32(0, v, true));
  }
  u64(v: number): void {
    if (!Number.isSafeInteger(v) || v < 0) throw new Error(`gguf: bad u64 ${v}`);
    this.fixed(8, (d) => d.setBigUint64(0, BigInt(v), true));
  }
  str(s: string): void {
    const b = new TextEncoder().encode(s);
    this.u64(b.length);
    this.push(b);
  }
  f32s(values: Float32Array): void {
    this.fixed(4 * values.length, (d) => values.forEach((x, i) => d.setFloat32(4 * i, x, true)));
  }
  pad(): void {
    const n = (ALIGNMENT - (this.length % ALIGNMENT)) % ALIGNMENT;
    if (n > 0) this.push(new Uint8Array(n));
  }
  bytes(): Uint8Array {
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}

export interface ControlVectorDirection {
  /** llama.cpp's layer index L of tensor direction.L (controlVectorLayer). */
  layer: number;
  /** [n_embd] float32. */
  values: Float32Array;
}

/** The bytes of a GGUF control vector with these directions (one per layer, all of one length). */
export function encodeControlVectorGguf(directions: readonly ControlVectorDirection[], modelHint: string): Uint8Array {
  if (directions.length === 0) throw new Error("encodeControlVectorGguf: no directions");
  const d = directions[0]!.values.length;
  const layers = new Set<number>();
  for (const dir of directions) {
    if (!Number.isSafeInteger(dir.layer) || dir.layer < 1) throw new Error(`encodeControlVectorGguf: layer ${dir.layer} (llama.cpp refuses direction.0)`);
    if (layers.has(dir.layer)) throw new Error(`encodeControlVectorGguf: layer ${dir.layer} given twice`);
    if (dir.values.length !== d || d === 0) throw new Error("encodeControlVectorGguf: directions of different or zero lengths");
    layers.add(dir.layer);
  }
  const w = new Bytes();
  w.u32(GGUF_MAGIC);
  w.u32(GGUF_VERSION);
  w.u64(directions.length); // tensors
  w.u64(3); // key/value pairs
  w.str("general.architecture");
  w.u32(TYPE_STRING);
  w.str("controlvector");
  w.str("controlvector.model_hint");
  w.u32(TYPE_STRING);
  w.str(modelHint);
  w.str("controlvector.layer_count");
  w.u32(TYPE_UINT32);
  w.u32(directions.length);
  const padded = Math.ceil((4 * d) / ALIGNMENT) * ALIGNMENT;
  directions.forEach((dir, i) => {
    w.str(`direction.${dir.layer}`);
    w.u32(1); // n_dims
    w.u64(d);
    w.u32(GGML_TYPE_F32);
    w.u64(i * padded);
  });
  w.pad();
  for (const dir of directions) {
    w.f32s(dir.values);
    w.pad();
  }
  return w.bytes();
}
