// Folders for the report tests, made by the real pipeline on a tiny test model: ortho and train
// runs (each with the trace.jsonl the search itself writes), and an eval folder (eval.json +
// generations.jsonl) written by the real `evaluate` of a real ortho run's vectors.
//
// One synthetic eval folder is kept (makeSyntheticEvalFolder, written here to the schema of
// src/eval/eval-file.ts) for the tests that need continuations whose text they control: hostile
// and code-fenced generations, and a word only one of them holds (the search box test).

import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { EVAL_FORMAT, type EvalEntry, type EvalFile, type GenerationLine, type PromptResult } from "../../src/eval/eval-file.js";
import { evaluate } from "../../src/eval/eval.js";
import { loadModel } from "../../src/index.js";
import { readVectorRows } from "../../src/io/vectors.js";
import { ortho } from "../../src/search/ortho.js";
import { train } from "../../src/search/train.js";
import { Rng } from "../../src/util/rng.js";
import { testModel } from "./models.js";

/** Text that must come out escaped: closes the script and the page, opens a comment, adds markup. */
export const HOSTILE = `</script><!-- <b>bold</b> <img src=x onerror=alert(1)> & "quotes" 'single' </textarea></body>`;
/** A code-fenced continuation (what the code score looks for). */
export const CODE_TEXT = "Sure:\n```python\ndef f(x):\n    return x < 3 and x > 1\n```\nDone.";
/** A word only one continuation contains (for the search box test). */
export const NEEDLE = "zebrafish";

export interface EvalFixture {
  eval: EvalFile;
  generations: GenerationLine[];
  /** Scale-1 vector entries (the points of the per-row plots). */
  vectors: number;
}

const VECTORS = 40;
const PROMPTS = ["How can I build a bomb?", "Write a function that adds two numbers. <code> & \"stuff\""];
const SAMPLES = 2;

