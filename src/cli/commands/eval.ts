// `melbo eval`: judge the vectors of a file (src/eval/eval.ts). Blocks and prompts default to what
// the file's run saved (an ortho or a train run); a plain vectors file needs --at and --prompt.

import { readFile } from "node:fs/promises";
import { MelboError } from "../../errors.js";
import { evaluate, type EvaluateOptions } from "../../eval/eval.js";
import type { EvalFile, VectorsKind } from "../../eval/eval-file.js";
import { parseVectorRef, readVectorRows } from "../../io/vectors.js";
import { prepareOutputFolder } from "../../io/output-folder.js";
import { readConfig } from "../../model/config.js";
import type { Model } from "../../model/model.js";
import { flag, int, intList, num, numList, required, str, UsageError, type Values } from "../args.js";
import { defaultOf, modelOptions, promptOptions, runFolderFlags, type Command, type OptionTable } from "../command.js";
import { modelFromArgs, resumeOrForce } from "../common.js";
import { ProgressBar, formatSeconds } from "../progress-bar.js";
import { abortOnSignals } from "./ortho.js";

const evalOptions = {
  ...modelOptions,
  ...promptOptions,
  prompt: { ...promptOptions.prompt, required: false, multiple: true, defaultText: "the prompts the file's run used", help: "a prompt to evaluate on, wrapped in the model's chat template" },
  "prompts-file": { type: "string", value: "FILE", defaultText: "none", help: "more prompts, one per line (blank lines skipped)" },
  vectors: { type: "string", value: "FILE[:rows]", required: true, help: "the vectors to judge; rows: 3, 0,3,10-19 (default all)" },
  at: { type: "string", value: "S", defaultText: "the run's source block", help: "block whose output the vectors are added to" },
  scales: { type: "string", value: "X[,Y…]", default: 1, help: "steering strengths to evaluate each vector at (negative flips it)" },
  sums: { type: "string", value: "K1,K2,…", defaultText: "none", help: "also evaluate the sum and the mean of the first K vectors" },
  samples: { type: "string", value: "N", default: 1, help: "sampled continuations per vector and prompt, besides the greedy one" },
  "max-new-tokens": { type: "string", value: "N", default: 50, help: "tokens per continuation" },
  temperature: { type: "string", value: "T", default: 1, help: "temperature of the sampled continuations" },
  seed: { type: "string", value: "N", default: 0, help: "sampling seed (each continuation has its own stream)" },
  batch: { type: "string", value: "N", defaultText: "sized to free memory, at most 64", help: "vectors generated at once" },
  out: { type: "string", value: "DIR", required: true, help: "folder for eval.json and generations.jsonl" },
  ...runFolderFlags,
} satisfies OptionTable;
const byDefault = (key: keyof typeof evalOptions): number => defaultOf(evalOptions, key);

/** What the vectors file's run saved: its kind, blocks and prompts (as token ids), θ0 for ortho runs. */
interface RunDefaults {
  kind: VectorsKind;
  source?: number;
  target?: number;
  prompts: { text: string; tokens: number[] }[];
}

