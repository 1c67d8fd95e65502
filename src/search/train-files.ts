// The files of a MELBO training in OUT/, in the layout of the ortho search (run-files.ts):
// vectors.safetensors (tensor `vectors` [n, d]) and log.jsonl (one line per vector, `index` =
// its row). One difference: a MELBO file has no θ0, so row 0 is the first learned vector, and
// melbo.state counts rows, not vectors after θ0. The metadata says "melbo.algorithm": "melbo";
// any row can seed MELBO-ortho as `melbo ortho --theta OUT/vectors.safetensors:ROW`.

import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { writeTextAtomic } from "../io/atomic.js";
import { writeVectors } from "../io/vectors.js";
import { MELBO_VERSION } from "../version.js";
import { LOG_FILE, VECTORS_FILE } from "./run-files.js";

export const TRAIN_ALGORITHM = "melbo";

export interface TrainLogLine {
  /** Row of vectors.safetensors. */
  index: number;
  /** F at the final θ. */
  objective: number;
  /** F at the start (θ = R · normalise(randn)): how much training raised it. */
  startObjective: number;
  norm: number;
  steps: number;
  /** Wall-clock seconds per vector (a batch's time is shared by its rows). */
  seconds: number;
  /** The start direction is randn from this seed (vector k of a run with seed S uses S + k). */
  seed: number;
}

export interface TrainFileState {
  /** Rows in the file. */
  rows: number;
  /** Rows the run was asked for. */
  count: number;
}

export async function writeTrainRun(
  dir: string,
  snap: { settings: object; state: TrainFileState; vectors: Float32Array; d: number; log: readonly TrainLogLine[] },
  extraMetadata: Record<string, string> = {},
): Promise<void> {
  await mkdir(dir, { recursive: true });
  // The log first and the vectors last, as in run-files.ts: the vectors file is the commit point.
  await writeTextAtomic(join(dir, LOG_FILE), snap.log.map((l) => JSON.stringify(l) + "\n").join(""));
  await writeVectors(join(dir, VECTORS_FILE), snap.vectors, snap.vectors.length / snap.d, snap.d, {
    ...extraMetadata,
    "melbo.algorithm": TRAIN_ALGORITHM,
    "melbo.version": MELBO_VERSION,
    "melbo.settings": JSON.stringify(snap.settings),
    "melbo.state": JSON.stringify(snap.state),
  });
}
