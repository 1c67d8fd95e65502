// Reading and writing .safetensors files (8-byte little-endian header length, JSON header,
// raw little-endian tensor data). Headers come from untrusted files: every length, offset and
// dtype is checked before any offset is used, and only the header is read, never the whole file.

import { open, rename, stat, unlink, type FileHandle } from "node:fs/promises";
import { endianness } from "node:os";
import { dirname, resolve } from "node:path";
import { MelboError, describeError } from "../errors.js";
import { syncFolder, temporaryName } from "../io/atomic.js";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../util/half.js";
import type { SafetensorsDtype, TensorEntry, WeightDtype } from "./types.js";

export const DTYPE_SIZE: Readonly<Record<SafetensorsDtype, number>> = {
  F64: 8,
  I64: 8,
  F32: 4,
  I32: 4,
  F16: 2,
  BF16: 2,
};
export const WEIGHT_DTYPES: readonly WeightDtype[] = ["F32", "F16", "BF16"];
export const ALL_DTYPES: readonly SafetensorsDtype[] = ["F64", "I64", "F32", "I32", "F16", "BF16"];

/** A header larger than this is refused before it is read: real ones are a few hundred KB. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;
/** fs writes are limited to 2 GiB per call; big tensors (a 151936×2048 embedding) go in pieces. */
const WRITE_CHUNK_BYTES = 256 * 1024 * 1024;

function requireLittleEndian(): void {
  // The file format is little-endian and we reinterpret typed-array memory as file bytes.
  if (endianness() !== "LE") throw new MelboError("safetensors I/O needs a little-endian machine");
}

export interface SafetensorsHeader<D extends SafetensorsDtype = WeightDtype> {
  path: string; // absolute
  tensors: TensorEntry<D>[]; // in the order of the header
  metadata: Record<string, string>; // the `__metadata__` string map, {} when absent
  dataOffset: number; // absolute offset of the data section (8 + header length)
  fileSize: number;
}

export interface ReadHeaderOptions<D extends SafetensorsDtype> {
  /** Dtypes accepted; default F32/F16/BF16 (model weights). */
  allowDtypes?: readonly D[];
}

async function readExactly(fh: FileHandle, length: number, position: number, file: string): Promise<Uint8Array> {
  const buf = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    let bytesRead: number;
    try {
      ({ bytesRead } = await fh.read(buf, done, length - done, position + done));
    } catch (e) {
      throw new MelboError(`cannot read: ${describeError(e)}`, { file, cause: e });
    }
    if (bytesRead === 0) throw new MelboError(`file ended after ${position + done} bytes while reading`, { file });
    done += bytesRead;
  }
  return buf;
}

/** Opens a regular file for reading; a directory, FIFO or device is refused before open (a FIFO would block). */
async function openForRead(path: string): Promise<{ fh: FileHandle; size: number }> {
  const fail = (e: unknown): never => {
    const code = (e as NodeJS.ErrnoException).code;
    const what = code === "ENOENT" ? "file not found" : `cannot open: ${describeError(e)}`;
    throw new MelboError(what, { file: path, cause: e });
  };
  const info = await stat(path).catch(fail);
  if (!info.isFile()) {
    throw new MelboError(`not a regular file (${info.isDirectory() ? "a directory" : "a special file"}), expected a .safetensors file`, { file: path });
  }
  const fh = await open(path, "r").catch(fail);
  try {
    const now = await fh.stat();
    if (!now.isFile()) throw new MelboError("not a regular file, expected a .safetensors file", { file: path });
    return { fh, size: now.size };
  } catch (e) {
    await fh.close();
    if (e instanceof MelboError) throw e;
    return fail(e);
  }
}

