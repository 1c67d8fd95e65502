// Vectors in other tools' formats: `melbo import` reads the original MELBO / MELBO-ortho files
// (PyTorch torch.save), numpy .npy and any float safetensors file into a melbo vectors file;
// `melbo export` writes rows of a vectors file as a llama.cpp control vector (GGUF), .npy, .pt
// or .safetensors.
//
// The input format is decided by the file's first bytes: "PK\x03\x04" (a zip: torch.save),
// "\x93NUMPY" (np.save), otherwise safetensors. The extension is only a hint in messages.

import { open, stat } from "node:fs/promises";
import { basename, extname, resolve } from "node:path";
import { MelboError, describeError } from "../../errors.js";
import { readSafetensorsHeader, writeSafetensors } from "../../model/safetensors.js";
import { readVectorRows, readVectors, writeVectors } from "../vectors.js";
import { controlVectorLayer, encodeControlVectorGguf } from "./gguf.js";
import { encodeNpy, hasNpyMagic, parseNpy } from "./npy.js";
import { checkOutputFile, commitFile, writeNewBytes } from "./output.js";
import { encodePt, hasZipMagic, isLegacyTorchPickle, parsePt } from "./pt.js";

export { controlVectorLayer } from "./gguf.js";

export type ImportFormat = "pt" | "npy" | "safetensors";

export interface ImportedVectors {
  /** The file read (absolute). */
  file: string;
  format: ImportFormat;
  /** What the file holds, in words ("PyTorch torch.save: a list of 3 float64 vectors [256]"). */
  description: string;
  /** [n * d] float32, row-major; every value finite. */
  data: Float32Array;
  n: number;
  d: number;
  /** Metadata of a safetensors source; {} for the other formats. */
  metadata: Record<string, string>;
}

/** The metadata key of an imported vectors file: the source's name and format. */
export const IMPORTED_FROM_KEY = "melbo.importedFrom";
/** The model a melbo vectors file was found on (src/search/run-files.ts); carried over by import and export. */
const MODEL_KEY = "melbo.model";

/** .pt and .npy files are read into memory whole; vectors files are far smaller. */
const MAX_IN_MEMORY_BYTES = 1 << 30;

async function openRegular(path: string): Promise<{ file: string; size: number; head: Uint8Array }> {
  const file = resolve(path);
  const info = await stat(file).catch((e: NodeJS.ErrnoException) => {
    throw new MelboError(e.code === "ENOENT" ? "file not found" : `cannot open: ${describeError(e)}`, { file, cause: e });
  });
  if (!info.isFile()) throw new MelboError(`not a regular file (${info.isDirectory() ? "a folder" : "a special file"}): expected a vectors file`, { file });
  const fh = await open(file, "r").catch((e: unknown) => {
    throw new MelboError(`cannot open: ${describeError(e)}`, { file, cause: e });
  });
  try {
    const head = new Uint8Array(8);
    const { bytesRead } = await fh.read(head, 0, 8, 0);
    return { file, size: info.size, head: head.subarray(0, bytesRead) };
  } finally {
    await fh.close();
  }
}

async function readWhole(file: string, size: number, what: string): Promise<Uint8Array> {
  if (size > MAX_IN_MEMORY_BYTES) throw new MelboError(`is ${size} bytes: larger than the ${MAX_IN_MEMORY_BYTES >> 20} MiB melbo reads as a ${what}`, { file });
  const fh = await open(file, "r");
  try {
    const bytes = new Uint8Array(size);
    let done = 0;
    while (done < size) {
      const { bytesRead } = await fh.read(bytes, done, size - done, done);
      if (bytesRead === 0) throw new MelboError(`the file shrank while it was read (${done} of ${size} bytes)`, { file });
      done += bytesRead;
    }
    return bytes;
  } finally {
    await fh.close();
  }
}

/** The message of a MelboError without the "FILE: " it starts with. */
function withoutFile(e: unknown): string {
  const message = describeError(e);
  const file = e instanceof MelboError ? e.file : undefined;
  return file !== undefined && message.startsWith(`${file}: `) ? message.slice(file.length + 2) : message;
}

function checkFinite(data: Float32Array, d: number, file: string): void {
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i]!)) {
      throw new MelboError(`vector ${Math.floor(i / d)} has the value ${data[i]} at index ${i % d} (as float32): vectors must be finite`, { file });
    }
  }
}

/**
 * Reads the vectors of a .pt (torch.save: an [n, d] or [d] tensor, or a list or tuple of [d]
 * tensors), .npy ((d,) or (n, d), float32/float64/float16) or .safetensors file (F32, F64, F16
 * or BF16 `vectors`, or the file's only tensor) as float32. The format comes from the content.
 */
