import { prepareOutputFolder } from "../../io/output-folder.js";
import { readCheckpoint } from "../../model/checkpoint.js";
import { TRAIN_DEFAULTS } from "../../search/defaults.js";
import type { Model } from "../../model/model.js";
import { parsePositions, type Positions } from "../../search/positions.js";
import { defaultBlocks, train, trainBlocks, type TrainResult } from "../../search/train.js";
import { flag, int, num, required, str, UsageError, type Values } from "../args.js";
import { defaultOf, defaultString, modelOptions, promptOptions, runFolderFlags, type Command, type OptionTable } from "../command.js";
import { modelFromArgs, resumeOrForce } from "../common.js";
import { ProgressBar, formatSeconds } from "../progress-bar.js";
import { abortOnSignals } from "./ortho.js";

/** Options `train` and `calibrate` share: the prompts (repeatable), the objective and the blocks. */
export const trainingOptions = {
  ...modelOptions,
  ...promptOptions,
  prompt: { ...promptOptions.prompt, multiple: true, help: "an example prompt, wrapped in the model's chat template" },
  p: { type: "string", value: "X", default: TRAIN_DEFAULTS.p, help: "F = Σ_prompts (Σ_positions ‖change‖^p)^(1/q)" },
  q: { type: "string", value: "X", defaultText: "p", help: "see --p" },
  // defaultBlocks(L): 7 and L − 9, read at L = 0 to show them.
  source: { type: "string", value: "S", defaultText: `${defaultBlocks(0).source}`, help: "block whose output is steered" },
  target: { type: "string", value: "T", defaultText: `L${defaultBlocks(0).target}, L = the model's blocks`, help: "block whose change is maximised" },
  positions: { type: "string", value: "all|last:K|i,j,…", default: "all", help: "prompt positions the change is summed over" },
  seed: { type: "string", value: "N", default: TRAIN_DEFAULTS.seed, help: "vector k starts from randn with seed + k" },
} satisfies OptionTable;

export interface TrainingArgs {
  prompts: string[];
  p: number;
  q: number | undefined; // default p
  source: number | undefined; // default 7
  target: number | undefined; // default L − 9
  positions: Positions;
  seed: number;
}

export function trainingArgs(v: Values): TrainingArgs {
  const raw = v["prompt"];
  const prompts = Array.isArray(raw) ? raw : typeof raw === "string" ? [raw] : [];
  if (prompts.length === 0) throw new UsageError("--prompt is required (repeat it for several example prompts)");
  const q = str(v, "q");
  return {
    prompts,
    p: num(v, "p", defaultOf(trainingOptions, "p")),
    q: q === undefined ? undefined : num(v, "q", 2),
    source: str(v, "source") === undefined ? undefined : int(v, "source", 0),
    target: str(v, "target") === undefined ? undefined : int(v, "target", 0),
    positions: parsePositions(str(v, "positions") ?? defaultString(trainingOptions, "positions")),
    seed: int(v, "seed", defaultOf(trainingOptions, "seed"), 0),
  };
}

/** Source and target blocks (defaults 7 and L − 9) from the checkpoint's config, before loading it. */
export async function blocksFromArgs(v: Values, a: TrainingArgs): Promise<{ source: number; target: number }> {
  const { config } = await readCheckpoint(required(v, "model"));
  return trainBlocks(config.numLayers, a.source, a.target);
}

export function promptTokensFromArgs(model: Model, v: Values, prompts: string[]): Int32Array[] {
  const system = str(v, "system");
  return prompts.map((text) => model.promptTokens(text, { raw: flag(v, "raw"), ...(system !== undefined ? { system } : {}) }));
}

