// `melbo eval`: what each vector of a file does (docs/eval.md). For every entry (the unsteered
// model, θ0 of an ortho run, every row at every scale, the sums and means of the first k rows)
// and every prompt: a greedy continuation with the next-token distribution at the first answer
// position (KL both ways against the reference P_0, top-10 tokens), sampled continuations, and
// their code scores; for ortho runs r at the target block beside random directions of the same
// norms; at the end, the pairwise |cos| audit.
//
// Entries run in chunks of `batch` (one generate call per prompt and mode); after each chunk
// generations.jsonl and then eval.json (the commit point) are replaced atomically, so a killed
// eval continues where it stopped. Every sampled row has its own seed (named by entry, prompt and
// sample) and chunk boundaries are saved, so a resumed eval writes what an uninterrupted one would.

import { createHash } from "node:crypto";
import { mkdir, readFile } from "node:fs/promises";
import { freemem } from "node:os";
import { join } from "node:path";
import { MelboError } from "../errors.js";
import { writeTextAtomic } from "../io/atomic.js";
import { parseJsonLines, readOptionalText } from "../io/json-lines.js";
import type { ModelFingerprint } from "../model/fingerprint.js";
import type { Model } from "../model/model.js";
import { norm } from "../search/basis.js";
import { orthoInputs } from "../search/ortho.js";
import { etaSeconds, type JobProgress } from "../search/progress.js";
import { checkSameModel, settingDifference } from "../search/resume-check.js";
import { rowSeed } from "../util/rng.js";
import { MELBO_VERSION } from "../version.js";
import { CODE_THRESHOLD, codeScore } from "./code-score.js";
import { klDivergence, logSoftmax, topTokens } from "./distribution.js";
import { EVAL_FILE, EVAL_FORMAT, GENERATIONS_FILE, type EntryKind, type EvalEntry, type EvalFile, type EvalSettings, type GenerationLine, type PromptResult, type VectorsKind } from "./eval-file.js";
import { randomBaseline } from "./ortho-report.js";

export { EVAL_FILE, GENERATIONS_FILE } from "./eval-file.js";
const TOP_K = 10;

export interface EvaluateOptions {
  /** The rows to evaluate, [n * d], and which rows of the file they are. */
  vectors: Float32Array;
  rows: number[];
  /** The vectors file (for eval.json) and its row count. */
  file: string;
  fileRows: number;
  kind: VectorsKind;
  /** Ortho runs: θ0 (row 0), the run's source and target blocks and prompt tokens; P_0 is then steered by θ0, and r is measured. */
  ortho?: { theta0: Float32Array; source: number; target: number; tokens: Int32Array };
  prompts: { text: string; tokens: Int32Array }[];
  /** Block whose output the vectors are added to. */
  at: number;
  scales?: number[]; // default [1]
  sums?: number[]; // default [] (k larger than the rows evaluated are skipped)
  maxNewTokens?: number; // default 50
  temperature?: number; // default 1
  samples?: number; // default 1
  seed?: number; // default 0
  /** Entries generated at once; default: sized to memory (defaultEvalBatch). */
  batch?: number;
  /** Folder for eval.json and generations.jsonl. */
  out?: string;
  /** Continue the eval saved in `out` (its settings, model and vectors must match). */
  resume?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: EvalProgress) => void;
}

/** Progress of an eval (search/progress.ts): `done` of `total` entries, and the one being generated. */
export interface EvalProgress extends JobProgress {
  entry: string;
}

/** One thing eval steers with: what it adds (null: nothing) and how it is named. */
interface EntrySpec {
  id: string;
  kind: EntryKind;
  row?: number;
  k?: number;
  scale: number;
  vector: Float32Array | null;
}

