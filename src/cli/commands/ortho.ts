import { MelboError } from "../../errors.js";
import { prepareOutputFolder } from "../../io/output-folder.js";
import { ORTHO_DEFAULTS } from "../../search/defaults.js";
import { LEGACY_BLOCK_MODE, ortho, type Projection } from "../../search/ortho.js";
import { randomBaseline, relLossStats, type RelLossStats } from "../../eval/ortho-report.js";
import type { Model } from "../../model/model.js";
import { int, num, oneOf, required, str, type Values } from "../args.js";
import { defaultChoice, defaultOf, modelOptions, promptOptions, runFolderFlags, type Command, type OptionTable } from "../command.js";
import { modelFromArgs, promptFromArgs, resumeOrForce, vectorsFromArgs } from "../common.js";
import { ProgressBar, formatSeconds } from "../progress-bar.js";

export interface OrthoRunSettings {
  theta0: Float32Array;
  thetaRef: string;
  tokens: Int32Array;
  prompt: string;
  count: number;
  source: number;
  target: number;
  block: number;
  /** "distinct" (default): rows 2…B start at seeded random directions, symmetric in-block steps; "legacy": melbo's old block mode. */
  blockMode: "distinct" | "legacy";
  seed: number;
  /** Norm of rows 2…B's random starts as a multiple of ‖θ0‖ (library default when undefined). */
  startNorm?: number;
  steps: number;
  lr: number;
  projection: Projection;
  lossTolerance: number;
  minNorm: number;
  patience: number;
  out: string;
  resume: boolean;
  /** > 0: each vector's r every this many steps, to OUT/trace.jsonl (for `melbo report`). */
  traceEvery?: number;
}

export interface OrthoRunSummary {
  found: number;
  reason: string;
  maxAbsCos: number;
  found_r: RelLossStats;
  random_r: RelLossStats;
}

/** Runs one search with a progress bar and prints the summary table (shared with `demo`). */
export async function runOrthoWithProgress(model: Model, s: OrthoRunSettings, signal: AbortSignal): Promise<OrthoRunSummary> {
  const bar = new ProgressBar(`ortho ${s.projection}`);
  try {
    const result = await ortho(model, {
      tokens: s.tokens, theta0: s.theta0, count: s.count, source: s.source, target: s.target, block: s.block,
      ...(s.blockMode === "legacy" ? LEGACY_BLOCK_MODE : {}), seed: s.seed,
      ...(s.startNorm !== undefined ? { startNorm: s.startNorm } : {}),
      steps: s.steps, lr: s.lr, projection: s.projection, lossTolerance: s.lossTolerance, minNorm: s.minNorm,
      patience: s.patience, out: s.out, resume: s.resume, signal, releaseEarlyBlocks: false,
      ...(s.traceEvery !== undefined ? { traceEvery: s.traceEvery } : {}),
      metadata: { model: model.dir, prompt: s.prompt, theta0: s.thetaRef, layers: `${s.source},${s.target}` },
      onResume: (found) => {
        if (found > 0) process.stderr.write(`resuming ${s.out}: ${found} vectors already found\n`);
      },
      onProgress: (p) =>
        bar.update(p.done, p.total, `${p.finished}/${p.total} vectors  ${p.vectorStepsPerSecond.toFixed(1)} vector-steps/s  ETA ${formatSeconds(p.etaSeconds)}  loss ${p.meanLoss.toFixed(4)}`),
      onDropped: (norm) => {
        bar.done();
        process.stderr.write(`dropped a vector that vanished in the in-block orthogonalisation (norm ${norm.toExponential(2)})\n`);
      },
    });
    bar.done();
    const norms = result.log.map((l) => l.norm);
    const found = result.log.map((l) => l.relLoss);
    const random = await randomBaseline(model, { ...result.inputs, theta0: s.theta0, norms, source: s.source, target: s.target });
    const summary: OrthoRunSummary = { found: result.found, reason: result.reason, maxAbsCos: result.maxAbsCos, found_r: relLossStats(found), random_r: relLossStats(random) };
    printSummary(s, summary);
    return summary;
  } finally {
    bar.done();
  }
}

function printSummary(s: OrthoRunSettings, r: OrthoRunSummary): void {
  const row = (name: string, x: RelLossStats) =>
    `${name.padEnd(24)}${String(x.beatZero).padStart(6)}${String(x.half).padStart(8)}${x.best.toFixed(3).padStart(9)}${x.median.toFixed(3).padStart(10)}`;
  process.stdout.write(
    [
      ``,
      `MELBO-ortho, projection ${s.projection}, block ${s.block}, ${s.steps} steps: ${r.found} vectors (stopped: ${r.reason}), max |cos| ${r.maxAbsCos.toExponential(2)}`,
      `${"r = ‖z(θ)−z0‖/‖z0−z(0)‖".padEnd(24)}${"r < 1".padStart(6)}${"r ≤ 0.5".padStart(8)}${"best r".padStart(9)}${"median r".padStart(10)}`,
      row("found vectors", r.found_r),
      row("random, same norms", r.random_r),
      `vectors: ${s.out}/vectors.safetensors (row 0 = θ0), log: ${s.out}/log.jsonl`,
      ``,
    ].join("\n"),
  );
}

/** Ctrl-C aborts the running block; everything up to the last finished block is on disk. */
export function abortOnSignals(): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const onSignal = () => controller.abort(new DOMException("interrupted: the last finished block is saved; continue with --resume", "AbortError"));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  return {
    signal: controller.signal,
    dispose: () => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    },
  };
}