/** A header value for a message, cut short (a hostile header can hold megabytes in one field). */
function brief(v: unknown): string {
  const text = JSON.stringify(v) ?? String(v);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function isNonNegInt(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/**
 * The header length in the first 8 bytes of a file of `fileSize` bytes, checked against the
 * file size and the header limit before anything of that size is read or allocated.
 */
export function parseHeaderLength(first8: Uint8Array, fileSize: number, file: string): number {
  if (fileSize < 8 || first8.length < 8) throw new MelboError(`not a safetensors file: only ${Math.min(fileSize, first8.length)} bytes`, { file });
  const headerLen64 = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (headerLen64 > BigInt(fileSize - 8)) {
    throw new MelboError(`header length ${headerLen64} exceeds the file size (${fileSize} bytes): not a safetensors file, or a truncated one`, { file });
  }
  const headerLen = Number(headerLen64);
  if (headerLen > MAX_HEADER_BYTES) throw new MelboError(`header length ${headerLen} is over the ${MAX_HEADER_BYTES}-byte limit`, { file });
  if (headerLen < 2) throw new MelboError(`header length ${headerLen} is too small for a JSON object`, { file });
  return headerLen;
}

/**
 * Validates the JSON header (`headerBytes`, the `headerLength` bytes after the length prefix) of
 * a safetensors file of `fileSize` bytes. Returned offsets are absolute file offsets; every
 * tensor's byte range lies inside the file, matches dtype × shape, and no two ranges overlap.
 */
export function parseHeaderJson<D extends SafetensorsDtype = WeightDtype>(
  headerBytes: Uint8Array,
  fileSize: number,
  file: string,
  options: ReadHeaderOptions<D> = {},
): SafetensorsHeader<D> {
  const allowed = (options.allowDtypes ?? WEIGHT_DTYPES) as readonly string[];
  const headerLen = headerBytes.length;
  if (8 + headerLen > fileSize) throw new MelboError(`header length ${headerLen} exceeds the file size (${fileSize} bytes)`, { file });
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(headerBytes));
  } catch (e) {
    throw new MelboError(`header is not valid JSON: ${describeError(e)}`, { file, cause: e });
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new MelboError(`header is not a JSON object (found ${Array.isArray(parsed) ? "an array" : parsed === null ? "null" : typeof parsed})`, { file });
  }

  const dataOffset = 8 + headerLen;
  const dataSize = fileSize - dataOffset;
  const metadata: Record<string, string> = {};
  const tensors: TensorEntry<D>[] = [];
  const ranges: { name: string; begin: number; end: number }[] = [];

  for (const [name, value] of Object.entries(parsed as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        throw new MelboError(`"__metadata__" must be an object of strings`, { file });
      }
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== "string") throw new MelboError(`"__metadata__" entry ${brief(k)} is not a string`, { file });
        metadata[k] = v;
      }
      continue;
    }
    const where = `tensor ${brief(name)}`;
    if (name.length === 0) throw new MelboError("a tensor has an empty name", { file });
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new MelboError(`${where}: entry is not an object`, { file });
    }
    const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
    if (dtype === undefined) throw new MelboError(`${where}: missing dtype`, { file });
    if (typeof dtype !== "string") throw new MelboError(`${where}: dtype must be a string, found ${brief(dtype)}`, { file });
    if (!allowed.includes(dtype)) {
      throw new MelboError(`${where}: unsupported dtype ${brief(dtype)} (allowed: ${allowed.join(", ")})`, { file });
    }
    if (shape === undefined) throw new MelboError(`${where}: missing shape`, { file });
    if (!Array.isArray(shape) || !shape.every(isNonNegInt)) {
      throw new MelboError(`${where}: shape must be an array of non-negative integers, found ${brief(shape)}`, { file });
    }
    if (offsets === undefined) throw new MelboError(`${where}: missing data_offsets`, { file });
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegInt)) {
      throw new MelboError(`${where}: data_offsets must be [begin, end] (non-negative integers), found ${brief(offsets)}`, { file });
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end || end > dataSize) {
      throw new MelboError(`${where}: data_offsets [${begin}, ${end}] outside the data section (${dataSize} bytes)`, { file });
    }
    let numel = 1;
    for (const n of shape as number[]) {
      numel *= n;
      if (!Number.isSafeInteger(numel)) throw new MelboError(`${where}: shape ${brief(shape)} has more elements than can be addressed`, { file });
    }
    const nbytes = numel * DTYPE_SIZE[dtype as SafetensorsDtype];
    if (end - begin !== nbytes) {
      throw new MelboError(
        `${where}: ${end - begin} bytes in data_offsets, but ${dtype} ${brief(shape)} needs ${nbytes}`,
        { file },
      );
    }
    ranges.push({ name, begin, end });
    tensors.push({ name, path: file, dtype: dtype as D, shape: [...(shape as number[])], offset: dataOffset + begin, nbytes });
  }

  // Overlap check on sorted ranges; empty tensors occupy no bytes and cannot overlap.
  const nonEmpty = ranges.filter((r) => r.end > r.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < nonEmpty.length; i++) {
    const prev = nonEmpty[i - 1]!;
    const cur = nonEmpty[i]!;
    if (cur.begin < prev.end) {
      throw new MelboError(
        `tensors ${brief(prev.name)} [${prev.begin}, ${prev.end}] and ${brief(cur.name)} [${cur.begin}, ${cur.end}] overlap`,
        { file },
      );
    }
  }
  return { path: file, tensors, metadata, dataOffset, fileSize };
}

/**
 * Validates the header of a safetensors file held in memory (`bytes`: the file, or at least its
 * first 8 + header-length bytes, with `fileSize` the whole file's size). Pure: the path reader
 * below and the fuzz test use it; `file` is only used in messages and as the tensors' path.
 */