/** Entries a chunk of a batch this size can hold: the KV cache of prompt + new tokens, and a few [V] rows of logits, in a quarter of free memory. */
export function defaultEvalBatch(model: Model, promptTokens: number, maxNewTokens: number): number {
  const c = model.config;
  const headDim = c.hiddenSize / c.numHeads;
  const bytesPerRow = c.numLayers * 2 * (promptTokens + maxNewTokens) * c.numKvHeads * headDim * 4 + 4 * c.vocabSize * 4 + 8 * c.hiddenSize * (promptTokens + maxNewTokens) * 4;
  const budget = Math.min(4 * 2 ** 30, freemem() / 4);
  return Math.max(1, Math.min(64, Math.floor(budget / bytesPerRow)));
}

function sha256Floats(...parts: Float32Array[]): string {
  const h = createHash("sha256");
  for (const p of parts) h.update(new Uint8Array(p.buffer, p.byteOffset, p.byteLength));
  return h.digest("hex");
}

function entrySpecs(o: EvaluateOptions, d: number, scales: number[], sums: number[]): EntrySpec[] {
  const specs: EntrySpec[] = [{ id: "unsteered", kind: "unsteered", scale: 0, vector: null }];
  if (o.ortho) specs.push({ id: "theta0", kind: "theta0", row: 0, scale: 1, vector: o.ortho.theta0 });
  // Row 0 of an ortho run is θ0 itself: evaluated once, as the reference.
  const vectorRows = o.rows.map((row, i) => ({ row, i })).filter(({ row }) => !(o.ortho && row === 0));
  const rowData = (i: number) => o.vectors.subarray(i * d, (i + 1) * d);
  for (const { row, i } of vectorRows) {
    for (const scale of scales) {
      specs.push({ id: scale === 1 ? `row ${row}` : `row ${row} x${scale}`, kind: "vector", row, scale, vector: rowData(i) });
    }
  }
  for (const k of sums) {
    if (k > vectorRows.length) continue;
    const sum = new Float32Array(d);
    for (const { i } of vectorRows.slice(0, k)) {
      const v = rowData(i);
      for (let j = 0; j < d; j++) sum[j]! += v[j]!;
    }
    specs.push({ id: `sum ${k}`, kind: "sum", k, scale: 1, vector: sum });
    specs.push({ id: `mean ${k}`, kind: "mean", k, scale: 1, vector: sum.map((x) => x / k) });
  }
  return specs;
}

/** Pairwise |cos| of rows [n * d] in float64, with a histogram over decades. */
export function cosineAudit(data: Float32Array, n: number, d: number): NonNullable<EvalFile["cosine"]> {
  const edges = [0, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1];
  const counts = new Array<number>(edges.length - 1).fill(0);
  const unit: Float64Array[] = [];
  for (let r = 0; r < n; r++) {
    const v = Float64Array.from(data.subarray(r * d, (r + 1) * d));
    let len = 0;
    for (let j = 0; j < d; j++) len += v[j]! * v[j]!;
    len = Math.sqrt(len) || 1;
    unit.push(v.map((x) => x / len));
  }
  let pairs = 0, maxAbs = 0, sumAbs = 0;
  for (let a = 0; a < n; a++) {
    for (let b = a + 1; b < n; b++) {
      let c = 0;
      const ua = unit[a]!, ub = unit[b]!;
      for (let j = 0; j < d; j++) c += ua[j]! * ub[j]!;
      c = Math.min(1, Math.abs(c));
      pairs++;
      sumAbs += c;
      maxAbs = Math.max(maxAbs, c);
      let bin = 0;
      while (bin < counts.length - 1 && c >= edges[bin + 1]!) bin++;
      counts[bin]!++;
    }
  }
  return { pairs, maxAbs, meanAbs: pairs ? sumAbs / pairs : 0, histogram: { edges, counts } };
}

function mean(xs: number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN;
}