const BLOCK_MODES = ["distinct", "legacy"] as const;
const PROJECTIONS = ["post", "grad"] as const;

const orthoOptions = {
  ...modelOptions,
  ...promptOptions,
  theta: { type: "string", value: "FILE[:row]", required: true, help: "θ0, the vector to copy: a vectors file and its row" },
  count: { type: "string", value: "N", default: ORTHO_DEFAULTS.count, help: "vectors to find after θ0" },
  source: { type: "string", value: "S", default: ORTHO_DEFAULTS.source, help: "block whose output is steered" },
  target: { type: "string", value: "T", default: ORTHO_DEFAULTS.target, help: "block whose output the vectors must reproduce" },
  block: { type: "string", value: "B", default: ORTHO_DEFAULTS.block, help: "vectors optimised at once; 1 = the sequential algorithm" },
  "block-mode": { type: "string", value: "distinct|legacy", default: "distinct", help: "how rows 2…B start and stay apart; legacy: melbo's old mode" },
  seed: { type: "string", value: "N", default: ORTHO_DEFAULTS.seed, help: "seed of rows 2…B's random starts" },
  "start-norm": { type: "string", value: "X", defaultText: `${ORTHO_DEFAULTS.startNorm}; legacy block mode: θ0 itself`, help: "norm of rows 2…B's random starts, × ‖θ0‖" },
  steps: { type: "string", value: "N", default: ORTHO_DEFAULTS.steps, help: "Adam steps per vector, or per block" },
  lr: { type: "string", value: "X", default: ORTHO_DEFAULTS.lr, help: "Adam learning rate" },
  projection: { type: "string", value: "post|grad", default: ORTHO_DEFAULTS.projection, help: "post: project θ after each step (seed-exact); grad: the gradient too" },
  "loss-tol": { type: "string", value: "X", default: ORTHO_DEFAULTS.lossTolerance, defaultText: "0 = off", help: "end a vector's steps once its loss is ≤ X" },
  "min-norm": { type: "string", value: "X", default: ORTHO_DEFAULTS.minNorm, help: "a vector below this norm counts towards --patience" },
  patience: { type: "string", value: "N", default: ORTHO_DEFAULTS.patience, help: "stop after N vectors in a row below --min-norm" },
  trace: { type: "string", value: "K", default: 0, defaultText: "0 = off", help: "write each vector's r every K steps to OUT/trace.jsonl (melbo report plots it)" },
  out: { type: "string", value: "DIR", required: true, help: "run folder: vectors.safetensors, row 0 = θ0, and log.jsonl" },
  ...runFolderFlags,
} satisfies OptionTable;
const byDefault = (key: keyof typeof orthoOptions): number => defaultOf(orthoOptions, key);

export const orthoCommand: Command = {
  name: "ortho",
  summary: "MELBO-ortho: many orthogonal steering vectors that reproduce θ0's effect at the target block",
  options: orthoOptions,
  async run(v: Values) {
    // Every flag is read and checked first: a mistake is reported before the output folder is
    // touched or the model loaded.
    const thetaRef = required(v, "theta");
    const out = required(v, "out");
    const source = int(v, "source", byDefault("source"), 0);
    const target = int(v, "target", byDefault("target"), 0);
    if (source >= target) throw new MelboError(`--source ${source} must come before --target ${target}`);
    // Unset: the library's default (ORTHO_DEFAULTS.startNorm; the legacy mode's starts are θ0 itself).
    const startNorm = str(v, "start-norm") === undefined ? undefined : num(v, "start-norm", 0);
    if (startNorm !== undefined && !(startNorm > 0)) throw new MelboError(`--start-norm must be a positive number, got ${startNorm}`);
    const { resume, force } = resumeOrForce(v);
    const search = {
      thetaRef, prompt: str(v, "prompt") ?? "", count: int(v, "count", byDefault("count"), 1), source, target,
      block: int(v, "block", byDefault("block"), 1), blockMode: oneOf(v, "block-mode", BLOCK_MODES, defaultChoice(orthoOptions, "block-mode", BLOCK_MODES)),
      seed: int(v, "seed", byDefault("seed"), 0),
      ...(startNorm !== undefined ? { startNorm } : {}), steps: int(v, "steps", byDefault("steps"), 1), lr: num(v, "lr", byDefault("lr")),
      projection: oneOf(v, "projection", PROJECTIONS, defaultChoice(orthoOptions, "projection", PROJECTIONS)),
      lossTolerance: num(v, "loss-tol", byDefault("loss-tol")), minNorm: num(v, "min-norm", byDefault("min-norm")), patience: int(v, "patience", byDefault("patience"), 1),
      traceEvery: int(v, "trace", byDefault("trace"), 0), out, resume,
    };
    await prepareOutputFolder(out, { kind: "run", flag: "--out", resume, canResume: true, force });
    const theta = await vectorsFromArgs(v, "theta", thetaRef, true);
    const model = await modelFromArgs(v, { blocks: { to: target }, head: false });
    const abort = abortOnSignals();
    try {
      const tokens = promptFromArgs(model, v);
      await runOrthoWithProgress(
        model,
        { ...search, theta0: theta.data, tokens },
        abort.signal,
      );
    } finally {
      abort.dispose();
      model.dispose();
    }
  },
};
