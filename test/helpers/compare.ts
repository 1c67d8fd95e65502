// Small helpers of tests that compare two computations of the same thing, and copies of a
// checkpoint in another layout or precision (rewriteCheckpoint) to compare models with.

import assert from "node:assert/strict";
import { copyFile, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { INDEX_FILE, SINGLE_FILE, readCheckpoint } from "../../src/model/checkpoint.js";
import { DTYPE_SIZE, readSafetensorsTensor, writeSafetensors, type TensorToWrite } from "../../src/model/safetensors.js";
import type { WeightDtype } from "../../src/model/types.js";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../../src/util/half.js";

/** max |a − b| over max |b|: the largest difference relative to the reference's scale. */
export function maxRelDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return num / den;
}

/**
 * Runs `run` with the environment variable `name` set to `value` (undefined: unset), then puts it
 * back. The native switches (MELBO_SKINNY_ROWS, MELBO_ATTENTION) are read on every call.
 */
export function withEnv<T>(name: string, value: string | undefined, run: () => Promise<T>): Promise<T> {
  const before = process.env[name];
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
  return run().finally(() => {
    if (before === undefined) delete process.env[name];
    else process.env[name] = before;
  });
}

/**
 * The largest |cos| between distinct non-zero rows of `data` [n, d], written out here on purpose
 * (not src/search/basis.ts's maxAbsCosine), so that tests check the library's audit against an
 * independent computation.
 */
export function bruteMaxAbsCos(data: Float32Array, n: number, d: number): number {
  let worst = 0;
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      let ij = 0, ii = 0, jj = 0;
      for (let k = 0; k < d; k++) {
        const a = data[i * d + k]!, b = data[j * d + k]!;
        ij += a * b;
        ii += a * a;
        jj += b * b;
      }
      if (ii > 0 && jj > 0) worst = Math.max(worst, Math.abs(ij) / Math.sqrt(ii * jj));
    }
  }
  return worst;
}

/** The files of a checkpoint directory besides its weights. */
const CHECKPOINT_SIDE_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"];

export interface RewriteCheckpointOptions {
  /** Stored dtype of each tensor (default: F32). F16/BF16 round to nearest even when written. */
  dtype?: (name: string, shape: readonly number[]) => WeightDtype;
  /** New values of each tensor (default: as read, widened to float32); may return `data` itself. */
  values?: (name: string, shape: readonly number[], data: Float32Array) => Float32Array;
  /** > 1: that many shard files and a model.safetensors.index.json instead of model.safetensors. */
  shards?: number;
}

/**
 * Writes a copy of the checkpoint in `src` to `dst` (created), with its weights rewritten with
 * melbo's own safetensors reader and writer: other dtypes, other values, or sharded. For tests
 * that compare a model with another layout or precision of the same weights.
 */
export async function rewriteCheckpoint(src: string, dst: string, o: RewriteCheckpointOptions = {}): Promise<{ files: string[] }> {
  await mkdir(dst, { recursive: true });
  for (const f of CHECKPOINT_SIDE_FILES) await copyFile(join(src, f), join(dst, f));
  const { tensors: entries } = await readCheckpoint(src);
  const tensors: TensorToWrite[] = [];
  for (const [name, entry] of entries) {
    const read = await readSafetensorsTensor(entry.path, name);
    assert.ok(read.data instanceof Float32Array, `${name}: a weight reads as float32`);
    tensors.push({ name, dtype: o.dtype?.(name, read.shape) ?? "F32", shape: read.shape, data: o.values?.(name, read.shape, read.data) ?? read.data });
  }
  const shards = o.shards ?? 1;
  if (shards <= 1) {
    await writeSafetensors(join(dst, SINGLE_FILE), tensors);
    return { files: [SINGLE_FILE] };
  }
  // Consecutive runs of tensors per shard, named as Hugging Face names them.
  const per = Math.ceil(tensors.length / shards);
  const files: string[] = [];
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (let s = 0; s < shards; s++) {
    const file = `model-${String(s + 1).padStart(5, "0")}-of-${String(shards).padStart(5, "0")}.safetensors`;
    const part = tensors.slice(s * per, (s + 1) * per);
    assert.ok(part.length > 0, `shard ${s + 1} of ${shards} would be empty`);
    await writeSafetensors(join(dst, file), part);
    for (const t of part) {
      weightMap[t.name] = file;
      total += t.shape.reduce((a, b) => a * b, 1) * DTYPE_SIZE[t.dtype];
    }
    files.push(file);
  }
  await writeFile(join(dst, INDEX_FILE), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2) + "\n");
  return { files };
}

/** float32 values rounded to the nearest bf16 / f16 (ties to even), back in float32: what a checkpoint of that dtype holds. */
export function roundToBf16(data: Float32Array): Float32Array {
  return bf16ToF32(f32ToBf16(data));
}
export function roundToF16(data: Float32Array): Float32Array {
  return f16ToF32(f32ToF16(data));
}
