// Steering-vector files: `vectors` [n, d] in a .safetensors file (F32, F64, F16 or BF16, read as
// float32), addressed as FILE, FILE:row or FILE:rows (FILE:0,3,10-19).

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

/**
 * "FILE", "FILE:row" or "FILE:rows" → path and the rows asked for (undefined = all). Rows are a
 * comma-separated list of indices and inclusive ranges: "FILE:0,3,10-19". A path that itself
 * ends in such a suffix can be named as "FILE:" + rows, or by a path without the suffix.
 */
export function parseVectorRef(ref: string): { path: string; rows: number[] | undefined } {
  const m = /^(.*):(\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*)$/.exec(ref);
  if (m && m[1]) return { path: m[1], rows: parseRowList(m[2]!) };
  return { path: ref, rows: undefined };
}

/** "0,3,10-19" → [0, 3, 10, 11, …, 19], in the order written (a range must not run backwards). */
export function parseRowList(text: string): number[] {
  const rows: number[] = [];
  for (const part of text.split(",")) {
    const [a, b] = part.split("-").map(Number) as [number, number | undefined];
    const last = b ?? a;
    if (!Number.isSafeInteger(a) || !Number.isSafeInteger(last)) {
      if (/^\d+(-\d+)?$/.test(part)) throw new MelboError(`row ${part.split("-").find((x) => !Number.isSafeInteger(Number(x)))} does not exist (no file has that many rows)`);
      throw new MelboError(`"${part}" is not a row or a range of rows`);
    }
    if (last < a) throw new MelboError(`the range ${part} runs backwards: write ${last}-${a}`);
    if (last - a > 10_000_000) throw new MelboError(`the range ${part} is too long`);
    for (let r = a; r <= last; r++) rows.push(r);
  }
  return rows;
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

export interface VectorRows {
  /** [n * d] float32: the rows asked for, in the order asked. */
  data: Float32Array;
  n: number;
  d: number;
  /** Row of the file of each of the n vectors. */
  rows: number[];
  /** Rows in the file. */
  fileRows: number;
  file: string;
  metadata: Record<string, string>;
}

/**
 * The rows a reference names (FILE, FILE:row, FILE:0,3,10-19; see parseVectorRef) of a vectors
 * file, checked against the model's width (`expectedD`, when given) and for non-finite values.
 */
export async function readVectorRows(ref: string, expectedD?: number): Promise<VectorRows> {
  let parsed: ReturnType<typeof parseVectorRef>;
  try {
    parsed = parseVectorRef(ref);
  } catch (e) {
    // A row list that is no list of rows: name the file it was meant for.
    const path = ref.slice(0, ref.lastIndexOf(":"));
    if (e instanceof MelboError && path !== "") throw new MelboError(e.message, { file: resolve(path) });
    throw e;
  }
  const { path, rows: asked } = parsed;
  // "FILE:x" with x not a row list: say so, rather than "file not found" for the whole text.
  const bad = /^(.+):([^:/\\]*)$/.exec(ref);
  if (asked === undefined && bad !== null && !existsSync(ref) && existsSync(bad[1]!)) {
    throw new MelboError(`":${bad[2]}" is not a row list: write FILE:N, FILE:N,M or FILE:N-M with row numbers (0, 1, …)`, { file: resolve(bad[1]!) });
  }
  const set = await readVectors(path);
  if (set.n === 0) throw new MelboError(`holds no vectors (shape [0, ${set.d}])`, { file: set.file });
  if (expectedD !== undefined && set.d !== expectedD) {
    throw new MelboError(`vectors have length ${set.d}, the model's hidden size is ${expectedD}`, { file: set.file });
  }
  const rows = asked ?? Array.from({ length: set.n }, (_, i) => i);
  for (const row of rows) {
    if (row >= set.n) {
      throw new MelboError(`row ${row} does not exist (the file has ${set.n} vector${set.n === 1 ? "" : "s"}, rows 0..${set.n - 1})`, { file: set.file });
    }
  }
  const d = set.d;
  const data = asked === undefined ? set.data : new Float32Array(rows.length * d);
  if (asked !== undefined) rows.forEach((row, i) => data.set(set.data.subarray(row * d, (row + 1) * d), i * d));
  for (let i = 0; i < data.length; i++) {
    const x = data[i]!;
    if (!Number.isFinite(x)) {
      throw new MelboError(`vector ${rows[Math.floor(i / d)]} has the non-finite value ${x} at index ${i % d}`, { file: set.file });
    }
  }
  return { data, n: rows.length, d, rows, fileRows: set.n, file: set.file, metadata: set.metadata };
}

/** The rows a reference names (see readVectorRows), checked against the model's width. */
export async function readVectorRef(ref: string, expectedD: number): Promise<{ data: Float32Array; n: number; file: string }> {
  const { data, n, file } = await readVectorRows(ref, expectedD);
  return { data, n, file };
}

/** Writes `vectors` [n, d] atomically with string metadata. */
export async function writeVectors(path: string, data: Float32Array, n: number, d: number, metadata: Record<string, string>): Promise<void> {
  await writeSafetensors(path, [{ name: "vectors", dtype: "F32", shape: [n, d], data }], metadata);
}
