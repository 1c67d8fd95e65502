// Reads the folder `melbo report` is given: an eval folder (eval.json + generations.jsonl, written
// by `melbo eval`), an ortho run or a train run (vectors.safetensors + log.jsonl, optionally
// trace.jsonl). The kind is told from the files present; every problem is a MelboError naming
// the file (and the line, for JSON lines).

import { existsSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { MelboError, describeError } from "../errors.js";
import { EVAL_FILE, EVAL_FORMAT, GENERATIONS_FILE, type EvalEntry, type EvalFile, type GenerationLine } from "../eval/eval-file.js";
import { parseJsonLines } from "../io/json-lines.js";
import { readSafetensorsHeader, ALL_DTYPES } from "../model/safetensors.js";
import { readOrthoRun, ORTHO_ALGORITHM, type OrthoRunFiles } from "../search/ortho-files.js";
import type { OrthoSettings } from "../search/ortho.js";
import { VECTORS_FILE } from "../search/run-files.js";
import { TRACE_FILE } from "../search/trace-file.js";
import { readTrainRun, TRAIN_ALGORITHM, type TrainRunFiles } from "../search/train-files.js";
import type { TrainSettings } from "../search/train.js";


/** One line of trace.jsonl: a vector's loss (ortho: r) or objective (train) every `every` steps from step 0. */
export interface TraceLine {
  index: number;
  every: number;
  values: number[];
}

export type ReportSource =
  | { kind: "eval"; dir: string; eval: EvalFile; generations: GenerationLine[] }
  | { kind: "ortho"; dir: string; run: OrthoRunFiles<Partial<OrthoSettings>>; metadata: Record<string, string>; trace: TraceLine[] | null }
  | { kind: "train"; dir: string; run: TrainRunFiles<Partial<TrainSettings>>; metadata: Record<string, string>; trace: TraceLine[] | null };

export type ReportKind = ReportSource["kind"];

/** Reads `dir` as whichever of the three kinds its files say it is. */
export async function loadReportSource(dir: string): Promise<ReportSource> {
  const abs = resolve(dir);
  let isDir = false;
  try {
    isDir = (await stat(abs)).isDirectory();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") throw new MelboError("no such folder", { file: dir });
    throw new MelboError(`cannot read: ${describeError(e)}`, { file: dir });
  }
  if (!isDir) throw new MelboError("is not a folder: give the folder of a melbo eval, ortho or train run", { file: dir });

  if (existsSync(join(dir, EVAL_FILE))) return { kind: "eval", dir, ...(await loadEval(dir)) };
  const vectors = join(dir, VECTORS_FILE);
  if (existsSync(vectors)) {
    const header = await readSafetensorsHeader(vectors, { allowDtypes: ALL_DTYPES });
    const metadata = header.metadata;
    const algorithm = metadata["melbo.algorithm"];
    if (algorithm === ORTHO_ALGORITHM) {
      const run = await readOrthoRun<Partial<OrthoSettings>>(dir);
      if (!run) throw new MelboError("disappeared while it was read", { file: vectors });
      return { kind: "ortho", dir, run, metadata, trace: await loadTrace(dir, "relLoss") };
    }
    if (algorithm === TRAIN_ALGORITHM) {
      const run = await readTrainRun<Partial<TrainSettings>>(dir);
      if (!run) throw new MelboError("disappeared while it was read", { file: vectors });
      return { kind: "train", dir, run, metadata, trace: await loadTrace(dir, "objective") };
    }
    const what = algorithm === undefined ? "has no melbo.algorithm metadata" : `is from algorithm ${JSON.stringify(algorithm)}`;
    throw new MelboError(`${what}: not a melbo ortho or train run, so there is nothing to report`, { file: vectors });
  }
  throw new MelboError(
    `is not a melbo run folder: it holds neither ${EVAL_FILE} (written by melbo eval) nor ${VECTORS_FILE} (written by melbo ortho and melbo train)`,
    { file: dir },
  );
}

async function readText(file: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (e) {
    throw new MelboError(`cannot read: ${describeError(e)}`, { file });
  }
}

/** Parses JSON lines; a bad line is reported with its number. */
function jsonLines(text: string, file: string): { line: number; value: unknown }[] {
  return parseJsonLines(text, file, "file");
}

/** Type checks with messages that name the field. */
class Checker {
  constructor(
    private readonly file: string,
    private readonly where: string,
  ) {}

  fail(path: string, want: string, got: unknown): never {
    const shown = got === undefined ? "nothing" : JSON.stringify(got)?.slice(0, 60) ?? String(got);
    throw new MelboError(`${this.where}${path} should be ${want}, found ${shown}`, { file: this.file });
  }

  object(v: unknown, path: string): Record<string, unknown> {
    if (typeof v !== "object" || v === null || Array.isArray(v)) this.fail(path, "an object", v);
    return v as Record<string, unknown>;
  }

  array(v: unknown, path: string): unknown[] {
    if (!Array.isArray(v)) this.fail(path, "a list", v);
    return v;
  }

  /** A number; null is accepted where JSON had to drop a non-finite value (NaN, ±Infinity), when `nullable`. */
  number(v: unknown, path: string, nullable = false): number {
    if (typeof v === "number") return v;
    if (v === null && nullable) return NaN;
    return this.fail(path, "a number", v);
  }

  int(v: unknown, path: string, min = 0): number {
    if (!Number.isSafeInteger(v) || (v as number) < min) this.fail(path, min === 0 ? "a whole number ≥ 0" : `a whole number ≥ ${min}`, v);
    return v as number;
  }

  string(v: unknown, path: string): string {
    if (typeof v !== "string") this.fail(path, "a string", v);
    return v;
  }
}

async function loadEval(dir: string): Promise<{ eval: EvalFile; generations: GenerationLine[] }> {
  const file = join(dir, EVAL_FILE);
  let raw: unknown;
  try {
    raw = JSON.parse(await readText(file));
  } catch (e) {
    if (e instanceof MelboError) throw e;
    throw new MelboError(`is not valid JSON (${describeError(e)}): the file is damaged`, { file });
  }
  const c = new Checker(file, "");
  const o = c.object(raw, "the file");
  if (o["format"] !== EVAL_FORMAT) {
    throw new MelboError(`has format ${JSON.stringify(o["format"]) ?? "none"}, not ${EVAL_FORMAT}: not an eval file this melbo can read`, { file });
  }
  c.string(o["model"], "model");
  const vectors = c.object(o["vectors"], "vectors");
  c.string(vectors["file"], "vectors.file");
  c.string(vectors["kind"], "vectors.kind");
  if (o["reference"] !== "theta0" && o["reference"] !== "unsteered") c.fail("reference", '"theta0" or "unsteered"', o["reference"]);
  const prompts = c.array(o["prompts"], "prompts");
  prompts.forEach((p, i) => {
    const po = c.object(p, `prompts[${i}]`);
    c.string(po["text"], `prompts[${i}].text`);
    c.number(po["tokens"], `prompts[${i}].tokens`);
  });
  const settings = c.object(o["settings"], "settings");
  for (const key of ["rows", "scales", "sums"]) c.array(settings[key], `settings.${key}`);
  const entries = c.array(o["entries"], "entries");
  entries.forEach((e, i) => {
    const w = `entries[${i}]`;
    const eo = c.object(e, w);
    c.string(eo["id"], `${w}.id`);
    if (!["unsteered", "theta0", "vector", "sum", "mean"].includes(eo["kind"] as string)) c.fail(`${w}.kind`, "unsteered, theta0, vector, sum or mean", eo["kind"]);
    if (eo["row"] !== undefined && eo["row"] !== null) c.int(eo["row"], `${w}.row`);
    c.number(eo["scale"], `${w}.scale`);
    c.number(eo["norm"], `${w}.norm`, true);
    for (const key of ["r", "randomR"]) if (eo[key] !== null && eo[key] !== undefined) c.number(eo[key], `${w}.${key}`);
    for (const key of ["klToReference", "klFromReference", "greedyCodeScore", "sampleCodeScore"]) c.number(eo[key], `${w}.${key}`, true);
    if (eo["sampleCodeShare"] !== undefined) c.number(eo["sampleCodeShare"], `${w}.sampleCodeShare`, true);
    c.array(eo["prompts"], `${w}.prompts`).forEach((p, j) => {
      const po = c.object(p, `${w}.prompts[${j}]`);
      c.array(po["top"], `${w}.prompts[${j}].top`).forEach((t, k) => {
        const to = c.object(t, `${w}.prompts[${j}].top[${k}]`);
        c.string(to["text"], `${w}.prompts[${j}].top[${k}].text`);
        c.number(to["p"], `${w}.prompts[${j}].top[${k}].p`, true);
      });
    });
  });
  if (o["complete"] !== undefined && typeof o["complete"] !== "boolean") c.fail("complete", "true or false", o["complete"]);
  // Null until the eval is complete.
  if (o["cosine"] !== null) {
    const cosine = c.object(o["cosine"], "cosine");
    for (const key of ["pairs", "maxAbs", "meanAbs"]) c.number(cosine[key], `cosine.${key}`, true);
    const hist = c.object(cosine["histogram"], "cosine.histogram");
    const edges = c.array(hist["edges"], "cosine.histogram.edges").map((v, i) => c.number(v, `cosine.histogram.edges[${i}]`));
    const counts = c.array(hist["counts"], "cosine.histogram.counts").map((v, i) => c.number(v, `cosine.histogram.counts[${i}]`));
    if (counts.length > 0 && edges.length !== counts.length + 1) {
      throw new MelboError(`cosine.histogram has ${counts.length} counts and ${edges.length} edges (should be ${counts.length + 1})`, { file });
    }
  }
  const evalFile = o as unknown as EvalFile;
  evalFile.entries = (entries as EvalEntry[]).map(nullsToNaN);

  const gfile = join(dir, GENERATIONS_FILE);
  if (!existsSync(gfile)) throw new MelboError(`has ${EVAL_FILE} but no ${GENERATIONS_FILE}: the eval did not finish, or the file was moved`, { file: dir });
  const ids = new Set(evalFile.entries.map((e) => e.id));
  const generations: GenerationLine[] = [];
  for (const { line, value } of jsonLines(await readText(gfile), gfile)) {
    const g = new Checker(gfile, `line ${line}: `);
    const lo = g.object(value, "the line");
    const entry = g.string(lo["entry"], "entry");
    if (!ids.has(entry)) throw new MelboError(`line ${line}: entry ${JSON.stringify(entry)} is not an entry of ${EVAL_FILE}`, { file: gfile });
    const prompt = g.int(lo["prompt"], "prompt");
    if (prompt >= evalFile.prompts.length) throw new MelboError(`line ${line}: prompt ${prompt} does not exist (${EVAL_FILE} has ${evalFile.prompts.length})`, { file: gfile });
    if (lo["mode"] !== "greedy" && lo["mode"] !== "sample") g.fail("mode", '"greedy" or "sample"', lo["mode"]);
    if (lo["sample"] !== undefined) g.int(lo["sample"], "sample");
    g.string(lo["text"], "text");
    g.number(lo["codeScore"], "codeScore", true);
    if (lo["tokens"] !== undefined) g.number(lo["tokens"], "tokens");
    generations.push({ ...(lo as unknown as GenerationLine), codeScore: lo["codeScore"] === null ? NaN : (lo["codeScore"] as number) });
  }
  return { eval: evalFile, generations };
}

/** JSON writes NaN and ±Infinity as null: read the numeric fields back as NaN. */
function nullsToNaN(e: EvalEntry): EvalEntry {
  const n = (v: number | null | undefined): number => (typeof v === "number" ? v : NaN);
  return {
    ...e,
    norm: n(e.norm),
    klToReference: n(e.klToReference),
    klFromReference: n(e.klFromReference),
    greedyCodeScore: n(e.greedyCodeScore),
    sampleCodeScore: n(e.sampleCodeScore),
    sampleCodeShare: n(e.sampleCodeShare),
    prompts: e.prompts.map((p) => ({
      ...p,
      klToReference: n(p.klToReference),
      klFromReference: n(p.klFromReference),
      greedyCodeScore: n(p.greedyCodeScore),
      sampleCodeScore: n(p.sampleCodeScore),
      sampleCodeShare: n(p.sampleCodeShare),
      top: p.top.map((t) => ({ ...t, p: n(t.p) })),
    })),
  };
}

/** trace.jsonl of a run, or null when the run has none. `key`: relLoss (ortho) or objective (train). */
async function loadTrace(dir: string, key: "relLoss" | "objective"): Promise<TraceLine[] | null> {
  const file = join(dir, TRACE_FILE);
  if (!existsSync(file)) return null;
  const out: TraceLine[] = [];
  for (const { line, value } of jsonLines(await readText(file), file)) {
    const c = new Checker(file, `line ${line}: `);
    const o = c.object(value, "the line");
    const index = c.int(o["index"], "index");
    const every = c.int(o["every"], "every", 1);
    const values = c.array(o[key], key).map((v, i) => c.number(v, `${key}[${i}]`, true));
    out.push({ index, every, values });
  }
  return out;
}