export function parseSafetensorsHeader<D extends SafetensorsDtype = WeightDtype>(
  bytes: Uint8Array,
  file: string,
  options: ReadHeaderOptions<D> & { fileSize?: number } = {},
): SafetensorsHeader<D> {
  const fileSize = options.fileSize ?? bytes.length;
  const headerLen = parseHeaderLength(bytes.subarray(0, 8), fileSize, file);
  if (bytes.length < 8 + headerLen) throw new MelboError(`file ended after ${bytes.length} bytes while reading the header`, { file });
  return parseHeaderJson(bytes.subarray(8, 8 + headerLen), fileSize, file, options);
}

/**
 * Reads and validates the header of a .safetensors file. Returned offsets are absolute file
 * offsets; every tensor's byte range lies inside the file, matches dtype × shape, and no two
 * ranges overlap.
 */
export async function readSafetensorsHeader<D extends SafetensorsDtype = WeightDtype>(
  path: string,
  options: ReadHeaderOptions<D> = {},
): Promise<SafetensorsHeader<D>> {
  const file = resolve(path);
  const { fh, size: fileSize } = await openForRead(file);
  try {
    if (fileSize < 8) throw new MelboError(`not a safetensors file: only ${fileSize} bytes`, { file });
    const headerLen = parseHeaderLength(await readExactly(fh, 8, 0, file), fileSize, file);
    return parseHeaderJson(await readExactly(fh, headerLen, 8, file), fileSize, file, options);
  } finally {
    await fh.close();
  }
}

// ---------------------------------------------------------------- reading one tensor

export interface ReadTensor {
  name: string;
  dtype: SafetensorsDtype; // as stored in the file
  shape: number[];
  /** F32/F16/BF16 → Float32Array; F64 → Float64Array; I32 → Int32Array; I64 → Int32Array (checked to fit). */
  data: Float32Array | Float64Array | Int32Array;
}

/** Raw bytes of one validated entry, in a fresh (aligned) buffer. */
export async function readTensorBytes(entry: TensorEntry<SafetensorsDtype>): Promise<Uint8Array> {
  const { fh } = await openForRead(entry.path);
  try {
    return await readExactly(fh, entry.nbytes, entry.offset, entry.path);
  } finally {
    await fh.close();
  }
}

/** Reads one tensor of a .safetensors file (vectors files, test checks), converting to a JS array. */
export async function readSafetensorsTensor(path: string, name: string): Promise<ReadTensor> {
  requireLittleEndian();
  const header = await readSafetensorsHeader(path, { allowDtypes: ALL_DTYPES });
  const entry = header.tensors.find((t) => t.name === name);
  if (entry === undefined) {
    const names = header.tensors.map((t) => t.name);
    const shown = names.slice(0, 20).join(", ") + (names.length > 20 ? ", …" : "");
    throw new MelboError(`no tensor "${name}" (found: ${shown || "none"})`, { file: header.path });
  }
  const bytes = await readTensorBytes(entry);
  const n = entry.nbytes / DTYPE_SIZE[entry.dtype];
  const buf = bytes.buffer;
  let data: Float32Array | Float64Array | Int32Array;
  switch (entry.dtype) {
    case "F32": data = new Float32Array(buf, 0, n); break;
    case "F64": data = new Float64Array(buf, 0, n); break;
    case "BF16": data = bf16ToF32(new Uint16Array(buf, 0, n)); break;
    case "F16": data = f16ToF32(new Uint16Array(buf, 0, n)); break;
    case "I32": data = new Int32Array(buf, 0, n); break;
    case "I64": {
      // torch's default integer dtype; token ids always fit in int32.
      const wide = new BigInt64Array(buf, 0, n);
      data = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const v = wide[i]!;
        if (v < -2147483648n || v > 2147483647n) throw new MelboError(`tensor "${name}": I64 value ${v} does not fit in int32`, { file: header.path });
        data[i] = Number(v);
      }
      break;
    }
  }
  return { name, dtype: entry.dtype, shape: entry.shape, data };
}

// ---------------------------------------------------------------- writing

export type TensorData = Float64Array | Float32Array | Uint16Array | Int32Array | BigInt64Array;

export interface TensorToWrite {
  name: string;
  dtype: SafetensorsDtype;
  shape: readonly number[];
  /**
   * F64: Float64Array. F32: Float32Array. F16/BF16: Uint16Array of raw bits, or Float32Array
   * (rounded to nearest even). I32: Int32Array. I64: BigInt64Array or Int32Array (widened).
   * A function is called only when that tensor is written, so a multi-GB checkpoint can be
   * produced one tensor at a time.
   */
  data: TensorData | (() => TensorData);
}