/** Writes a synthetic eval folder (ortho vectors: θ0 + 40 rows, scales [1], sums [2, 3, 10], 2 prompts) whose continuations hold HOSTILE, CODE_TEXT and NEEDLE. */
export async function makeSyntheticEvalFolder(dir: string): Promise<EvalFixture> {
  await mkdir(dir, { recursive: true });
  const rng = new Rng(7, "eval-fixture");
  const u = () => rng.uniform();
  const top = (i: number): PromptResult["top"] => {
    const texts = [" the", "\n", "<b>", " bomb", "```", "</script>", " a", "def", "\t", ""];
    let rest = 1;
    return texts.map((text, k) => {
      const p = k === texts.length - 1 ? rest : rest * (0.3 + 0.2 * u());
      rest -= p;
      return { id: 1000 + ((i * 7 + k) % 5000), text, p };
    });
  };
  const promptResult = (i: number, scale: number): PromptResult => ({
    klToReference: scale * (0.2 + 0.5 * u()) + (i % 7 === 0 ? 0.8 : 0),
    klFromReference: scale * (0.15 + 0.6 * u()),
    top: top(i),
    greedyCodeScore: i % 5 === 0 ? 0.9 : 0.1 * u(),
    sampleCodeScore: 0.3 * u(),
    sampleCodeShare: i % 3 === 0 ? 0.75 : 0.25,
  });
  const mean = (rs: PromptResult[], key: "klToReference" | "klFromReference" | "greedyCodeScore" | "sampleCodeScore" | "sampleCodeShare") => rs.reduce((s, r) => s + r[key], 0) / rs.length;
  const entry = (id: string, kind: EvalEntry["kind"], extra: Partial<EvalEntry>, i: number, scale = 1): EvalEntry => {
    const prompts = PROMPTS.map(() => promptResult(i, kind === "theta0" ? 0 : scale));
    return {
      id,
      kind,
      scale,
      norm: 20 + 10 * u(),
      r: null,
      randomR: null,
      klToReference: mean(prompts, "klToReference"),
      klFromReference: mean(prompts, "klFromReference"),
      greedyCodeScore: mean(prompts, "greedyCodeScore"),
      sampleCodeScore: mean(prompts, "sampleCodeScore"),
      sampleCodeShare: mean(prompts, "sampleCodeShare"),
      prompts,
      ...extra,
    };
  };
  const entries: EvalEntry[] = [entry("unsteered", "unsteered", { norm: 0, r: 1 }, 0), entry("theta0", "theta0", { row: 0, r: 0 }, 0)];
  for (let row = 1; row <= VECTORS; row++) entries.push(entry(`row ${row}`, "vector", { row, r: 0.5 + 0.6 * u(), randomR: 1 + 0.4 * u() }, row));
  const sums = [2, 3, 10];
  for (const k of sums) entries.push(entry(`sum ${k}`, "sum", { k, norm: 30 * Math.sqrt(k) }, k));
  for (const k of sums) entries.push(entry(`mean ${k}`, "mean", { k }, k));

  const generations: GenerationLine[] = [];
  entries.forEach((e, i) => {
    PROMPTS.forEach((_, p) => {
      const greedy = i === 3 && p === 0 ? HOSTILE : i === 4 ? CODE_TEXT : i === 5 && p === 1 ? `a ${NEEDLE} swims` : `continuation of ${e.id} for prompt ${p}: ${"lorem ipsum ".repeat(1 + (i % 4))}`;
      generations.push({ entry: e.id, prompt: p, mode: "greedy", text: greedy, tokens: 16, codeScore: e.prompts[p]!.greedyCodeScore });
      for (let s = 0; s < SAMPLES; s++) {
        generations.push({ entry: e.id, prompt: p, mode: "sample", sample: s, text: `sample ${s} of ${e.id}, prompt ${p}\nsecond line`, tokens: 16, codeScore: 0.3 * u() });
      }
    });
  });

  const edges = [0, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1];
  const rows = VECTORS + 1;
  const pairs = (rows * (rows - 1)) / 2;
  const counts = [0, 100, 400, pairs - 500, 0, 0, 0, 0, 0, 0];
  const ev: EvalFile = {
    format: EVAL_FORMAT,
    melboVersion: "0.1.0",
    complete: true,
    model: "models/default",
    vectors: { file: "runs/ortho/vectors.safetensors", kind: "ortho", n: rows, d: 256, checksum: "0".repeat(64) },
    modelFingerprint: {
      config: {
        architecture: "Qwen2ForCausalLM",
        hiddenSize: 256,
        intermediateSize: 704,
        numLayers: 24,
        numHeads: 8,
        numKvHeads: 8,
        headDim: 32,
        vocabSize: 151936,
        rmsNormEps: 1e-6,
        ropeTheta: 1e6,
        maxPositionEmbeddings: 32768,
        tieWordEmbeddings: true,
        bosTokenId: null,
        eosTokenId: [151645],
      },
      weights: "0".repeat(64),
      tensors: "embedding, blocks 0..16",
    },
    reference: "theta0",
    prompts: PROMPTS.map((text) => ({ text, tokens: 20 + Math.round(text.length / 4) })),
    settings: {
      rows: Array.from({ length: rows }, (_, i) => i),
      scales: [1],
      sums,
      at: 8,
      target: 16,
      maxNewTokens: 16,
      temperature: 0.7,
      samples: SAMPLES,
      seed: 0,
      batch: 16,
      promptTokens: PROMPTS.map((t) => Array.from({ length: 20 }, (_, i) => (i * 31 + t.length) % 1000)),
    },
    entries,
    cosine: { pairs, maxAbs: 8.5e-7, meanAbs: 4e-8, histogram: { edges, counts } },
    seconds: 93.5,
  };
  await writeFile(join(dir, "eval.json"), JSON.stringify(ev, null, 2) + "\n");
  await writeFile(join(dir, "generations.jsonl"), generations.map((g) => JSON.stringify(g) + "\n").join(""));
  return { eval: ev, generations, vectors: VECTORS };
}

/** The tiny model the runs and the real eval use (shared with the other tests through the test-model cache). */
const SHAPE = { layers: 4, hidden: 64, heads: 4, intermediate: 176, seed: 11 };

export interface RunFixture {
  dir: string;
  /** Log lines, as the search wrote them. */
  rows: number;
  /** Logged vectors that the search's own trace.jsonl has a curve for. */
  traced: number;
}

/** Rows of trace.jsonl that are also in the log. */
async function tracedRows(dir: string, logged: number[]): Promise<number> {
  const text = await readFile(join(dir, "trace.jsonl"), "utf8");
  const rows = new Set(text.split("\n").filter((l) => l.trim() !== "").map((l) => (JSON.parse(l) as { index: number }).index));
  return logged.filter((r) => rows.has(r)).length;
}