/** The eval saved in `out`, checked against what this one would compute; null when there is none. */
async function readSavedEval(out: string, now: EvalFile): Promise<{ saved: EvalFile; lines: GenerationLine[] } | null> {
  const file = join(out, EVAL_FILE);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new MelboError(`cannot read the saved eval: ${(e as Error).message}`, { file });
  }
  let saved: EvalFile;
  try {
    saved = JSON.parse(text) as EvalFile;
  } catch {
    throw new MelboError("is not JSON: the saved eval is damaged (start again with --force)", { file });
  }
  if (saved?.format !== EVAL_FORMAT || !Array.isArray(saved.entries) || typeof saved.settings !== "object") {
    throw new MelboError(`is not a melbo eval (format ${JSON.stringify(saved?.format)}, expected ${EVAL_FORMAT})`, { file });
  }
  checkSameModel(saved.modelFingerprint, now.modelFingerprint, out);
  const diff = settingDifference(now.settings, saved.settings, "batch");
  if (diff) throw new MelboError(`cannot resume: ${diff.key} differs (saved ${diff.saved}, now ${diff.now})`, { file });
  if (saved.vectors?.checksum !== now.vectors.checksum) throw new MelboError(`cannot resume: the vectors differ from the ones the eval was started with (${saved.vectors?.file})`, { file });
  const ids = new Set(saved.entries.map((e) => e.id));
  const lines: GenerationLine[] = [];
  const genFile = join(out, GENERATIONS_FILE);
  for (const { value } of parseJsonLines(await readOptionalText(genFile, "generations"), genFile, "generations", " (start again with --force)")) {
    const g = value as GenerationLine;
    if (ids.has(g?.entry)) lines.push(g); // lines past the committed eval.json are dropped
  }
  return { saved, lines };
}

/**
 * Evaluates the vectors (see the file comment) and returns eval.json's content; with `out`, writes
 * OUT/eval.json and OUT/generations.jsonl as it goes. `model` must hold every block (generation).
 */
