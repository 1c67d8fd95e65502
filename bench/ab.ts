// A/B of one environment switch on the 1.8B-shaped slice, alternating A, B, A, B… in one process
// so that both sides see the same machine state. How each lever in bench/NOTES.md was measured:
//   node dist/bench/ab.js --env MELBO_ATTENTION --values torch, --rows 16 [--steps 3 --rounds 3 --dtype f32 --dir DIR]
// An empty value unsets the variable (the default). The checkpoint in DIR (default the
// benchmark's, $TMPDIR/melbo-bench-1p8b) is written when missing and kept.

import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { makeTestModel } from "../src/model/make-test-model.js";
import { loadModel } from "../src/model/model.js";
import { Rng } from "../src/util/rng.js";
import { PROMPT_TOKENS, QWEN15_1P8B, basisOf, fmt, median } from "./lib.js";

const argv = process.argv.slice(2);
const arg = (name: string, fallback: string): string => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : fallback;
};
const ENV = arg("env", "");
const VALUES = arg("values", "").split(",");
const ROWS = Number(arg("rows", "16"));
const STEPS = Number(arg("steps", "3"));
const ROUNDS = Number(arg("rounds", "3"));
const DTYPE = arg("dtype", "f32") as "f32" | "bf16";
const DIR = resolve(arg("dir", join(tmpdir(), "melbo-bench-1p8b")));
const SOURCE = 8, TARGET = 16;

async function main(): Promise<void> {
  if (!ENV || VALUES.length < 2) throw new Error("usage: ab.js --env NAME --values A,B [--rows 16 --steps 3 --rounds 3 --dtype f32 --dir DIR]");
  if (!existsSync(join(DIR, "model.safetensors"))) {
    process.stderr.write(`writing the 1.8B-shaped checkpoint to ${DIR}\n`);
    await makeTestModel(DIR, QWEN15_1P8B);
  }
  const full = await loadModel(DIR, { dtype: "f32", blocks: { from: 0, to: SOURCE } });
  const x = (await full.forward(PROMPT_TOKENS, { layers: [SOURCE] })).resid.get(SOURCE)!;
  full.dispose();
  const model = await loadModel(DIR, { dtype: DTYPE, blocks: { from: SOURCE + 1, to: TARGET } });
  const d = model.hidden;
  const theta0 = new Rng(1, "ab").fillNormal(new Float32Array(d));
  const basis = basisOf(theta0);
  const times = new Map<string, number[]>(VALUES.map((v) => [v, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const value of VALUES) {
      if (value === "") delete process.env[ENV];
      else process.env[ENV] = value;
      const stamps: number[] = [];
      await model.orthoBlock(
        { x, theta0, basis, rows: ROWS, steps: STEPS, source: SOURCE, target: TARGET, lr: 0.01, betas: [0.9, 0.999], eps: 1e-8, projection: "post", lossTolerance: 0, progressEvery: 1 },
        () => stamps.push(performance.now()),
      );
      const perStep = (stamps[stamps.length - 1]! - stamps[0]!) / (stamps.length - 1) / 1000;
      times.get(value)!.push(perStep);
      process.stderr.write(`round ${round + 1}: ${ENV}=${value || "(unset)"}: ${fmt(perStep, 3)} s/step\n`);
    }
  }
  model.dispose();
  const med = VALUES.map((v) => median(times.get(v)!));
  for (const [i, v] of VALUES.entries()) {
    process.stdout.write(`${ENV}=${v || "(unset)"}: median ${fmt(med[i]!, 3)} s/step over ${ROUNDS} calls (B = ${ROWS}, ${DTYPE}); ×${fmt(med[0]! / med[i]!, 3)} vs the first\n`);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