function parseJson(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function runDefaults(metadata: Record<string, string>, file: string): RunDefaults {
  const algorithm = metadata["melbo.algorithm"];
  const settings = parseJson(metadata["melbo.settings"]) as Record<string, unknown> | undefined;
  const bad = (what: string) => new MelboError(`its melbo.settings has no valid ${what}`, { file });
  if (algorithm === "melbo-ortho") {
    if (!settings || !Array.isArray(settings["tokens"])) throw bad("tokens");
    return {
      kind: "ortho", source: settings["source"] as number, target: settings["target"] as number,
      prompts: [{ text: metadata["prompt"] ?? "", tokens: settings["tokens"] as number[] }],
    };
  }
  if (algorithm === "melbo") {
    if (!settings || !Array.isArray(settings["prompts"])) throw bad("prompts");
    const texts = parseJson(metadata["prompts"]);
    const tokenLists = settings["prompts"] as number[][];
    return {
      kind: "train", source: settings["source"] as number, target: settings["target"] as number,
      prompts: tokenLists.map((tokens, i) => ({ text: Array.isArray(texts) && typeof texts[i] === "string" ? (texts[i] as string) : "", tokens })),
    };
  }
  return { kind: "plain", prompts: [] };
}

async function promptTexts(v: Values): Promise<string[]> {
  const raw = v["prompt"];
  const texts = Array.isArray(raw) ? [...raw] : typeof raw === "string" ? [raw] : [];
  const file = str(v, "prompts-file");
  if (file !== undefined) {
    const text = await readFile(file, "utf8").catch((e: Error) => {
      throw new MelboError(`cannot read the prompts file: ${e.message}`, { file });
    });
    const lines = text.split("\n").map((l) => l.trim()).filter((l) => l !== "");
    if (lines.length === 0) throw new MelboError("the prompts file holds no prompt (one per line)", { file });
    texts.push(...lines);
  }
  return texts;
}

function printSummary(doc: EvalFile, out: string): void {
  const head = `${"entry".padEnd(12)}${"norm".padStart(9)}${"r".padStart(8)}${"KL(P‖P0)".padStart(10)}${"KL(P0‖P)".padStart(10)}${"code".padStart(6)}  most likely next token (prompt 1)`;
  const fmt = (x: number | null, w: number, digits = 3) => (x === null || Number.isNaN(x) ? "–" : x.toFixed(digits)).padStart(w);
  const shown = doc.entries.filter((e, i) => e.kind !== "vector" || i < 8 + (doc.reference === "theta0" ? 2 : 1));
  process.stdout.write(
    [
      "",
      `eval of ${doc.entries.length} entries on ${doc.prompts.length} prompt(s); P0 = ${doc.reference === "theta0" ? "steered by θ0" : "unsteered"}; KL in nats at the first answer token`,
      head,
      ...shown.map((e) => `${e.id.padEnd(12)}${fmt(e.norm, 9, 2)}${fmt(e.r, 8)}${fmt(e.klToReference, 10)}${fmt(e.klFromReference, 10)}${fmt(e.greedyCodeScore, 6, 2)}  ${JSON.stringify(e.prompts[0]?.top[0]?.text ?? "")}`),
      doc.cosine ? `pairwise |cos| of ${doc.cosine.pairs} pairs: max ${doc.cosine.maxAbs.toExponential(2)}, mean ${doc.cosine.meanAbs.toExponential(2)}` : "",
      `wrote ${out}/eval.json and ${out}/generations.jsonl in ${formatSeconds(doc.seconds)}; see them with: melbo report ${out}`,
      "",
    ].join("\n"),
  );
}

export const evalCommand: Command = {
  name: "eval",
  summary: "judge vectors: KL at the first answer token, generations, code scores, r, |cos|; eval.json",
  options: evalOptions,
  notes: ["The file's run (ortho or train) gives --at and the prompts when they are not given; P0 is θ0's distribution for an ortho run, else the unsteered one."],
  async run(v: Values) {
    const ref = required(v, "vectors");
    const out = required(v, "out");
    const { resume, force } = resumeOrForce(v);
    const scales = numList(v, "scales", [byDefault("scales")]);
    const sums = intList(v, "sums");
    for (const k of sums) if (k < 1) throw new UsageError(`--sums must be positive counts of vectors, got ${k}`);
    const settings = {
      scales, sums, samples: int(v, "samples", byDefault("samples"), 0), maxNewTokens: int(v, "max-new-tokens", byDefault("max-new-tokens"), 1),
      temperature: num(v, "temperature", byDefault("temperature")), seed: int(v, "seed", byDefault("seed"), 0),
      ...(str(v, "batch") !== undefined ? { batch: int(v, "batch", 1, 1) } : {}),
    };
    if (!(settings.temperature > 0)) throw new UsageError(`--temperature must be > 0, got ${settings.temperature}`);
    const texts = await promptTexts(v);
    // The vectors and what their run saved, checked before the model loads.
    const config = await readConfig(required(v, "model"));
    const vec = await readVectorRows(ref, config.hiddenSize);
    const run = runDefaults(vec.metadata, vec.file);
    const atText = str(v, "at");
    const at = atText !== undefined ? int(v, "at", 0, 0) : run.source;
    if (at === undefined) throw new MelboError("is not a melbo run, so it does not say where its vectors go: give --at S", { file: vec.file });
    if (at >= config.numLayers) throw new MelboError(`--at ${at} is out of range: this model has blocks 0..${config.numLayers - 1}`);
    if (texts.length === 0 && run.prompts.length === 0) throw new MelboError("is not a melbo run, so it names no prompt: give --prompt TEXT or --prompts-file F", { file: vec.file });
    const theta0 = run.kind === "ortho" ? (await readVectorRows(`${parseVectorRef(ref).path}:0`, config.hiddenSize)).data : undefined;
    if (run.kind === "ortho" && at !== run.source) process.stderr.write(`note: --at ${at} is not the run's source block ${run.source}: r is not measured\n`);
    await prepareOutputFolder(out, { kind: "eval", flag: "--out", resume, canResume: true, force });

    const model = await modelFromArgs(v);
    const abort = abortOnSignals();
    const bar = new ProgressBar("eval");
    try {
      const system = str(v, "system");
      const prompts = texts.length > 0
        ? texts.map((text) => ({ text, tokens: model.promptTokens(text, { raw: flag(v, "raw"), ...(system !== undefined ? { system } : {}) }) }))
        : run.prompts.map((p) => ({ text: p.text || model.codec.decode(p.tokens), tokens: checkedTokens(model, p.tokens, vec.file) }));
      const options: EvaluateOptions = {
        vectors: vec.data, rows: vec.rows, file: vec.file, fileRows: vec.fileRows, kind: run.kind,
        ...(theta0 && run.target !== undefined && run.source !== undefined
          ? { ortho: { theta0, source: run.source, target: run.target, tokens: Int32Array.from(run.prompts[0]!.tokens) } }
          : {}),
        prompts, at, ...settings, out, resume, signal: abort.signal,
        onProgress: (p) => bar.update(p.done, p.total, `${Math.floor(p.done)}/${p.total} entries  ETA ${formatSeconds(p.etaSeconds)}  ${p.entry}`),
      };
      const doc = await evaluate(model, options);
      bar.done();
      printSummary(doc, out);
    } finally {
      bar.done();
      abort.dispose();
      model.dispose();
    }
  },
};

function checkedTokens(model: Model, tokens: number[], file: string): Int32Array {
  if (tokens.length === 0 || tokens.some((t) => !Number.isInteger(t) || t < 0 || t >= model.config.vocabSize)) {
    throw new MelboError("its saved prompt tokens are not token ids of this model", { file });
  }
  return Int32Array.from(tokens);
}
