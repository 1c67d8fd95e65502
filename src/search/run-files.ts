// The files of a search run in OUT/, shared by MELBO-ortho (ortho.ts) and MELBO training
// (train.ts): vectors.safetensors (tensor `vectors` [n, d] and metadata: algorithm, settings,
// progress state, the model's fingerprint, checksums) and log.jsonl (one line per vector).
// Both are replaced atomically after every block; vectors.safetensors is written last and is the
// commit point: on resume, log lines past its rows are dropped.
//
// Checksums: `melbo.checksum` covers everything a resume uses from vectors.safetensors (the
// vectors' bytes, settings, state, model), `melbo.logChecksum` the log lines that belong to it.
// A file damaged after it was written (a disk error, an edit by hand) is reported, never used.

import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { MelboError } from "../errors.js";
import { writeTextAtomic } from "../io/atomic.js";
import { parseJsonLines, readOptionalText } from "../io/json-lines.js";
import { readVectors, writeVectors } from "../io/vectors.js";
import type { ModelFingerprint } from "../model/fingerprint.js";
import { MELBO_VERSION } from "../version.js";

export const VECTORS_FILE = "vectors.safetensors";
export const LOG_FILE = "log.jsonl";

/** One search's files, as written and as read back. */
export interface RunFiles<Settings, State, Line extends { index: number }> {
  settings: Settings;
  state: State;
  /** [n * d] float32, row-major. */
  vectors: Float32Array;
  d: number;
  log: Line[];
  /** The model the run ran on; absent in runs saved before melbo recorded it. */
  model?: ModelFingerprint;
}

/** Metadata keys melbo owns; `metadata` given by the caller may not override them. */
const KEYS = {
  algorithm: "melbo.algorithm",
  version: "melbo.version",
  settings: "melbo.settings",
  state: "melbo.state",
  model: "melbo.model",
  checksum: "melbo.checksum",
  logChecksum: "melbo.logChecksum",
} as const;

function sha256(...parts: (string | Uint8Array)[]): string {
  const h = createHash("sha256");
  for (const p of parts) {
    // Length-prefixed, so that moving bytes from one part to the next changes the sum.
    h.update(`${typeof p === "string" ? Buffer.byteLength(p) : p.byteLength}:`);
    h.update(p);
  }
  return h.digest("hex");
}

function vectorsChecksum(algorithm: string, settings: string, state: string, model: string, vectors: Float32Array): string {
  return sha256(algorithm, settings, state, model, new Uint8Array(vectors.buffer, vectors.byteOffset, vectors.byteLength));
}

export async function writeRunFiles<S, T, L extends { index: number }>(
  dir: string,
  algorithm: string,
  run: RunFiles<S, T, L>,
  metadata: Record<string, string> = {},
): Promise<void> {
  await mkdir(dir, { recursive: true });
  const logText = run.log.map((l) => JSON.stringify(l) + "\n").join("");
  await writeTextAtomic(join(dir, LOG_FILE), logText);
  const settings = JSON.stringify(run.settings), state = JSON.stringify(run.state);
  const model = run.model === undefined ? "" : JSON.stringify(run.model);
  await writeVectors(join(dir, VECTORS_FILE), run.vectors, run.vectors.length / run.d, run.d, {
    ...metadata,
    [KEYS.algorithm]: algorithm,
    [KEYS.version]: MELBO_VERSION,
    [KEYS.settings]: settings,
    [KEYS.state]: state,
    ...(model !== "" ? { [KEYS.model]: model } : {}),
    [KEYS.checksum]: vectorsChecksum(algorithm, settings, state, model, run.vectors),
    [KEYS.logChecksum]: sha256(logText),
  });
}

/**
 * The run saved in `dir`, or null when there is none. `committed(line, state)` says which log
 * lines belong to the saved vectors (lines written after them by a killed run are dropped).
 * Throws a MelboError naming the file for a run of another algorithm and for damaged files.
 */
export async function readRunFiles<S, T, L extends { index: number }>(
  dir: string,
  algorithm: string,
  committed: (line: L, state: T) => boolean,
): Promise<RunFiles<S, T, L> | null> {
  const file = join(dir, VECTORS_FILE);
  if (!existsSync(file)) return null;
  const set = await readVectors(file);
  const meta = set.metadata;
  if (meta[KEYS.algorithm] !== algorithm) {
    const what = meta[KEYS.algorithm] === undefined ? "not a melbo run" : `holds a ${meta[KEYS.algorithm]} run`;
    throw new MelboError(`${what}, not ${algorithm}: choose another --out`, { file });
  }
  const settingsText = meta[KEYS.settings] ?? "", stateText = meta[KEYS.state] ?? "", modelText = meta[KEYS.model] ?? "";
  const checksum = meta[KEYS.checksum];
  if (checksum !== undefined && checksum !== vectorsChecksum(algorithm, settingsText, stateText, modelText, set.data)) {
    throw new MelboError("is damaged: its vectors or metadata do not match the checksum saved with them; it was not used (start again with --force, or restore the folder)", { file });
  }
  // A resumed search builds its basis from these rows: one NaN would spread to every later vector.
  for (let i = 0; i < set.data.length; i++) {
    const x = set.data[i]!;
    if (!Number.isFinite(x)) {
      throw new MelboError(`vector ${Math.floor(i / set.d)} has the non-finite value ${x} at index ${i % set.d}: the run cannot be continued from it`, { file });
    }
  }
  let settings: S, state: T, model: ModelFingerprint | undefined;
  try {
    settings = JSON.parse(settingsText) as S;
    state = JSON.parse(stateText) as T;
    model = modelText === "" ? undefined : (JSON.parse(modelText) as ModelFingerprint);
  } catch {
    throw new MelboError(`its ${KEYS.settings} / ${KEYS.state} / ${KEYS.model} metadata is not valid JSON`, { file });
  }
  if (typeof settings !== "object" || settings === null || typeof state !== "object" || state === null) {
    throw new MelboError(`its ${KEYS.settings} / ${KEYS.state} metadata must be JSON objects`, { file });
  }

  const logFile = join(dir, LOG_FILE);
  const log: L[] = [];
  let kept = "";
  // A killed write cannot leave a half line (the log is replaced atomically), so a bad line is damage.
  for (const { line, text, value } of parseJsonLines(await readOptionalText(logFile, "log"), logFile, "log", " (start again with --force, or restore the folder)")) {
    const entry = value as L;
    if (typeof entry !== "object" || entry === null || typeof entry.index !== "number") {
      throw new MelboError(`line ${line} has no vector index: the log is damaged`, { file: logFile });
    }
    if (!committed(entry, state)) continue;
    log.push(entry);
    kept += text + "\n";
  }
  const logChecksum = meta[KEYS.logChecksum];
  if (logChecksum !== undefined && logChecksum !== sha256(kept)) {
    throw new MelboError(`does not match the checkpoint in ${VECTORS_FILE} (lines were changed or lost): the log is damaged; it was not used`, { file: logFile });
  }
  return { settings, state, vectors: set.data, d: set.d, log, ...(model !== undefined ? { model } : {}) };
}
