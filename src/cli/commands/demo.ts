// `melbo demo`: the whole pipeline on the demo chat model (models/chat, trained here: it answers
// coding requests in Python and other questions in prose; docs/demo-model.md). MELBO finds
// candidate steering vectors without labels; eval samples each candidate's answers, and the one
// that most often answers in code becomes θ0 (the original work's author picked its "write code"
// vector by reading the answers: the code score does that reading here); MELBO-ortho copies θ0
// into many orthogonal vectors, eval counts how many still turn the answer into code, and report
// draws it all in one HTML page. Short settings, so that it ends in minutes on 2 cores.

import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { MelboError } from "../../errors.js";
import { prepareOutputFolder } from "../../io/output-folder.js";
import { checkDevice, loadModel, type Model } from "../../model/model.js";
import { evaluate, type EvaluateOptions } from "../../eval/eval.js";
import type { EvalEntry, EvalFile, GenerationLine } from "../../eval/eval-file.js";
import { CODE_THRESHOLD, codeShares } from "../../eval/code-score.js";
import { readVectorRows } from "../../io/vectors.js";
import { loadReportSource } from "../../report/load.js";
import { writeReport } from "../../report/report.js";
import { parsePositions } from "../../search/positions.js";
import { train } from "../../search/train.js";
import { lowerMedian } from "../../util/median.js";
import { flag, int, num, oneOf, str, type Values } from "../args.js";
import { defaultChoice, defaultOf, defaultString, modelOptions, type Command, type OptionTable } from "../command.js";
import { ProgressBar, formatSeconds } from "../progress-bar.js";
import { abortOnSignals, runOrthoWithProgress } from "./ortho.js";
import { readDemoSettings } from "./demo-settings.js";

const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..");
/** The demo chat model, committed in the repository (not in the npm package: 14 MB); scripts/demo-model/ trains it again. */
export const CHAT_MODEL_DIR = join(packageRoot, "models", "chat");
/** The random-weight default model written by setup, for tests and benchmarks. */
export const DEFAULT_MODEL_DIR = join(packageRoot, "models", "default");

/** `base`, or `base-2`, `base-3`, … : the first name that does not exist yet. */
function freeFolderName(base: string): string {
  if (!existsSync(base)) return base;
  for (let i = 2; ; i++) if (!existsSync(`${base}-${i}`)) return `${base}-${i}`;
}

const FROM_MODEL = "the model's melbo-demo.json";
const demoOptions = {
  out: { type: "string", value: "DIR", default: "melbo-demo", defaultText: "melbo-demo, or melbo-demo-2, … if taken", help: "folder for the runs melbo/ and ortho/, the evals and report.html" },
  force: { type: "boolean", help: "replace the files melbo writes in a non-empty --out" },
  candidates: { type: "string", value: "N", defaultText: FROM_MODEL, help: "MELBO: candidate vectors trained" },
  radius: { type: "string", value: "R", defaultText: FROM_MODEL, help: "MELBO: norm of the candidates" },
  "train-steps": { type: "string", value: "N", defaultText: FROM_MODEL, help: "MELBO: Adam steps per candidate" },
  count: { type: "string", value: "N", default: 32, help: "MELBO-ortho: vectors to find after θ0" },
  block: { type: "string", value: "B", default: 16, help: "MELBO-ortho: vectors optimised at once" },
  steps: { type: "string", value: "N", default: 300, help: "MELBO-ortho: Adam steps per block" },
  projection: { type: "string", value: "post|grad", default: "grad", help: "MELBO-ortho: post projects θ after each step; grad the gradient too" },
  samples: { type: "string", value: "N", default: 8, help: "eval: answers sampled at T = 1 per vector (code share)" },
  "new-tokens": { type: "string", value: "N", default: 32, help: "eval: tokens per answer" },
  model: { ...modelOptions.model, required: false, defaultText: "models/chat, the demo chat model" },
  device: modelOptions.device,
} satisfies OptionTable;
const byDefault = (key: keyof typeof demoOptions): number => defaultOf(demoOptions, key);
const PROJECTIONS = ["post", "grad"] as const;

/** One line of an answer for the terminal: quoted, newlines shown as ⏎, at most `width` characters. */
function oneLine(text: string, width = 72): string {
  const flat = text.replace(/\n/g, "⏎");
  return JSON.stringify(flat.length > width ? `${flat.slice(0, width - 1)}…` : flat);
}

function greedyText(doc: { generations: GenerationLine[] }, id: string): string {
  return doc.generations.find((g) => g.entry === id && g.mode === "greedy")?.text ?? "";
}

/** The candidate whose sampled answers are code most often (ties: the higher greedy code score, then the lower row). */
function mostCodeLike(vectors: EvalEntry[]): EvalEntry {
  return [...vectors].sort((a, b) => b.sampleCodeShare - a.sampleCodeShare || b.greedyCodeScore - a.greedyCodeScore || a.row! - b.row!)[0]!;
}

const shareText = (e: EvalEntry, samples: number): string => `${Math.round(e.sampleCodeShare * samples)}/${samples} sampled answers in code`;