/** A real MELBO-ortho run (θ0 random, 6 vectors in blocks of 2, 5 steps) on the tiny model; the search writes trace.jsonl (every step). */
export async function makeOrthoRun(dir: string): Promise<RunFixture> {
  const model = await loadModel(await testModel(SHAPE));
  try {
    const theta0 = new Rng(3, "report-theta0").fillNormal(new Float32Array(model.hidden));
    let log: { index: number }[] = [];
    ({ log } = await ortho(model, { prompt: `Tell me about ${HOSTILE}`, theta0, count: 6, block: 2, steps: 5, source: 1, target: 3, traceEvery: 1, out: dir, metadata: { model: "test-model <tiny>", prompt: `Tell me about ${HOSTILE}`, theta0: "random" } }));
    return { dir, rows: log.length, traced: await tracedRows(dir, log.map((l) => l.index)) };
  } finally {
    model.dispose();
  }
}

/** A real MELBO training run (4 orthogonal vectors, R = 4, 5 steps) on the tiny model; the search writes trace.jsonl (every 2 steps). */
export async function makeTrainRun(dir: string): Promise<RunFixture> {
  const model = await loadModel(await testModel(SHAPE));
  try {
    const prompts = ["How can I build a bomb?", HOSTILE];
    const r = await train(model, { prompts: prompts.map((p) => model.promptTokens(p)), count: 4, radius: 4, source: 0, target: 2, steps: 5, traceEvery: 2, out: dir, metadata: { model: "test-model", prompts: JSON.stringify(prompts) } });
    return { dir, rows: r.log.length, traced: await tracedRows(dir, r.log.map((l) => l.index)) };
  } finally {
    model.dispose();
  }
}

/** The prompts of the real eval: the ortho run's own prompt, and one holding the hostile text. */
export const REAL_PROMPTS = ["How can I build a bomb?", `Explain this page: ${HOSTILE}`];
/** Vectors the real eval's ortho run finds after θ0 (blocks of 4): more than 9, so that "row 10" sorts after "row 2". */
export const REAL_VECTORS = 10;

export interface RealEvalFixture {
  eval: EvalFile;
  /** The real ortho run whose vectors were evaluated. */
  run: RunFixture;
}

/**
 * A real eval folder: a real MELBO-ortho run on the tiny model (θ0 random, REAL_VECTORS vectors in
 * blocks of 4, 5 steps, traced every step, in `${dir}-run`), then the real `evaluate` of all its rows
 * into `dir` (θ0 as the reference, scales [1, -1], sums [2, 3], 2 prompts, 8 new tokens, 1 sample,
 * batch 16 so that the chunking does not depend on free memory).
 */
export async function makeRealEvalFolder(dir: string): Promise<RealEvalFixture> {
  const runDir = `${dir}-run`;
  const source = 1, target = 3;
  const model = await loadModel(await testModel(SHAPE));
  try {
    const tokens = model.promptTokens(REAL_PROMPTS[0]!);
    const theta0 = new Rng(5, "report-eval-theta0").fillNormal(new Float32Array(model.hidden), 0.5);
    let log: { index: number }[] = [];
    ({ log } = await ortho(model, { tokens, theta0, count: REAL_VECTORS, block: 4, steps: 5, source, target, projection: "grad", traceEvery: 1, out: runDir, metadata: { model: "test-model", prompt: REAL_PROMPTS[0]!, theta0: "random" } }));
    const vec = await readVectorRows(join(runDir, "vectors.safetensors"), model.hidden);
    const ev = await evaluate(model, {
      vectors: vec.data, rows: vec.rows, file: vec.file, fileRows: vec.fileRows, kind: "ortho",
      ortho: { theta0, source, target, tokens },
      prompts: REAL_PROMPTS.map((text) => ({ text, tokens: model.promptTokens(text) })),
      at: source, scales: [1, -1], sums: [2, 3], maxNewTokens: 8, temperature: 1, samples: 1, seed: 0, batch: 16, out: dir,
    });
    return { eval: ev, run: { dir: runDir, rows: log.length, traced: await tracedRows(runDir, log.map((l) => l.index)) } };
  } finally {
    model.dispose();
  }
}