/** The file bytes of one tensor, converting when the array type is not the stored one. */
function tensorBytes(t: TensorToWrite, data: TensorData, numel: number, file: string): Uint8Array {
  let out: TensorData | null = null;
  switch (t.dtype) {
    case "F64": if (data instanceof Float64Array) out = data; break;
    case "F32": if (data instanceof Float32Array) out = data; break;
    case "BF16": out = data instanceof Uint16Array ? data : data instanceof Float32Array ? f32ToBf16(data) : null; break;
    case "F16": out = data instanceof Uint16Array ? data : data instanceof Float32Array ? f32ToF16(data) : null; break;
    case "I32": if (data instanceof Int32Array) out = data; break;
    case "I64":
      if (data instanceof BigInt64Array) out = data;
      else if (data instanceof Int32Array) out = BigInt64Array.from(data, (v) => BigInt(v));
      break;
  }
  if (out === null) {
    throw new MelboError(`tensor "${t.name}": a ${data.constructor.name} cannot be written as ${t.dtype}`, { file });
  }
  if (out.length !== numel) {
    throw new MelboError(`tensor "${t.name}": ${out.length} elements for shape ${JSON.stringify(t.shape)} (${numel})`, { file });
  }
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

async function writeAll(fh: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const len = Math.min(WRITE_CHUNK_BYTES, bytes.length - done);
    const { bytesWritten } = await fh.write(bytes, done, len, position + done);
    done += bytesWritten;
  }
}

/**
 * Writes a .safetensors file atomically and durably (temporary file, fsync, rename, fsync of the folder), readable by the Python
 * `safetensors` package: header padded with spaces to a multiple of 8, tensors packed without
 * gaps in order of decreasing element size, so every tensor starts aligned to its element size.
 */
export async function writeSafetensors(
  path: string,
  tensors: readonly TensorToWrite[],
  metadata?: Record<string, string>,
): Promise<void> {
  requireLittleEndian();
  const file = resolve(path);
  const seen = new Set<string>();
  for (const t of tensors) {
    if (t.name.length === 0 || t.name === "__metadata__") throw new MelboError(`invalid tensor name ${JSON.stringify(t.name)}`, { file });
    if (seen.has(t.name)) throw new MelboError(`tensor "${t.name}" given twice`, { file });
    seen.add(t.name);
    if (!(t.dtype in DTYPE_SIZE)) throw new MelboError(`tensor "${t.name}": unsupported dtype ${JSON.stringify(t.dtype)}`, { file });
    if (!t.shape.every(isNonNegInt)) throw new MelboError(`tensor "${t.name}": bad shape ${JSON.stringify(t.shape)}`, { file });
  }

  // Python's safetensors rejects gaps between tensors, so alignment comes from the order alone.
  const order = tensors
    .map((t, i) => ({ t, i }))
    .sort((a, b) => DTYPE_SIZE[b.t.dtype] - DTYPE_SIZE[a.t.dtype] || a.i - b.i)
    .map(({ t }) => t);

  const header: Record<string, unknown> = {};
  if (metadata !== undefined && Object.keys(metadata).length > 0) header["__metadata__"] = metadata;
  const layout: { t: TensorToWrite; begin: number; numel: number }[] = [];
  let cursor = 0;
  for (const t of order) {
    const numel = t.shape.reduce((a, b) => a * b, 1);
    const nbytes = numel * DTYPE_SIZE[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [cursor, cursor + nbytes] };
    layout.push({ t, begin: cursor, numel });
    cursor += nbytes;
  }
  let json = JSON.stringify(header);
  let headerBytes = new TextEncoder().encode(json);
  const pad = (8 - (headerBytes.length % 8)) % 8;
  if (pad > 0) headerBytes = new TextEncoder().encode((json += " ".repeat(pad)));
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  const dataOffset = 8 + headerBytes.length;

  const tmp = temporaryName(file);
  let fh: FileHandle;
  try {
    fh = await open(tmp, "w");
  } catch (e) {
    throw new MelboError(`cannot create: ${describeError(e)}`, { file: tmp, cause: e });
  }
  try {
    await writeAll(fh, prefix, 0);
    await writeAll(fh, headerBytes, 8);
    for (const { t, begin, numel } of layout) {
      const data = typeof t.data === "function" ? t.data() : t.data;
      await writeAll(fh, tensorBytes(t, data, numel, file), dataOffset + begin);
    }
    await fh.sync(); // on disk before the rename makes it the file
    await fh.close();
    await rename(tmp, file);
  } catch (e) {
    await fh.close().catch(() => undefined); // already closed after a failed rename: ignore
    await unlink(tmp).catch(() => undefined);
    if (e instanceof MelboError) throw e;
    throw new MelboError(`cannot write: ${describeError(e)}`, { file, cause: e });
  }
  await syncFolder(dirname(file));
}