export const demoCommand: Command = {
  name: "demo",
  summary: "MELBO, then MELBO-ortho of its code vector, eval and report, on the demo chat model (models/chat)",
  options: demoOptions,
  notes: [
    "Prompt, blocks and MELBO settings come from the model's melbo-demo.json; a model without one gets the original",
    "work's (steer at block 8, match at 16). θ0 is the MELBO candidate whose sampled answers are code most often.",
  ],
  async run(v: Values) {
    const dir = resolve(str(v, "model") ?? CHAT_MODEL_DIR);
    if (!existsSync(join(dir, "config.json"))) {
      throw new MelboError(dir === CHAT_MODEL_DIR ? "the demo chat model is missing: it is in melbo's repository (models/chat, 14 MB), not in the npm package; run the demo from a checkout, or pass --model DIR" : "no config.json: not a model folder", { file: dir });
    }
    const { settings, file: settingsFile } = await readDemoSettings(dir);
    const device = checkDevice(str(v, "device") ?? defaultString(demoOptions, "device"));
    // The default folder never replaces an earlier demo: melbo-demo, melbo-demo-2, …
    const out = resolve(str(v, "out") ?? freeFolderName(defaultString(demoOptions, "out")));
    const force = flag(v, "force");
    for (const d of [out, join(out, "melbo"), join(out, "ortho")]) await prepareOutputFolder(d, { kind: "run", flag: "--out", force });
    for (const d of [join(out, "melbo-eval"), join(out, "eval")]) await prepareOutputFolder(d, { kind: "eval", flag: "--out", force });
    const samples = int(v, "samples", byDefault("samples"), 1);
    const maxNewTokens = int(v, "new-tokens", byDefault("new-tokens"), 1);
    const started = Date.now();
    const model = await loadModel(dir, { device });
    const abort = abortOnSignals();
    try {
      const { prompt, source, target } = settings;
      const tokens = model.promptTokens(prompt);
      process.stdout.write(
        `model ${dir}: ${model.config.numLayers} blocks, d ${model.hidden}; prompt "${prompt}" (${tokens.length} tokens); ` +
          `steer at block ${source}, match at block ${target}${settingsFile ? ` (${settingsFile})` : ""}\n`,
      );
      const evalSettings = { prompts: [{ text: prompt, tokens }], at: source, maxNewTokens, samples, temperature: 1, seed: 0, signal: abort.signal } satisfies Partial<EvaluateOptions>;
      // What MELBO and MELBO-ortho read: the prompt, or the prompt and the start of its unsteered greedy answer.
      const searchTokens = await withAnswerStart(model, tokens, settings.answerTokens);
      if (searchTokens.length > tokens.length) {
        const answer = model.codec.decode(searchTokens.subarray(tokens.length));
        process.stdout.write(`MELBO and MELBO-ortho read the prompt and the first ${searchTokens.length - tokens.length} tokens of its unsteered answer: ${oneLine(answer, 80)}\n`);
      }

      // 1. MELBO: orthogonal candidates of norm R that change block `target` the most; no labels.
      const candidates = int(v, "candidates", settings.candidates, 1);
      const bar = new ProgressBar("melbo train");
      const trained = await train(model, {
        prompts: [searchTokens], count: candidates, radius: num(v, "radius", settings.radius), steps: int(v, "train-steps", settings.trainSteps, 1),
        lr: settings.lr, seed: settings.seed, positions: parsePositions(settings.positions), source, target, out: join(out, "melbo"), signal: abort.signal, traceEvery: 5,
        metadata: { model: dir, prompt },
        onProgress: (p) => bar.update(p.done, p.total, `${p.finished}/${p.total} vectors  ETA ${formatSeconds(p.etaSeconds)}  F ${p.meanObjective.toFixed(2)}`),
      });
      bar.done();

      // 2. Which candidate writes code? Sampled answers of each, beside the unsteered model's.
      const melboRows = await readVectorRows(join(out, "melbo", "vectors.safetensors"), model.hidden);
      const judged = await evaluateWithBar(model, "judge candidates", {
        ...evalSettings, vectors: melboRows.data, rows: melboRows.rows, file: melboRows.file, fileRows: melboRows.fileRows, kind: "train", out: join(out, "melbo-eval"),
      });
      const unsteered = judged.doc.entries.find((e) => e.kind === "unsteered")!;
      const melboVectors = judged.doc.entries.filter((e) => e.kind === "vector");
      const best = mostCodeLike(melboVectors);
      process.stdout.write(`\nMELBO: ${candidates} candidates (R ${trained.settings.radius}); greedy answer, and how many of ${samples} sampled answers are code (score ≥ ${CODE_THRESHOLD}):\n`);
      process.stdout.write(`  unsteered     ${oneLine(greedyText(judged, "unsteered"))}  ${shareText(unsteered, samples)}\n`);
      for (const e of melboVectors) process.stdout.write(`  candidate ${String(e.row).padEnd(3)} ${oneLine(greedyText(judged, e.id))}  ${shareText(e, samples)}\n`);
      const found = best.sampleCodeShare >= 0.5 && best.sampleCodeShare > unsteered.sampleCodeShare;
      process.stdout.write(
        found
          ? `\nθ0 = candidate ${best.row}, the code vector:\n  unsteered  ${oneLine(greedyText(judged, "unsteered"), 100)}\n  steered    ${oneLine(greedyText(judged, best.id), 100)}\n`
          : `\nno candidate answers in code in at least half of its samples; θ0 = candidate ${best.row}, the most code-like (try more --candidates or another --radius)\n`,
      );

      // 3. MELBO-ortho: copies of θ0, each orthogonal to θ0 and to the others, with θ0's effect at block `target`.
      const d = model.hidden;
      const theta0 = melboRows.data.slice(best.row! * d, (best.row! + 1) * d);
      const orthoOut = join(out, "ortho");
      await runOrthoWithProgress(
        model,
        {
          theta0, thetaRef: `${join(out, "melbo", "vectors.safetensors")}:${best.row}`, tokens: searchTokens, prompt,
          count: int(v, "count", byDefault("count"), 1), source, target, block: int(v, "block", byDefault("block"), 1), blockMode: "distinct", seed: 0,
          steps: int(v, "steps", byDefault("steps"), 0), lr: settings.lr, projection: oneOf(v, "projection", PROJECTIONS, defaultChoice(demoOptions, "projection", PROJECTIONS)),
          lossTolerance: 0, minNorm: 0.1, patience: 10, out: orthoOut, resume: false, traceEvery: 10,
        },
        abort.signal,
      );

      // 4. eval: does each copy still turn the answer into code? KL to θ0 at the first answer token, r, samples.
      const copies = await readVectorRows(join(orthoOut, "vectors.safetensors"), d);
      const evaluated = await evaluateWithBar(model, "eval", {
        ...evalSettings, vectors: copies.data, rows: copies.rows, file: copies.file, fileRows: copies.fileRows, kind: "ortho",
        ortho: { theta0, source, target, tokens: searchTokens }, sums: [2, 3, 10, 20], out: join(out, "eval"),
      });
      const vectors = evaluated.doc.entries.filter((e) => e.kind === "vector");
      const kept = codeShares(vectors);
      const plain = evaluated.doc.entries.find((e) => e.kind === "unsteered")!;
      process.stdout.write(
        [
          `eval: ${vectors.length} orthogonal vectors; first answer token, KL(P_k ‖ P_θ0) in nats (small = does what θ0 does):`,
          `  unsteered ${plain.klToReference.toFixed(3)}, vectors median ${lowerMedian(vectors.map((e) => e.klToReference)).toFixed(3)}, ` +
            `best ${Math.min(...vectors.map((e) => e.klToReference)).toFixed(3)}; median r ${lowerMedian(vectors.map((e) => e.r ?? NaN)).toFixed(3)}`,
          ...evaluated.doc.entries.filter((e) => e.kind === "sum").map((e) => `  sum of the first ${e.k}: KL ${e.klToReference.toFixed(3)}, r ${e.r?.toFixed(3) ?? "–"}, norm ${e.norm.toFixed(1)}`),
          "",
          `orthogonal vectors that keep θ0's effect: ${kept.code} of ${kept.counted} answer in code in at least half of ${samples} samples ` +
            `(θ0: ${shareText(evaluated.doc.entries.find((e) => e.kind === "theta0")!, samples)}, unsteered: ${shareText(plain, samples)})`,
          "",
        ].join("\n"),
      );

      // 5. report: one HTML page with the plots and the answers.
      const report = await writeReport(join(out, "eval"), { out: join(out, "report.html"), force });
      process.stdout.write(`report: ${report.path}\n  (runs: ${join(out, "melbo")}, ${orthoOut}; evals: ${join(out, "melbo-eval")}, ${join(out, "eval")}; ${formatSeconds((Date.now() - started) / 1000)})\n`);
    } finally {
      abort.dispose();
      model.dispose();
    }
  },
};

/** The prompt followed by the first `count` tokens of its unsteered greedy answer (the prompt alone for 0). */
async function withAnswerStart(model: Model, tokens: Int32Array, count: number): Promise<Int32Array> {
  if (count === 0) return tokens;
  const answer = (await model.generate(tokens, { maxNewTokens: count })).tokens[0]!;
  const out = new Int32Array(tokens.length + answer.length);
  out.set(tokens);
  out.set(answer, tokens.length);
  return out;
}

/** evaluate() with a progress bar; the eval file and its continuations (read back from the eval folder). */
async function evaluateWithBar(model: Model, label: string, o: EvaluateOptions & { out: string }): Promise<{ doc: EvalFile; generations: GenerationLine[] }> {
  const bar = new ProgressBar(label);
  const doc = await evaluate(model, { ...o, onProgress: (p) => bar.update(p.done, p.total, `${Math.floor(p.done)}/${p.total} entries  ETA ${formatSeconds(p.etaSeconds)}`) });
  bar.done();
  const source = await loadReportSource(o.out);
  return { doc, generations: source.kind === "eval" ? source.generations : [] };
}