export async function importVectors(path: string): Promise<ImportedVectors> {
  const { file, size, head } = await openRegular(path);
  const ext = extname(file).toLowerCase();
  if (hasZipMagic(head) || isLegacyTorchPickle(head)) {
    const pt = parsePt(await readWhole(file, size, "PyTorch file"), file);
    checkFinite(pt.data, pt.d, file);
    return { file, format: "pt", description: `PyTorch torch.save: ${pt.description}`, data: pt.data, n: pt.n, d: pt.d, metadata: {} };
  }
  if (hasNpyMagic(head)) {
    const npy = parseNpy(await readWhole(file, size, "numpy file"), file);
    checkFinite(npy.data, npy.d, file);
    const shape = npy.shape.length === 1 ? `(${npy.shape[0]},)` : `(${npy.shape.join(", ")})`;
    return { file, format: "npy", description: `numpy .npy: ${npy.dtype} ${shape}`, data: npy.data, n: npy.n, d: npy.d, metadata: {} };
  }
  // Not a zip and not numpy: a safetensors file, or nothing melbo reads.
  const hint = ext === ".pt" || ext === ".pth" || ext === ".bin" ? "named like a PyTorch file but not a zip archive (torch.save writes one)"
    : ext === ".npy" ? 'named like a numpy file but it does not start with "\\x93NUMPY"'
    : undefined;
  let header;
  try {
    header = await readSafetensorsHeader(file, { allowDtypes: ["F32", "F64", "F16", "BF16", "I32", "I64"] as const });
  } catch (e) {
    const why = withoutFile(e);
    throw new MelboError(
      `${hint ?? "not a PyTorch .pt (zip), numpy .npy or .safetensors file"}: read as safetensors, ${why.charAt(0).toLowerCase()}${why.slice(1)}`,
      { file, cause: e },
    );
  }
  const set = await readVectors(file);
  if (set.n === 0) throw new MelboError(`holds no vectors (shape [0, ${set.d}])`, { file });
  checkFinite(set.data, set.d, file);
  const entry = header.tensors.find((t) => t.name === "vectors") ?? header.tensors[0]!;
  return {
    file,
    format: "safetensors",
    description: `safetensors: ${entry.dtype} ${JSON.stringify(entry.name)} [${entry.shape.join(", ")}]`,
    data: set.data,
    n: set.n,
    d: set.d,
    metadata: set.metadata,
  };
}

/** The metadata `melbo import` writes: the source's name and format, and the model a melbo source was found on. */
export function importedMetadata(v: ImportedVectors): Record<string, string> {
  return {
    ...(v.metadata[MODEL_KEY] !== undefined ? { [MODEL_KEY]: v.metadata[MODEL_KEY] } : {}),
    [IMPORTED_FROM_KEY]: `${basename(v.file)} (${v.description})`,
  };
}

/** Reads `path` (see importVectors) and writes it as a melbo vectors file `out` (F32 `vectors` [n, d]). */
export async function importToFile(path: string, out: string, options: { force?: boolean } = {}): Promise<ImportedVectors> {
  const force = options.force ?? false;
  await checkOutputFile(out, force);
  const v = await importVectors(path);
  await commitFile(out, force, (tmp) => writeVectors(tmp, v.data, v.n, v.d, importedMetadata(v)));
  return v;
}

// ---------------------------------------------------------------- export

export const EXPORT_FORMATS = ["gguf", "npy", "pt", "safetensors"] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export interface ExportOptions {
  format: ExportFormat;
  /** The file written; an existing one is replaced only with `force`. */
  out: string;
  /** Block whose output the vectors are added to (0-based): needed for gguf, recorded in safetensors metadata, not stored in .npy/.pt. */
  at?: number;
  /** Every vector is multiplied by it (default 1; negative flips the direction). */
  scale?: number;
  force?: boolean;
  /** gguf `controlvector.model_hint`; default: the vectors file's model type, else "qwen2". */
  modelHint?: string;
}

export interface ExportResult {
  /** The file written (absolute). */
  file: string;
  format: ExportFormat;
  /** The rows of the source file written, in order. */
  rows: number[];
  n: number;
  d: number;
  /** gguf: the tensor written, direction.L. */
  tensor?: string;
}

/** What a melbo vectors file says about the model it was found on (metadata melbo.model). */
function modelOf(metadata: Record<string, string>): { type?: string; numLayers?: number } {
  const text = metadata[MODEL_KEY];
  if (text === undefined) return {};
  try {
    const config = (JSON.parse(text) as { config?: { architecture?: unknown; numLayers?: unknown } }).config;
    const numLayers = typeof config?.numLayers === "number" && Number.isSafeInteger(config.numLayers) && config.numLayers > 0 ? config.numLayers : undefined;
    // melbo reads Qwen2-family checkpoints only: Hugging Face model_type "qwen2".
    const type = typeof config?.architecture === "string" && /^Qwen2/.test(config.architecture) ? "qwen2" : undefined;
    return { ...(type !== undefined ? { type } : {}), ...(numLayers !== undefined ? { numLayers } : {}) };
  } catch {
    return {};
  }
}