export async function evaluate(model: Model, o: EvaluateOptions): Promise<EvalFile> {
  const d = model.hidden;
  const scales = o.scales ?? [1];
  const sums = [...new Set(o.sums ?? [])].sort((a, b) => a - b);
  const maxNewTokens = o.maxNewTokens ?? 50;
  const temperature = o.temperature ?? 1;
  const samples = o.samples ?? 1;
  const seed = o.seed ?? 0;
  if (o.vectors.length !== o.rows.length * d) throw new MelboError(`the vectors hold ${o.vectors.length} values, not ${o.rows.length} rows × ${d}`);
  if (o.prompts.length === 0) throw new MelboError("eval needs at least one prompt");
  if (scales.length === 0 || scales.some((s) => !Number.isFinite(s))) throw new MelboError(`scales must be finite numbers, got ${scales.join(", ")}`);
  if (sums.some((k) => !Number.isInteger(k) || k < 1)) throw new MelboError(`sums must be positive integers, got ${sums.join(", ")}`);
  if (!Number.isInteger(samples) || samples < 0) throw new MelboError(`samples must be a non-negative integer, got ${samples}`);
  if (!(temperature > 0)) throw new MelboError(`temperature must be > 0 for the sampled continuations, got ${temperature}`);
  const longest = Math.max(...o.prompts.map((p) => p.tokens.length));
  const batch = o.batch ?? defaultEvalBatch(model, longest, maxNewTokens);
  if (!Number.isInteger(batch) || batch < 1) throw new MelboError(`batch must be a positive integer, got ${batch}`);

  const specs = entrySpecs(o, d, scales, sums);
  const settings: EvalSettings = {
    rows: o.rows, scales, sums, at: o.at, target: o.ortho?.target ?? null, maxNewTokens, temperature, samples, seed, batch,
    promptTokens: o.prompts.map((p) => [...p.tokens]),
  };
  const fingerprint: ModelFingerprint = await model.fingerprint(model.config.numLayers - 1);
  const doc: EvalFile = {
    format: EVAL_FORMAT, melboVersion: MELBO_VERSION, complete: false, model: model.dir,
    vectors: { file: o.file, kind: o.kind, n: o.fileRows, d, checksum: sha256Floats(o.vectors, o.ortho?.theta0 ?? new Float32Array(0)) },
    modelFingerprint: fingerprint,
    reference: o.ortho ? "theta0" : "unsteered",
    prompts: o.prompts.map((p) => ({ text: p.text, tokens: p.tokens.length })),
    settings, entries: [], cosine: null, seconds: 0,
  };
  let lines: GenerationLine[] = [];
  if (o.out !== undefined) await mkdir(o.out, { recursive: true });
  if (o.resume) {
    if (o.out === undefined) throw new MelboError("resume needs an output folder");
    const saved = await readSavedEval(o.out, { ...doc, settings: { ...settings } });
    if (saved) {
      // The saved chunking, so that every chunk has the batch shape it had the first time.
      settings.batch = saved.saved.settings.batch;
      doc.entries = saved.saved.entries.slice(0, specs.length);
      doc.seconds = saved.saved.seconds ?? 0;
      lines = saved.lines;
      if (saved.saved.complete) return saved.saved;
    }
  }
  const started = performance.now() - doc.seconds * 1000;
  const save = async () => {
    doc.seconds = (performance.now() - started) / 1000;
    if (o.out === undefined) return;
    await writeTextAtomic(join(o.out, GENERATIONS_FILE), lines.map((l) => JSON.stringify(l) + "\n").join(""));
    await writeTextAtomic(join(o.out, EVAL_FILE), JSON.stringify(doc, null, 1) + "\n");
  };

  // r at the run's target (ortho runs steered where the run steered).
  const rInputs = o.ortho && o.ortho.source === o.at ? await orthoInputs(model, o.ortho.tokens, o.ortho.theta0, o.ortho.source, o.ortho.target) : undefined;

  // The reference distributions P_0, one per prompt: computed alone (batch 1), every time.
  const referenceSpec = specs[o.ortho ? 1 : 0]!;
  const referenceLogP: Float64Array[] = [];
  for (const p of o.prompts) {
    const g = await model.generate(p.tokens, { ...(referenceSpec.vector ? { vectors: referenceSpec.vector, at: o.at } : {}), maxNewTokens: 0, firstLogits: true });
    referenceLogP.push(logSoftmax(g.firstLogits!));
  }

  // Chunks: the reference entries one by one, then the rest `batch` at a time.
  const firstBatched = o.ortho ? 2 : 1;
  const chunks: EntrySpec[][] = specs.slice(0, firstBatched).map((s) => [s]);
  for (let i = firstBatched; i < specs.length; i += settings.batch) chunks.push(specs.slice(i, i + settings.batch));

  let done = 0;
  const resumedFrom = doc.entries.length;
  const runStarted = performance.now();
  const progress = (at: number, entry: string) => o.onProgress?.({ done: at, total: specs.length, etaSeconds: etaSeconds(at, specs.length, resumedFrom, runStarted), entry });
  for (const chunk of chunks) {
    if (done + chunk.length <= doc.entries.length) {
      done += chunk.length;
      continue;
    }
    o.signal?.throwIfAborted();
    const steered = chunk.every((s) => s.vector !== null);
    if (!steered && chunk.length !== 1) throw new Error("eval: an unsteered entry must be alone in its chunk");
    const vectors = steered ? new Float32Array(chunk.length * d) : undefined;
    if (vectors) chunk.forEach((s, i) => vectors.set(s.vector!, i * d));
    const steer = vectors ? { vectors, at: o.at, scales: chunk.map((s) => s.scale) } : {};
    const perPrompt: PromptResult[][] = chunk.map(() => []);
    for (const [pi, p] of o.prompts.entries()) {
      progress(done + (pi / o.prompts.length) * chunk.length, chunk[0]!.id);
      const greedy = await model.generate(p.tokens, { ...steer, maxNewTokens, firstLogits: true });
      const sampled: Int32Array[][] = [];
      for (let j = 0; j < samples; j++) {
        const rowSeeds = chunk.map((s) => rowSeed(seed, `${s.id}|prompt ${pi}|sample ${j}`));
        sampled.push((await model.generate(p.tokens, { ...steer, maxNewTokens, temperature, rowSeeds })).tokens);
        o.signal?.throwIfAborted();
      }
      const V = greedy.firstLogits!.length / chunk.length;
      chunk.forEach((s, b) => {
        const logP = logSoftmax(greedy.firstLogits!.subarray(b * V, (b + 1) * V));
        const greedyText = model.codec.decode(greedy.tokens[b]!);
        const greedyScore = codeScore(greedyText);
        lines.push({ entry: s.id, prompt: pi, mode: "greedy", text: greedyText, tokens: greedy.tokens[b]!.length, codeScore: greedyScore });
        const sampleScores: number[] = [];
        sampled.forEach((rows, j) => {
          const text = model.codec.decode(rows[b]!);
          const score = codeScore(text);
          sampleScores.push(score);
          lines.push({ entry: s.id, prompt: pi, mode: "sample", sample: j, text, tokens: rows[b]!.length, codeScore: score });
        });
        perPrompt[b]!.push({
          klToReference: klDivergence(logP, referenceLogP[pi]!),
          klFromReference: klDivergence(referenceLogP[pi]!, logP),
          top: topTokens(logP, TOP_K).map((t) => ({ id: t.id, text: model.codec.decode([t.id]), p: t.p })),
          greedyCodeScore: greedyScore,
          sampleCodeScore: samples ? mean(sampleScores) : NaN,
          sampleCodeShare: samples ? sampleScores.filter((x) => x >= CODE_THRESHOLD).length / samples : NaN,
        });
      });
    }
    // r (ortho runs) for every entry of the chunk, and random directions of the same norms for scale-1 vectors.
    let r: (number | null)[] = chunk.map(() => null), randomR: (number | null)[] = chunk.map(() => null);
    if (rInputs && o.ortho) {
      const thetas = new Float32Array(chunk.length * d);
      chunk.forEach((s, i) => s.vector && thetas.set(s.vector.map((x) => x * s.scale), i * d));
      const z = await model.sliceMean({ x: rInputs.x, thetas, source: o.ortho.source, target: o.ortho.target });
      r = chunk.map((_, i) => {
        let s2 = 0;
        for (let j = 0; j < d; j++) s2 += (z[i * d + j]! - rInputs.z0[j]!) ** 2;
        return Math.sqrt(s2) / rInputs.denominator;
      });
      const vectorIdx = chunk.map((s, i) => (s.kind === "vector" && s.scale === 1 ? i : -1)).filter((i) => i >= 0);
      if (vectorIdx.length > 0) {
        const norms = vectorIdx.map((i) => norm(chunk[i]!.vector!));
        const random = await randomBaseline(model, { ...rInputs, theta0: o.ortho.theta0, norms, source: o.ortho.source, target: o.ortho.target, seed: rowSeed(seed, `random-baseline ${chunk[0]!.id}`) });
        vectorIdx.forEach((i, j) => (randomR[i] = random[j]!));
      }
    }
    chunk.forEach((s, i) => {
      const prompts = perPrompt[i]!;
      const entry: EvalEntry = {
        id: s.id, kind: s.kind, ...(s.row !== undefined ? { row: s.row } : {}), ...(s.k !== undefined ? { k: s.k } : {}),
        scale: s.scale, norm: s.vector ? Math.abs(s.scale) * norm(s.vector) : 0, r: r[i]!, randomR: randomR[i]!,
        klToReference: mean(prompts.map((p) => p.klToReference)), klFromReference: mean(prompts.map((p) => p.klFromReference)),
        greedyCodeScore: mean(prompts.map((p) => p.greedyCodeScore)), sampleCodeScore: mean(prompts.map((p) => p.sampleCodeScore)),
        sampleCodeShare: mean(prompts.map((p) => p.sampleCodeShare)),
        prompts,
      };
      doc.entries.push(entry);
    });
    done += chunk.length;
    progress(done, chunk[chunk.length - 1]!.id);
    await save();
  }

  const audited = o.ortho && !o.rows.includes(0) ? concatRows(o.ortho.theta0, o.vectors) : o.vectors;
  doc.cosine = cosineAudit(audited, audited.length / d, d);
  doc.complete = true;
  await save();
  return doc;
}

function concatRows(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}
