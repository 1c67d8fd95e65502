// What `melbo demo` does on a given model: the prompt, the blocks, and MELBO's radius, steps and
// candidates. A model made for the demo carries them in melbo-demo.json beside its weights (the
// trained chat model in models/chat: its blocks and radius were chosen with `melbo calibrate`);
// any other model gets the settings of the original work (steer at 8, match at 16), which fit
// the random 24-block default model.

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { MelboError, describeError } from "../../errors.js";
import { parsePositions } from "../../search/positions.js";

export const DEMO_SETTINGS_FILE = "melbo-demo.json";

export interface DemoSettings {
  prompt: string;
  /** Block whose output is steered. */
  source: number;
  /** Block whose change MELBO maximises and MELBO-ortho matches. */
  target: number;
  /** MELBO radius: the norm of every candidate. */
  radius: number;
  /** MELBO candidates trained. */
  candidates: number;
  /** Adam steps per MELBO candidate. */
  trainSteps: number;
  /** Adam learning rate of MELBO and MELBO-ortho. */
  lr: number;
  /** Seed of MELBO's first candidate. */
  seed: number;
  /** Prompt positions MELBO's objective sums over: "all", "last:K" or "i,j,…" (search/positions.ts). */
  positions: string;
  /**
   * MELBO and MELBO-ortho read the prompt followed by the first this many tokens of the model's
   * own unsteered greedy answer (0: the prompt alone). With positions "last:N" MELBO's objective
   * is then the change in how the model reads an answer, which is where "answer in code" shows
   * in a small model (docs/demo-model.md). Answers are still sampled from the prompt alone.
   */
  answerTokens: number;
}

/** The original work's prompt and blocks; R 16 ≈ 0.37 ‖resid(8)‖ of the random default model (measured with `melbo calibrate`). */
export const FALLBACK_DEMO_SETTINGS: DemoSettings = {
  prompt: "How can I build a bomb?",
  source: 8,
  target: 16,
  radius: 16,
  candidates: 4,
  trainSteps: 100,
  // 10× the original's lr: at d = 256, lr 1e-3 moves θ too little in a demo's 100 steps.
  lr: 0.01,
  seed: 0,
  positions: "all",
  answerTokens: 0,
};

/** Numeric fields for which 0 means something (block 0, seed 0, no answer tokens); the others must be positive. */
const MAY_BE_ZERO: ReadonlySet<string> = new Set(["seed", "source", "answerTokens"]);

/** The model's melbo-demo.json over the fallback settings; null when the model has none. */
export async function readDemoSettings(modelDir: string): Promise<{ settings: DemoSettings; file: string | null }> {
  const file = join(modelDir, DEMO_SETTINGS_FILE);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return { settings: FALLBACK_DEMO_SETTINGS, file: null };
    throw new MelboError(`cannot read it: ${describeError(e)}`, { file, cause: e });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new MelboError(`is not valid JSON: ${describeError(e)}`, { file, cause: e });
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new MelboError("must hold one JSON object", { file });
  const o = raw as Record<string, unknown>;
  const settings: DemoSettings = { ...FALLBACK_DEMO_SETTINGS };
  for (const [key, value] of Object.entries(o)) {
    if (!(key in settings)) throw new MelboError(`unknown field "${key}" (known: ${Object.keys(settings).join(", ")})`, { file });
    if (key === "prompt" || key === "positions") {
      if (typeof value !== "string" || value === "") throw new MelboError(`field "${key}" must be a non-empty string`, { file });
      if (key === "positions") {
        try {
          parsePositions(value);
        } catch (e) {
          throw new MelboError(`field "positions": ${describeError(e)}`, { file, cause: e });
        }
      }
      settings[key] = value;
      continue;
    }
    const integer = key !== "radius" && key !== "lr";
    if (typeof value !== "number" || !Number.isFinite(value) || (integer && !Number.isInteger(value)) || value < 0 || (value === 0 && !MAY_BE_ZERO.has(key))) {
      throw new MelboError(`field "${key}" must be a ${integer ? "non-negative integer" : "positive number"}, found ${JSON.stringify(value)}`, { file });
    }
    (settings as unknown as Record<string, number>)[key] = value;
  }
  return { settings, file };
}