/** [0, 3, 10, 11, 12] → "0,3,10-12". */
export function rowListText(rows: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < rows.length; ) {
    let j = i;
    while (j + 1 < rows.length && rows[j + 1] === rows[j]! + 1) j++;
    parts.push(j > i ? `${rows[i]}-${rows[j]}` : `${rows[i]}`);
    i = j + 1;
  }
  return parts.join(",");
}

/**
 * Writes the rows `ref` names (FILE, FILE:row, FILE:0,3,10-19) of a melbo vectors file, times
 * `scale`, as `format`. A GGUF control vector holds one direction per layer: exactly one row,
 * and `at` (≥ 1: llama.cpp has no direction for block 0; see gguf.ts).
 */
export async function exportVectors(ref: string, options: ExportOptions): Promise<ExportResult> {
  const { format, at } = options;
  const scale = options.scale ?? 1;
  const force = options.force ?? false;
  if (!(EXPORT_FORMATS as readonly string[]).includes(format)) {
    throw new MelboError(`unknown export format ${JSON.stringify(format)}: one of ${EXPORT_FORMATS.join(", ")}`);
  }
  if (!Number.isFinite(scale)) throw new MelboError(`--scale must be a finite number, got ${scale}`);
  if (at !== undefined && (!Number.isSafeInteger(at) || at < 0)) throw new MelboError(`--at must be a block number (0, 1, …), got ${at}`);
  if (format === "gguf" && at === undefined) {
    throw new MelboError("--format gguf needs --at S: the block whose output the vector is added to (llama.cpp's direction.S)");
  }
  if (format === "gguf" && at === 0) controlVectorLayer(at); // refused, before anything is read
  await checkOutputFile(options.out, force);

  const src = await readVectorRows(ref);
  const model = modelOf(src.metadata);
  if (at !== undefined && model.numLayers !== undefined && at >= model.numLayers) {
    throw new MelboError(`--at ${at} is past the last block of the model these vectors were found on (${model.numLayers} blocks: 0..${model.numLayers - 1})`, { file: src.file });
  }
  const data = new Float32Array(src.data.length);
  for (let i = 0; i < data.length; i++) data[i] = src.data[i]! * scale;
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i]!)) {
      throw new MelboError(`--scale ${scale} takes vector ${src.rows[Math.floor(i / src.d)]} past float32's range (index ${i % src.d})`, { file: src.file });
    }
  }
  const { n, d } = src;
  const result: ExportResult = { file: resolve(options.out), format, rows: src.rows, n, d };

  let write: (tmp: string) => Promise<void>;
  switch (format) {
    case "gguf": {
      if (n !== 1) {
        throw new MelboError(
          `a GGUF control vector holds one direction per layer, and ${n} rows were named: pick one row (FILE:ROW); ` +
            "exporting a sum of rows is not supported",
          { file: src.file },
        );
      }
      const layer = controlVectorLayer(at!, model.numLayers);
      if (options.modelHint !== undefined && model.type !== undefined && options.modelHint !== model.type) {
        throw new MelboError(`--model-hint ${options.modelHint}: the vectors were found on a ${model.type} model (metadata ${MODEL_KEY}); leave out --model-hint`, { file: src.file });
      }
      const hint = options.modelHint ?? model.type ?? "qwen2";
      if (hint === "" || /[\0\n]/.test(hint)) throw new MelboError(`--model-hint must be a model type such as qwen2, got ${JSON.stringify(hint)}`);
      const bytes = encodeControlVectorGguf([{ layer, values: data }], hint);
      result.tensor = `direction.${layer}`;
      write = (tmp) => writeNewBytes(tmp, bytes);
      break;
    }
    case "npy": {
      const bytes = encodeNpy(data, n, d);
      write = (tmp) => writeNewBytes(tmp, bytes);
      break;
    }
    case "pt": {
      const bytes = encodePt(data, n, d);
      write = (tmp) => writeNewBytes(tmp, bytes);
      break;
    }
    case "safetensors": {
      const metadata: Record<string, string> = {
        ...(src.metadata[MODEL_KEY] !== undefined ? { [MODEL_KEY]: src.metadata[MODEL_KEY] } : {}),
        "melbo.exportedFrom": src.file,
        "melbo.rows": rowListText(src.rows),
        "melbo.scale": String(scale),
        ...(at !== undefined ? { "melbo.at": String(at) } : {}),
      };
      write = (tmp) => writeSafetensors(tmp, [{ name: "vectors", dtype: "F32", shape: [n, d], data }], metadata);
      break;
    }
  }
  await commitFile(options.out, force, write);
  return result;
}