function printSummary(r: TrainResult, out: string): void {
  const s = r.settings;
  const lines = [
    ``,
    `MELBO, ${s.independent ? "independent" : "orthogonal"} vectors, R = ${s.radius}, p = ${s.p}, q = ${s.q}, blocks ${s.source} → ${s.target}, ${s.steps} steps` +
      (s.independent ? "" : `, max |cos| ${r.maxAbsCos.toExponential(2)}`),
    `${"row".padStart(4)}${"F start".padStart(12)}${"F end".padStart(12)}`,
    ...r.log.map((l) => `${String(l.index).padStart(4)}${l.startObjective.toFixed(3).padStart(12)}${l.objective.toFixed(3).padStart(12)}`),
    `vectors: ${out}/vectors.safetensors (row k = vector k), log: ${out}/log.jsonl`,
    `see their effect:  melbo generate --model DIR --prompt TEXT --vectors ${out}/vectors.safetensors --at ${s.source}`,
    `copy one with MELBO-ortho:  melbo ortho --model DIR --prompt TEXT --theta ${out}/vectors.safetensors:0 --source ${s.source} --target ${s.target} ...`,
    ``,
  ];
  process.stdout.write(lines.join("\n"));
}

const trainOptions = {
  ...trainingOptions,
  count: { type: "string", value: "N", required: true, help: "vectors to train" },
  radius: { type: "string", value: "R", required: true, help: "norm of every vector; `melbo calibrate` helps to choose it" },
  steps: { type: "string", value: "N", default: TRAIN_DEFAULTS.steps, help: "Adam steps per vector" },
  lr: { type: "string", value: "X", default: TRAIN_DEFAULTS.lr, help: "Adam learning rate" },
  independent: { type: "boolean", help: "train the vectors independently, in batches, not each orthogonal to the earlier ones" },
  batch: { type: "string", value: "N", default: TRAIN_DEFAULTS.batch, help: "vectors per batch, with --independent" },
  trace: { type: "string", value: "K", default: 0, defaultText: "0 = off", help: "write each vector's objective every K steps to OUT/trace.jsonl (melbo report plots it)" },
  out: { type: "string", value: "DIR", required: true, help: "run folder: vectors.safetensors, log.jsonl" },
  ...runFolderFlags,
} satisfies OptionTable;
const byDefault = (key: keyof typeof trainOptions): number => defaultOf(trainOptions, key);

export const trainCommand: Command = {
  name: "train",
  summary: "MELBO: train steering vectors that maximise the change at a later block (no labels)",
  options: trainOptions,
  async run(v: Values) {
    const out = required(v, "out");
    const a = trainingArgs(v);
    required(v, "count");
    const count = int(v, "count", 1, 1);
    if (str(v, "radius") === undefined) throw new UsageError("--radius is required (`melbo calibrate` helps to choose it)");
    const radius = num(v, "radius", 1);
    const independent = flag(v, "independent");
    if (!independent && str(v, "batch") !== undefined) throw new UsageError("--batch applies to --independent training only");
    const { resume, force } = resumeOrForce(v);
    const traceEvery = int(v, "trace", byDefault("trace"), 0);
    const steps = int(v, "steps", byDefault("steps"), 0), batch = int(v, "batch", byDefault("batch"), 1), lr = num(v, "lr", byDefault("lr"));
    const { source, target } = await blocksFromArgs(v, a);
    await prepareOutputFolder(out, { kind: "run", flag: "--out", resume, canResume: true, force });
    const model = await modelFromArgs(v, { blocks: { to: target }, head: false });
    const abort = abortOnSignals();
    const bar = new ProgressBar(`train ${independent ? "independent" : "orthogonal"}`);
    try {
      const prompts = promptTokensFromArgs(model, v, a.prompts);
      const result = await train(model, {
        prompts, count, radius, p: a.p, ...(a.q !== undefined ? { q: a.q } : {}), source, target, positions: a.positions,
        steps, independent, batch, seed: a.seed, lr, traceEvery,
        out, resume, signal: abort.signal, releaseEarlyBlocks: true,
        onResume: (rows) => {
          if (rows > 0) process.stderr.write(`resuming ${out}: ${rows} vectors already trained\n`);
        },
        metadata: { model: model.dir, prompts: JSON.stringify(a.prompts), layers: `${source},${target}`, radius: String(radius) },
        onProgress: (p) =>
          bar.update(p.done, p.total, `${p.finished}/${p.total} vectors  ${p.vectorStepsPerSecond.toFixed(1)} vector-steps/s  ETA ${formatSeconds(p.etaSeconds)}  F ${p.meanObjective.toFixed(3)}`),
      });
      bar.done();
      printSummary(result, out);
    } finally {
      bar.done();
      abort.dispose();
      model.dispose();
    }
  },
};
