// The run files of MELBO-ortho (layout and checks in run-files.ts): row 0 of vectors.safetensors
// is θ0, rows 1..found the vectors found; log.jsonl has one line per found vector (`index` = its
// row). melbo.state counts vectors after θ0.

import { join } from "node:path";
import { MelboError } from "../errors.js";
import { VECTORS_FILE, readRunFiles, writeRunFiles, type RunFiles } from "./run-files.js";

export const ORTHO_ALGORITHM = "melbo-ortho";

export interface VectorLogLine {
  index: number;
  loss: number;
  /** ‖z(θ) − z0‖ / ‖z0 − z(0)‖: 1 is as good as θ = 0. */
  relLoss: number;
  norm: number;
  steps: number;
  seconds: number;
  [extra: string]: unknown;
}

export interface RunState {
  /** Vectors found after θ0 (rows 1..found of the file). */
  found: number;
  /** Rows dropped because they vanished in the in-block orthogonalisation. */
  dropped: number;
  /** Consecutive vectors (dropped ones included) with norm below the stop threshold. */
  consecutiveSmall: number;
  stopReason: string | null;
}

export type OrthoRunFiles<S> = RunFiles<S, RunState, VectorLogLine>;

export function writeOrthoRun<S>(dir: string, run: OrthoRunFiles<S>, metadata?: Record<string, string>): Promise<void> {
  return writeRunFiles(dir, ORTHO_ALGORITHM, run, metadata);
}

/** The ortho run saved in `dir` (null when there is none), checked for damage and consistency. */
export async function readOrthoRun<S>(dir: string): Promise<OrthoRunFiles<S> | null> {
  const run = await readRunFiles<S, RunState, VectorLogLine>(dir, ORTHO_ALGORITHM, (line, state) => line.index <= state.found);
  if (run) {
    const s = run.state as unknown as Record<string, unknown>;
    for (const key of ["found", "dropped", "consecutiveSmall"]) {
      if (!Number.isSafeInteger(s[key]) || (s[key] as number) < 0) {
        throw new MelboError(`its melbo.state has ${key} ${JSON.stringify(s[key])}, not a count of rows`, { file: join(dir, VECTORS_FILE) });
      }
    }
    if (s["stopReason"] !== null && typeof s["stopReason"] !== "string") {
      throw new MelboError(`its melbo.state has stopReason ${JSON.stringify(s["stopReason"])}, not a reason or null`, { file: join(dir, VECTORS_FILE) });
    }
  }
  if (run && run.state.found + 1 !== run.vectors.length / run.d) {
    throw new MelboError(`its state says ${run.state.found + 1} rows, the file has ${run.vectors.length / run.d}`, { file: join(dir, VECTORS_FILE) });
  }
  return run;
}
