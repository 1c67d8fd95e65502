import { MelboError } from "../../errors.js";
import { prepareOutputFolder } from "../../io/output-folder.js";
import { readVectorRef } from "../../io/vectors.js";
import { LEGACY_BLOCK_MODE, ortho, type OrthoEvent, type Projection } from "../../search/ortho.js";
import { randomBaseline, relLossStats, type RelLossStats } from "../../eval/ortho-report.js";
import type { Model } from "../../model/model.js";
import { UsageError, flag, int, num, oneOf, required, str, type Values } from "../args.js";
import { modelOptions, promptOptions, type Command } from "../command.js";
import { modelFromArgs, promptFromArgs } from "../common.js";
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
  let start: Extract<OrthoEvent, { type: "start" }> | undefined;
  let lastLoss = NaN;
  try {
    for await (const e of ortho(model, {
      tokens: s.tokens, theta0: s.theta0, count: s.count, source: s.source, target: s.target, block: s.block,
      ...(s.blockMode === "legacy" ? LEGACY_BLOCK_MODE : {}), seed: s.seed,
      ...(s.startNorm !== undefined ? { startNorm: s.startNorm } : {}),
      steps: s.steps, lr: s.lr, projection: s.projection, lossTolerance: s.lossTolerance, minNorm: s.minNorm,
      patience: s.patience, out: s.out, resume: s.resume, signal, releaseEarlyBlocks: false,
      metadata: { model: model.dir, prompt: s.prompt, theta0: s.thetaRef, layers: `${s.source},${s.target}` },
    })) {
      switch (e.type) {
        case "start":
          start = e;
          if (e.resumedFrom > 0) process.stderr.write(`resuming ${s.out}: ${e.resumedFrom} vectors already found\n`);
          break;
        case "progress": {
          lastLoss = e.meanLoss;
          const done = e.found + (e.step / e.steps) * e.blockRows;
          bar.update(done, e.count, `${e.found}/${e.count} vectors  ${e.vectorStepsPerSecond.toFixed(1)} vector-steps/s  ETA ${formatSeconds(e.etaSeconds)}  loss ${lastLoss.toFixed(4)}`);
          break;
        }
        case "dropped":
          bar.done();
          process.stderr.write(`dropped a vector that vanished in the in-block orthogonalisation (norm ${e.norm.toExponential(2)})\n`);
          break;
        case "done": {
          bar.done();
          const norms = e.log.map((l) => l.norm);
          const found = e.log.map((l) => l.relLoss);
          const random = await randomBaseline(model, { x: start!.x, z0: start!.z0, theta0: s.theta0, norms, source: s.source, target: s.target, denominator: start!.denominator });
          const summary: OrthoRunSummary = { found: e.found, reason: e.reason, maxAbsCos: e.maxAbsCos, found_r: relLossStats(found), random_r: relLossStats(random) };
          printSummary(s, summary);
          return summary;
        }
        default:
          break;
      }
    }
  } finally {
    bar.done();
  }
  throw new Error("ortho ended without a result");
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

export const orthoCommand: Command = {
  name: "ortho",
  summary: "MELBO-ortho: many orthogonal steering vectors that reproduce θ0's effect at the target block",
  usage:
    "melbo ortho --model DIR --theta FILE[:row] --prompt TEXT [--raw] [--count 32] [--source 8 --target 16]\n" +
    "            [--block B] [--block-mode distinct|legacy] [--seed 0] [--start-norm 0.01]\n" +
    "            [--steps 1000] [--lr 0.01]\n" +
    "            [--projection post|grad] [--loss-tol X]\n" +
    "            [--min-norm 0.1 --patience 10] [--dtype f32|bf16] --out OUT [--resume | --force]",
  options: {
    ...modelOptions,
    ...promptOptions,
    theta: { type: "string" },
    count: { type: "string" },
    source: { type: "string" },
    target: { type: "string" },
    block: { type: "string" },
    "block-mode": { type: "string" },
    seed: { type: "string" },
    "start-norm": { type: "string" },
    steps: { type: "string" },
    lr: { type: "string" },
    projection: { type: "string" },
    "loss-tol": { type: "string" },
    "min-norm": { type: "string" },
    patience: { type: "string" },
    out: { type: "string" },
    resume: { type: "boolean" },
    force: { type: "boolean" },
  },
  async run(v: Values) {
    // Every flag is read and checked first: a mistake is reported before the output folder is
    // touched or the model loaded.
    const thetaRef = required(v, "theta");
    const out = required(v, "out");
    const source = int(v, "source", 8, 0);
    const target = int(v, "target", 16, 0);
    if (source >= target) throw new MelboError(`--source ${source} must come before --target ${target}`);
    // Unset: the library's default (DEFAULT_START_NORM; the legacy mode's starts are θ0 itself).
    const startNorm = str(v, "start-norm") === undefined ? undefined : num(v, "start-norm", 0);
    if (startNorm !== undefined && !(startNorm > 0)) throw new MelboError(`--start-norm must be a positive number, got ${startNorm}`);
    const resume = flag(v, "resume"), force = flag(v, "force");
    if (resume && force) throw new UsageError("--resume continues the run in --out, --force replaces it: give one of them");
    const search = {
      thetaRef, prompt: str(v, "prompt") ?? "", count: int(v, "count", 32, 1), source, target,
      block: int(v, "block", 1, 1), blockMode: oneOf(v, "block-mode", ["distinct", "legacy"] as const, "distinct"), seed: int(v, "seed", 0, 0),
      ...(startNorm !== undefined ? { startNorm } : {}), steps: int(v, "steps", 1000, 1), lr: num(v, "lr", 0.01),
      projection: oneOf(v, "projection", ["post", "grad"] as const, "post"),
      lossTolerance: num(v, "loss-tol", 0), minNorm: num(v, "min-norm", 0.1), patience: int(v, "patience", 10, 1),
      out, resume,
    };
    await prepareOutputFolder(out, { kind: "run", flag: "--out", resume, canResume: true, force });
    const model = await modelFromArgs(v, { blocks: { to: target }, head: false });
    const abort = abortOnSignals();
    try {
      const tokens = promptFromArgs(model, v);
      const theta = await readVectorRef(thetaRef, model.hidden);
      if (theta.n !== 1) throw new MelboError(`--theta needs one vector: add :row (the file has ${theta.n})`, { file: theta.file });
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
