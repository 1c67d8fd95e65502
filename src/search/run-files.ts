// The files of a search run in OUT/: vectors.safetensors (tensor `vectors` [n, d], row 0 = θ0,
// metadata: settings and progress state) and log.jsonl (one line per vector). Both are
// replaced atomically after every block; vectors.safetensors is written last and is the commit
// point: on resume, log lines past its rows are dropped.

import { existsSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { MelboError } from "../errors.js";
import { writeTextAtomic } from "../io/atomic.js";
import { readVectors, writeVectors } from "../io/vectors.js";
import { MELBO_VERSION } from "../version.js";

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

export interface RunSnapshot<S> {
  settings: S;
  state: RunState;
  vectors: Float32Array; // [(found + 1) * d]
  d: number;
  log: VectorLogLine[];
}

export const VECTORS_FILE = "vectors.safetensors";
export const LOG_FILE = "log.jsonl";

export async function writeRun<S>(dir: string, algorithm: string, snap: RunSnapshot<S>, extraMetadata: Record<string, string> = {}): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeTextAtomic(join(dir, LOG_FILE), snap.log.map((l) => JSON.stringify(l)).join("\n") + (snap.log.length ? "\n" : ""));
  const n = snap.vectors.length / snap.d;
  await writeVectors(join(dir, VECTORS_FILE), snap.vectors, n, snap.d, {
    ...extraMetadata,
    "melbo.algorithm": algorithm,
    "melbo.version": MELBO_VERSION,
    "melbo.settings": JSON.stringify(snap.settings),
    "melbo.state": JSON.stringify(snap.state),
  });
}

/** The run saved in `dir`, or null when there is none. Throws on a run of another algorithm. */
export async function readRun<S>(dir: string, algorithm: string): Promise<RunSnapshot<S> | null> {
  const file = join(dir, VECTORS_FILE);
  if (!existsSync(file)) return null;
  const set = await readVectors(file);
  const meta = set.metadata;
  if (meta["melbo.algorithm"] !== algorithm) {
    throw new MelboError(`holds a ${meta["melbo.algorithm"] ?? "non-melbo"} run, not ${algorithm}: choose another --out`, { file });
  }
  let settings: S, state: RunState;
  try {
    settings = JSON.parse(meta["melbo.settings"] ?? "") as S;
    state = JSON.parse(meta["melbo.state"] ?? "") as RunState;
  } catch {
    throw new MelboError("its melbo.settings / melbo.state metadata is not valid JSON", { file });
  }
  if (state.found + 1 !== set.n) throw new MelboError(`state says ${state.found + 1} rows, the file has ${set.n}`, { file });
  const log: VectorLogLine[] = [];
  try {
    const text = await readFile(join(dir, LOG_FILE), "utf8");
    for (const line of text.split("\n")) {
      if (line.trim() === "") continue;
      const entry = JSON.parse(line) as VectorLogLine;
      if (entry.index <= state.found) log.push(entry);
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw new MelboError(`cannot read the log: ${(e as Error).message}`, { file: join(dir, LOG_FILE) });
  }
  return { settings, state, vectors: set.data, d: set.d, log };
}
