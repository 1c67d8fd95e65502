// PyTorch .pt files, as the original MELBO and MELBO-ortho code saves vectors: torch.save of an
// [n, d] tensor, of a [d] tensor, or of a list or tuple of [d] tensors, in torch.save's zip
// format (the default since PyTorch 1.6). The bytes are read by the addon with libtorch's
// reader (native/pickle_io.cpp): no Python runs and nothing in the file is executed; the
// container and the pickle are checked before libtorch sees them. Shapes are checked here.

import { MelboError, describeError } from "../../errors.js";
import { addonPath, native, type NativeAddon } from "../../native.js";

export interface PtVectors {
  /** [n * d] float32, row-major. */
  data: Float32Array;
  n: number;
  d: number;
  /** What the file holds, in words: "a float64 tensor [3, 4]", "a list of 3 bfloat16 tensors [4]". */
  description: string;
}

/** "PK\x03\x04": a zip archive, which is what torch.save writes. */
export function hasZipMagic(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 && bytes[3] === 0x04;
}

/**
 * A pickle stream (PROTO 2..5 first), which is what torch.save wrote before PyTorch 1.6 and
 * still writes with _use_new_zipfile_serialization=False: libtorch does not read that format.
 */
export function isLegacyTorchPickle(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x80 && bytes[1]! >= 2 && bytes[1]! <= 5;
}

const shapeText = (shape: readonly number[]) => `[${shape.join(", ")}]`;

/** The addon, checked to have the .pt functions (an addon built before them lacks them). */
function ptAddon(): Pick<NativeAddon, "loadPt" | "savePt"> {
  const addon = native();
  if (typeof addon.loadPt !== "function" || typeof addon.savePt !== "function") {
    throw new MelboError("the native addon was built before .pt support: rebuild it (`npm run build:native` or `bash scripts/setup.sh`)", { file: addonPath() });
  }
  return addon;
}

/** Parses a torch.save zip file held in memory; `file` names it in messages. */
export function parsePt(bytes: Uint8Array, file: string): PtVectors {
  if (isLegacyTorchPickle(bytes)) {
    throw new MelboError(
      "is a PyTorch file in the legacy format (a bare pickle: PyTorch < 1.6, or torch.save with _use_new_zipfile_serialization=False), " +
        "which libtorch does not read: load it in Python and save it again with torch.save(tensor, path)",
      { file },
    );
  }
  const addon = ptAddon();
  let entries: ReturnType<NativeAddon["loadPt"]>;
  try {
    entries = addon.loadPt(bytes);
  } catch (e) {
    throw new MelboError(`cannot import this PyTorch file: ${describeError(e)}`, { file, cause: e });
  }
  if (entries.length === 0) throw new MelboError("the file holds no tensors", { file });
  const first = entries[0]!;
  const dtypes = [...new Set(entries.map((e) => e.dtype))].join("/");
  if (entries.length === 1) {
    // One tensor (or a list of one, whose item the addon has checked to be 1-D): [d] is one
    // vector, [n, d] is n of them.
    const shape = first.shape;
    if (shape.length !== 1 && shape.length !== 2) {
      throw new MelboError(`the file holds a tensor of shape ${shapeText(shape)}: vectors must be [d] or [n, d]`, { file });
    }
    const d = shape[shape.length - 1]!;
    const n = shape.length === 2 ? shape[0]! : 1;
    if (n === 0 || d === 0) throw new MelboError(`the file holds a tensor of shape ${shapeText(shape)}: no vectors to import`, { file });
    return { data: first.data, n, d, description: shape.length === 2 ? `a ${dtypes} tensor ${shapeText(shape)}` : `one ${dtypes} vector [${d}]` };
  }
  // A list or tuple (the addon has checked that every item is 1-D): all of one length.
  entries.forEach((e, i) => {
    if (e.shape.length !== 1) {
      throw new MelboError(`item ${i} of the file's list has shape ${shapeText(e.shape)}: a list must hold vectors of shape [d]`, { file });
    }
    if (e.shape[0] !== first.shape[0]) {
      throw new MelboError(`item ${i} of the file's list has length ${e.shape[0]}, item 0 has ${first.shape[0]}: the vectors must all have one length`, { file });
    }
  });
  const d = first.shape[0]!;
  if (d === 0) throw new MelboError("the file's list holds vectors of length 0", { file });
  const n = entries.length;
  const data = new Float32Array(n * d);
  entries.forEach((e, i) => data.set(e.data, i * d));
  return { data, n, d, description: `a list/tuple of ${n} ${dtypes} vectors [${d}]` };
}

/** The bytes torch.save writes for an [n, d] float32 tensor (libtorch's torch::pickle_save). */
export function encodePt(data: Float32Array, n: number, d: number): Uint8Array {
  if (data.length !== n * d) throw new Error(`encodePt: ${data.length} values for shape [${n}, ${d}]`);
  return ptAddon().savePt({ data, n, d });
}
