// What a job's run folder says about it: nothing yet, partly done (and how far), or complete, with
// the numbers the batch summary shows. The run files are the truth (they are what --resume
// continues from), so the batch keeps no second copy of a job's progress that could disagree.

import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describeError } from "../errors.js";
import { EVAL_FILE } from "../eval/eval.js";
import type { EvalFile } from "../eval/eval-file.js";
import { readOrthoRun } from "../search/ortho-files.js";
import { readTrainRun } from "../search/train-files.js";
import { lowerMedian } from "../util/median.js";
import { defaultOf } from "../cli/command.js";
import { COMMAND_OPTIONS, type Job } from "./job-file.js";

export interface RunState {
  /** none: no run in the folder; partial: a run to continue; complete; damaged: the files cannot be used (see error). */
  run: "none" | "partial" | "complete" | "damaged";
  /** Vectors (train, ortho) or entries (eval) done, and how many the job asks for (eval: null until complete). */
  done: number;
  total: number | null;
  unit: "vectors" | "entries";
  /** ortho: relative losses r of the vectors found; eval: r of the vector entries (ortho runs). */
  r: number[];
  /** train: F of each vector. */
  objective: number[];
  /** The run's own stop reason (ortho), when it stopped. */
  stopReason?: string;
  error?: string;
}

function countSetting(job: Job): number {
  const v = job.settings["count"];
  return typeof v === "string" ? Number(v) : defaultOf(COMMAND_OPTIONS[job.command], "count");
}

/** Reads the job's run folder; never throws for a bad folder (the state says "damaged"). */
export async function readRunState(job: Job): Promise<RunState> {
  const empty = (unit: RunState["unit"], total: number | null): RunState => ({ run: "none", done: 0, total, unit, r: [], objective: [] });
  try {
    if (job.command === "train") {
      const count = countSetting(job);
      const run = await readTrainRun(job.out);
      if (!run) return empty("vectors", count);
      return { ...empty("vectors", count), run: run.state.rows >= count ? "complete" : "partial", done: run.state.rows, objective: run.log.map((l) => l.objective) };
    }
    if (job.command === "ortho") {
      const count = countSetting(job);
      const run = await readOrthoRun(job.out);
      if (!run) return empty("vectors", count);
      // A run stops at its count, or earlier by its own rules (norm, dimension, vanished): both are
      // complete, unless the job now asks for more vectors than a count-stopped run has.
      const reason = run.state.stopReason;
      const complete = reason !== null && (reason !== "count" || run.state.found >= count);
      return {
        ...empty("vectors", count), run: complete ? "complete" : "partial", done: run.state.found,
        r: run.log.map((l) => l.relLoss), ...(reason !== null ? { stopReason: reason } : {}),
      };
    }
    const file = join(job.out, EVAL_FILE);
    if (!existsSync(file)) return empty("entries", null);
    const doc = JSON.parse(await readFile(file, "utf8")) as EvalFile;
    if (!Array.isArray(doc.entries)) throw new Error(`${file}: has no entries`);
    const r = doc.entries.filter((e) => e.kind === "vector" && typeof e.r === "number").map((e) => e.r as number);
    return { ...empty("entries", doc.complete ? doc.entries.length : null), run: doc.complete ? "complete" : "partial", done: doc.entries.length, r };
  } catch (e) {
    return { run: "damaged", done: 0, total: null, unit: job.command === "eval" ? "entries" : "vectors", r: [], objective: [], error: describeError(e) };
  }
}

/** The numbers of the summary: r < 1 counts and the median r (NaN → null when there is none). */
export function rStats(r: number[]): { below1: number; median: number | null; best: number | null } {
  if (r.length === 0) return { below1: 0, median: null, best: null };
  return { below1: r.filter((x) => x < 1).length, median: lowerMedian(r), best: Math.min(...r) };
}
