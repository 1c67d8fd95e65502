import type { Model } from "../../model/model.js";
import { calibrate, defaultRadii, type Calibration } from "../../search/calibrate.js";
import { int, str, UsageError, type Values } from "../args.js";
import { defaultOf, type Command, type OptionTable } from "../command.js";
import { modelFromArgs } from "../common.js";
import { ProgressBar, formatSeconds } from "../progress-bar.js";
import { abortOnSignals } from "./ortho.js";
import { blocksFromArgs, promptTokensFromArgs, trainingArgs, trainingOptions } from "./train.js";

function radiiFromArgs(v: Values): number[] | undefined {
  const text = str(v, "radii");
  if (text === undefined) return undefined;
  const radii = text.split(",").map((s) => Number(s.trim()));
  if (radii.length === 0 || radii.some((r) => !(Number.isFinite(r) && r > 0))) {
    throw new UsageError(`--radii must be a comma-separated list of numbers > 0, got "${text}"`);
  }
  return radii;
}

/** A continuation on one line, cut to `width` characters. */
function shown(model: Model, tokens: Int32Array, width = 72): string {
  const text = JSON.stringify(model.codec.decode(tokens));
  return text.length > width ? text.slice(0, width - 1) + "…" : text;
}

function printCalibration(model: Model, c: Calibration, show: number): void {
  const out = [
    ``,
    `MELBO calibration, blocks ${c.source} → ${c.target}; typical ‖resid(${c.source})‖ = ${c.residNorm.toFixed(2)}`,
    `unsteered: ${shown(model, c.unsteered)}`,
    ``,
    `${"R".padStart(10)}${"mean F".padStart(12)}${"distinct".padStart(10)}${"changed".padStart(9)}${"KL mean".padStart(10)}${"KL min".padStart(9)}${"KL max".padStart(9)}`,
    ...c.rows.map(
      (r) =>
        `${String(r.radius).padStart(10)}${r.meanObjective.toFixed(3).padStart(12)}${`${r.distinct}/${r.count}`.padStart(10)}` +
        `${`${r.changed}/${r.count}`.padStart(9)}${r.klMean.toFixed(3).padStart(10)}${r.klMin.toFixed(3).padStart(9)}${r.klMax.toFixed(3).padStart(9)}`,
    ),
    ``,
    `distinct: different greedy continuations among the vectors; changed: continuations that differ from the unsteered one;`,
    `KL: first-token KL(P_steered ‖ P_unsteered) at the last prompt position, in nats. Pick the R whose outputs are diverse but still fluent.`,
  ];
  if (show > 0) {
    for (const r of c.rows) {
      out.push(``, `R = ${r.radius}:`);
      const seen = new Set<string>();
      for (const t of r.continuations) {
        if (seen.size >= show) break;
        if (seen.has(t.join())) continue;
        seen.add(t.join());
        out.push(`  ${shown(model, t)}`);
      }
    }
  }
  process.stdout.write(out.join("\n") + "\n");
}

const calibrateOptions = {
  ...trainingOptions,
  radii: { type: "string", value: "R1,R2,…", defaultText: `${defaultRadii(1).join(", ")} × the typical ‖resid(source)‖ on the first prompt`, help: "the grid of R" },
  count: { type: "string", value: "N", default: 8, help: "vectors trained per R" },
  steps: { type: "string", value: "N", default: 100, help: "Adam steps per vector" },
  "max-new-tokens": { type: "string", value: "N", default: 16, help: "tokens of each steered continuation" },
  show: { type: "string", value: "N", default: 3, help: "distinct continuations printed per R" },
} satisfies OptionTable;
const byDefault = (key: keyof typeof calibrateOptions): number => defaultOf(calibrateOptions, key);

export const calibrateCommand: Command = {
  name: "calibrate",
  summary: "MELBO: short trainings over a grid of R, with how different the steered outputs are (to choose R)",
  options: calibrateOptions,
  notes: ["Continuations and KL are measured on the first prompt."],
  async run(v: Values) {
    const a = trainingArgs(v);
    const radii = radiiFromArgs(v);
    const { source, target } = await blocksFromArgs(v, a);
    const model = await modelFromArgs(v);
    const abort = abortOnSignals();
    const bar = new ProgressBar("calibrate");
    try {
      const prompts = promptTokensFromArgs(model, v, a.prompts);
      const c = await calibrate(model, {
        prompts, source, target, p: a.p, ...(a.q !== undefined ? { q: a.q } : {}), positions: a.positions, seed: a.seed,
        ...(radii ? { radii } : {}),
        count: int(v, "count", byDefault("count"), 1), steps: int(v, "steps", byDefault("steps"), 0), maxNewTokens: int(v, "max-new-tokens", byDefault("max-new-tokens"), 1),
        signal: abort.signal,
        onProgress: (i, n, e) => {
          bar.update(i + e.step / e.steps, n, `R ${i + 1}/${n}  ${e.vectorStepsPerSecond.toFixed(1)} vector-steps/s  ETA ${formatSeconds(e.etaSeconds)} (this R)`);
        },
      });
      bar.done();
      printCalibration(model, c, int(v, "show", byDefault("show"), 0));
    } catch (e) {
      if (e instanceof Error && e.name === "AbortError") throw new DOMException("interrupted", "AbortError");
      throw e;
    } finally {
      bar.done();
      abort.dispose();
      model.dispose();
    }
  },
};