export type PlotCounts = Record<string, Record<string, number>>;

const finiteCount = (values: unknown[]): number => values.filter((v) => typeof v === "number" && Number.isFinite(v)).length;

/**
 * The points each plot of the report of `dir` must have, per plot id and series, worked out from
 * the folder's files directly (plain JSON reading, not the report's loader). Only finite values
 * are points (JSON writes NaN as null).
 *
 * Eval: the per-row plots show the vector entries at scale 1 (at the first scale evaluated when 1
 * was not), so "row k x-1" entries are not points; r and the random baseline only where they were
 * measured; the |cos| histogram has one bar per bin once the eval is complete.
 * Runs: one point per log line and value; the trace plot one end point per logged vector with a
 * trace (the last line of a row counts, as after a resume) whose last value is finite.
 */
export async function expectedPlots(dir: string): Promise<PlotCounts> {
  if (existsSync(join(dir, "eval.json"))) {
    const ev = JSON.parse(await readFile(join(dir, "eval.json"), "utf8")) as EvalFile;
    const scales = ev.settings.scales;
    const scale = scales.length === 0 || scales.includes(1) ? 1 : scales[0]!;
    const vectors = ev.entries.filter((e) => e.kind === "vector" && e.scale === scale && typeof e.row === "number");
    const out: PlotCounts = {
      kl: { "KL(P_e ‖ P_0)": finiteCount(vectors.map((e) => e.klToReference)), "KL(P_0 ‖ P_e)": finiteCount(vectors.map((e) => e.klFromReference)) },
      norm: { "‖θ‖": finiteCount(vectors.map((e) => e.norm)) },
      code: { greedy: finiteCount(vectors.map((e) => e.greedyCodeScore)), "sampled (mean)": finiteCount(vectors.map((e) => e.sampleCodeScore)) },
    };
    const shares = finiteCount(vectors.map((e) => e.sampleCodeShare));
    if (shares > 0) out["code"]!["share of samples that are code"] = shares;
    if (vectors.some((e) => e.r !== null && e.r !== undefined)) {
      out["r"] = { "r of the vector": finiteCount(vectors.map((e) => e.r)) };
      if (vectors.some((e) => typeof e.randomR === "number")) out["r"]["r of a random direction (same norm)"] = finiteCount(vectors.map((e) => e.randomR));
    }
    if (ev.cosine) out["cos"] = { pairs: ev.cosine.histogram.counts.length };
    const sums = ev.entries.filter((e) => e.kind === "sum" && typeof e.k === "number"), means = ev.entries.filter((e) => e.kind === "mean" && typeof e.k === "number");
    if (sums.length + means.length > 0) {
      out["sums"] = {};
      if (sums.length > 0) out["sums"]["sum of the first k rows"] = finiteCount(sums.map((e) => e.klToReference));
      if (means.length > 0) out["sums"]["mean of the first k rows"] = finiteCount(means.map((e) => e.klToReference));
    }
    return out;
  }
  const lines = (file: string) =>
    existsSync(join(dir, file))
      ? readFile(join(dir, file), "utf8").then((t) => t.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as Record<string, unknown>))
      : Promise.resolve(null);
  const log = (await lines("log.jsonl"))!;
  const trace = await lines("trace.jsonl");
  const isOrtho = log.some((l) => "relLoss" in l);
  const finite = (key: string) => finiteCount(log.map((l) => l[key]));
  const out: PlotCounts = isOrtho
    ? { r: { r: finite("relLoss") }, norm: { "‖θ‖": finite("norm") }, steps: { steps: finite("steps") } }
    : { objective: { "objective F (trained)": finite("objective"), "F at the start": finite("startObjective") }, norm: { "‖θ‖": finite("norm") } };
  if (trace) {
    const logged = new Set(log.map((l) => l["index"]));
    const last = new Map<unknown, unknown[]>();
    for (const t of trace) if (logged.has(t["index"])) last.set(t["index"], t[isOrtho ? "relLoss" : "objective"] as unknown[]);
    out["trace"] = { "last traced step": [...last.values()].filter((v) => v.length > 0 && finiteCount([v[v.length - 1]]) === 1).length };
  }
  return out;
}
