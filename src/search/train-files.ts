// The run files of MELBO training (layout and checks in run-files.ts). One difference from an
// ortho run: a MELBO file has no θ0, so row 0 is the first learned vector, log line `index` = its
// row, and melbo.state counts rows. Any row can seed MELBO-ortho as
// `melbo ortho --theta OUT/vectors.safetensors:ROW`.

import { join } from "node:path";
import { MelboError } from "../errors.js";
import { VECTORS_FILE, readRunFiles, writeRunFiles, type RunFiles } from "./run-files.js";

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

export type TrainRunFiles<S> = RunFiles<S, TrainFileState, TrainLogLine>;

export function writeTrainRun<S>(dir: string, run: TrainRunFiles<S>, metadata?: Record<string, string>): Promise<void> {
  return writeRunFiles(dir, TRAIN_ALGORITHM, run, metadata);
}

/** The training run saved in `dir` (null when there is none), checked for damage and consistency. */
export async function readTrainRun<S>(dir: string): Promise<TrainRunFiles<S> | null> {
  const run = await readRunFiles<S, TrainFileState, TrainLogLine>(dir, TRAIN_ALGORITHM, (line, state) => line.index < state.rows);
  if (run) {
    const s = run.state as unknown as Record<string, unknown>;
    for (const key of ["rows", "count"]) {
      if (!Number.isSafeInteger(s[key]) || (s[key] as number) < 0) {
        throw new MelboError(`its melbo.state has ${key} ${JSON.stringify(s[key])}, not a count of rows`, { file: join(dir, VECTORS_FILE) });
      }
    }
  }
  if (run && run.state.rows !== run.vectors.length / run.d) {
    throw new MelboError(`its state says ${run.state.rows} rows, the file has ${run.vectors.length / run.d}`, { file: join(dir, VECTORS_FILE) });
  }
  return run;
}
