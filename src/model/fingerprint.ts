// What identifies a model for a saved run: the config that defines its computation and a
// fingerprint of the weights a search reads. A resumed run must continue on the same model; two
// checkpoints of one width (a base model and its fine-tune, an f32 and a bf16 copy) would
// otherwise mix their vectors in one file without a word.
//
// Hashing every byte of a 3.6 GB checkpoint would cost seconds on each start, so each tensor
// contributes its name, dtype, shape and SAMPLES windows of WINDOW bytes spread evenly over its
// data (the whole tensor when it is smaller). A fine-tune or a dtype change moves bytes in every
// window; an edit of a few isolated weights can escape it, which is the price of a cheap check.

import { createHash } from "node:crypto";
import { open, type FileHandle } from "node:fs/promises";
import { MelboError, describeError } from "../errors.js";
import { EMBED_TOKENS, blockTensorNames } from "./qwen2-layout.js";
import type { Checkpoint, Qwen2Config } from "./types.js";

const SAMPLES = 8;
const WINDOW = 256;

export interface ModelFingerprint {
  /** The validated config (what decides the computation), saved so a difference can be named. */
  config: Qwen2Config;
  /** sha256 (hex) over the sampled weights of the tensors listed in `tensors`. */
  weights: string;
  /** Which tensors were fingerprinted, in words ("embedding, blocks 0..16"). */
  tensors: string;
}

/** The tensors a search on blocks 0..lastBlock reads: the embedding and those blocks. */
function tensorNames(lastBlock: number): string[] {
  const names = [EMBED_TOKENS];
  for (let k = 0; k <= lastBlock; k++) names.push(...blockTensorNames(k));
  return names;
}

/** Fingerprint of the embedding and blocks 0..lastBlock of `checkpoint`. */
export async function modelFingerprint(checkpoint: Checkpoint, lastBlock: number): Promise<ModelFingerprint> {
  const hash = createHash("sha256");
  const files = new Map<string, FileHandle>();
  try {
    for (const name of tensorNames(lastBlock)) {
      const t = checkpoint.tensors.get(name);
      if (t === undefined) throw new MelboError(`missing tensor "${name}"`, { file: checkpoint.dir });
      hash.update(`${name}|${t.dtype}|${t.shape.join(",")}|`);
      let fh = files.get(t.path);
      if (fh === undefined) {
        fh = await open(t.path, "r");
        files.set(t.path, fh);
      }
      const window = Math.min(WINDOW, t.nbytes);
      const count = t.nbytes <= SAMPLES * WINDOW ? 1 : SAMPLES;
      const length = count === 1 ? t.nbytes : window;
      const buffer = Buffer.alloc(length);
      for (let i = 0; i < count; i++) {
        const at = count === 1 ? 0 : Math.floor(((t.nbytes - window) * i) / (count - 1));
        const { bytesRead } = await fh.read(buffer, 0, length, t.offset + at);
        if (bytesRead !== length) throw new MelboError(`tensor "${name}" ends before its header says`, { file: t.path });
        hash.update(buffer);
      }
    }
  } catch (e) {
    if (e instanceof MelboError) throw e;
    throw new MelboError(`cannot read the weights to fingerprint them: ${describeError(e)}`, { file: checkpoint.dir, cause: e });
  } finally {
    for (const fh of files.values()) await fh.close().catch(() => undefined);
  }
  return { config: checkpoint.config, weights: hash.digest("hex"), tensors: `embedding, blocks 0..${lastBlock}` };
}

/** Null when `now` is the model `saved` was taken of; else the difference, in words. */
export function modelDifference(saved: ModelFingerprint, now: ModelFingerprint): string | null {
  const savedConfig = saved.config as unknown as Record<string, unknown>;
  const nowConfig = now.config as unknown as Record<string, unknown>;
  for (const key of new Set([...Object.keys(savedConfig), ...Object.keys(nowConfig)])) {
    const a = JSON.stringify(savedConfig[key]), b = JSON.stringify(nowConfig[key]);
    if (a !== b) return `the model differs: its config has ${key} ${b ?? "unset"}, the run was saved with ${a ?? "unset"}`;
  }
  if (saved.tensors !== now.tensors) return `the model differs: the run fingerprinted ${saved.tensors}, now ${now.tensors}`;
  if (saved.weights !== now.weights) {
    return `the model differs: same config, other weights (fingerprint of the ${saved.tensors}: saved ${saved.weights.slice(0, 12)}…, now ${now.weights.slice(0, 12)}…)`;
  }
  return null;
}
