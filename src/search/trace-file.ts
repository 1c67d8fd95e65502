// OUT/trace.jsonl of a search run (`--trace K`): one line per vector with its loss every K steps,
// for the report's curves: r (relLoss) for MELBO-ortho, the objective F for MELBO training. Written atomically before vectors.safetensors
// (the commit point), so that on resume the lines past the committed rows are dropped, like the log's.

import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { MelboError } from "../errors.js";
import { writeTextAtomic } from "../io/atomic.js";
import { parseJsonLines, readOptionalText } from "../io/json-lines.js";

export const TRACE_FILE = "trace.jsonl";

export interface TraceLine {
  /** Row of vectors.safetensors. */
  index: number;
  /** Steps between two points: point j is the value at the start of step 1 + j·every. */
  every: number;
  /** MELBO-ortho: r = ‖z(θ) − z0‖ / ‖z0 − z(0)‖. */
  relLoss?: number[];
  /** MELBO training: the objective F. */
  objective?: number[];
}

export async function writeTrace(dir: string, lines: readonly TraceLine[]): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeTextAtomic(join(dir, TRACE_FILE), lines.map((l) => JSON.stringify(l) + "\n").join(""));
}

/** The trace lines saved in `dir` whose row is committed (`keep`); [] when there is no trace. */
export async function readTrace(dir: string, keep: (index: number) => boolean): Promise<TraceLine[]> {
  const file = join(dir, TRACE_FILE);
  const lines: TraceLine[] = [];
  for (const { line, value } of parseJsonLines(await readOptionalText(file, "trace"), file, "trace")) {
    const entry = value as TraceLine;
    if (typeof entry !== "object" || entry === null || !Number.isInteger(entry.index) || !Number.isInteger(entry.every) || !(Array.isArray(entry.relLoss) || Array.isArray(entry.objective))) {
      throw new MelboError(`line ${line} is not a trace line ({"index", "every", "relLoss" or "objective": […]})`, { file });
    }
    if (keep(entry.index)) lines.push(entry);
  }
  return lines;
}
