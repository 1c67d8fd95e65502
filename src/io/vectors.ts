// Steering-vector files: `vectors` [n, d] f32 in a .safetensors file, addressed as FILE or FILE:row.

import { existsSync } from "node:fs";
import { resolve } from "node:path";
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
  if (name === null) {
    const shown = names.slice(0, 10).map((n) => JSON.stringify(n)).join(", ") + (names.length > 10 ? ", …" : "");
    throw new MelboError(`no tensor "vectors" (found: ${shown || "none"})`, { file: header.path });
  }
  const entry = header.tensors.find((t) => t.name === name)!;
  // Shape and dtype are checked on the header, before the data is read.
  if (entry.dtype === "I32" || entry.dtype === "I64") {
    throw new MelboError(`tensor ${JSON.stringify(name)} must be floating point (F32, F16, BF16 or F64), got ${entry.dtype}`, { file: header.path });
  }
  if (entry.shape.length !== 1 && entry.shape.length !== 2) {
    const shown = entry.shape.length > 8 ? `${entry.shape.length} dimensions` : `shape [${entry.shape.join(", ")}]`;
    throw new MelboError(`tensor ${JSON.stringify(name)} must be [d] or [n, d], got ${shown}`, { file: header.path });
  }
  const d = entry.shape[entry.shape.length - 1]!;
  const n = entry.shape.length === 2 ? entry.shape[0]! : 1;
  if (d === 0) throw new MelboError(`tensor ${JSON.stringify(name)} has vectors of length 0 (shape [${entry.shape.join(", ")}])`, { file: header.path });
  const t = await readSafetensorsTensor(path, name);
  // F64 (numpy's default) is narrowed; a value beyond float32's range becomes ±Infinity and is refused by readVectorRef.
  const data = t.data instanceof Float64Array ? Float32Array.from(t.data) : t.data;
  if (!(data instanceof Float32Array)) throw new MelboError(`tensor ${JSON.stringify(name)} must be floating point, got ${t.dtype}`, { file: header.path });
  return { file: header.path, data, n, d, metadata: header.metadata };
}

/** Row `row` of a vectors file (or all rows), checked against the model's width. */
export async function readVectorRef(ref: string, expectedD: number): Promise<{ data: Float32Array; n: number; file: string }> {
  const { path, row } = parseVectorRef(ref);
  // "FILE:x" with x not a row number: say so, rather than "file not found" for the whole text.
  const bad = /^(.+):([^:/\\]*)$/.exec(ref);
  if (row === undefined && bad !== null && !existsSync(ref) && existsSync(bad[1]!)) {
    throw new MelboError(`":${bad[2]}" is not a row: write FILE:N with N a row number (0, 1, …)`, { file: resolve(bad[1]!) });
  }
  const set = await readVectors(path);
  if (set.n === 0) throw new MelboError(`holds no vectors (shape [0, ${set.d}])`, { file: set.file });
  if (set.d !== expectedD) {
    throw new MelboError(`vectors have length ${set.d}, the model's hidden size is ${expectedD}`, { file: set.file });
  }
  if (row !== undefined && row >= set.n) {
    throw new MelboError(`row ${row} does not exist (the file has ${set.n} vector${set.n === 1 ? "" : "s"}, rows 0..${set.n - 1})`, { file: set.file });
  }
  const first = row ?? 0, rows = row === undefined ? set.n : 1;
  const data = set.data.subarray(first * set.d, (first + rows) * set.d);
  for (let i = 0; i < data.length; i++) {
    const x = data[i]!;
    if (!Number.isFinite(x)) {
      throw new MelboError(`vector ${first + Math.floor(i / set.d)} has the non-finite value ${x} at index ${i % set.d}`, { file: set.file });
    }
  }
  return { data: row === undefined ? set.data : data.slice(), n: rows, file: set.file };
}

/** Writes `vectors` [n, d] atomically with string metadata. */
export async function writeVectors(path: string, data: Float32Array, n: number, d: number, metadata: Record<string, string>): Promise<void> {
  await writeSafetensors(path, [{ name: "vectors", dtype: "F32", shape: [n, d], data }], metadata);
}
