// Steering-vector files: `vectors` [n, d] f32 in a .safetensors file, addressed as FILE or FILE:row.

import { MelboError } from "../errors.js";
import { readSafetensorsHeader, readSafetensorsTensor, writeSafetensors, ALL_DTYPES } from "../model/safetensors.js";

export interface VectorSet {
  file: string;
  /** [n * d] float32, row-major. */
  data: Float32Array;
  n: number;
  d: number;
  metadata: Record<string, string>;
}

/** "FILE" or "FILE:row" → path and optional row (a trailing ":<digits>" is a row). */
export function parseVectorRef(ref: string): { path: string; row: number | undefined } {
  const m = /^(.*):(\d+)$/.exec(ref);
  if (m && m[1]) return { path: m[1], row: Number(m[2]) };
  return { path: ref, row: undefined };
}

/** Reads tensor `vectors` (or the file's only tensor) as [n, d]. A 1-D tensor is one vector. */
export async function readVectors(path: string): Promise<VectorSet> {
  const header = await readSafetensorsHeader(path, { allowDtypes: ALL_DTYPES });
  const names = header.tensors.map((t) => t.name);
  const name = names.includes("vectors") ? "vectors" : names.length === 1 ? names[0]! : null;
  if (name === null) throw new MelboError(`no tensor "vectors" (found: ${names.join(", ") || "none"})`, { file: header.path });
  const t = await readSafetensorsTensor(path, name);
  if (!(t.data instanceof Float32Array)) throw new MelboError(`tensor "${name}" must be floating point, got ${t.dtype}`, { file: header.path });
  if (t.shape.length !== 1 && t.shape.length !== 2) {
    throw new MelboError(`tensor "${name}" must be [d] or [n, d], got shape [${t.shape.join(", ")}]`, { file: header.path });
  }
  const d = t.shape[t.shape.length - 1]!;
  const n = t.shape.length === 2 ? t.shape[0]! : 1;
  return { file: header.path, data: t.data, n, d, metadata: header.metadata };
}

/** Row `row` of a vectors file (or all rows), checked against the model's width. */
export async function readVectorRef(ref: string, expectedD: number): Promise<{ data: Float32Array; n: number; file: string }> {
  const { path, row } = parseVectorRef(ref);
  const set = await readVectors(path);
  if (set.d !== expectedD) {
    throw new MelboError(`vectors have length ${set.d}, the model's hidden size is ${expectedD}`, { file: set.file });
  }
  for (let i = 0; i < set.data.length; i++) {
    if (!Number.isFinite(set.data[i]!)) throw new MelboError(`vector ${Math.floor(i / set.d)} contains a non-finite value`, { file: set.file });
  }
  if (row === undefined) return { data: set.data, n: set.n, file: set.file };
  if (row >= set.n) throw new MelboError(`row ${row} does not exist (the file has ${set.n} vectors)`, { file: set.file });
  return { data: set.data.slice(row * set.d, (row + 1) * set.d), n: 1, file: set.file };
}

/** Writes `vectors` [n, d] atomically with string metadata. */
export async function writeVectors(path: string, data: Float32Array, n: number, d: number, metadata: Record<string, string>): Promise<void> {
  await writeSafetensors(path, [{ name: "vectors", dtype: "F32", shape: [n, d], data }], metadata);
}
