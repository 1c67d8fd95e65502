#!/usr/bin/env node
// Is "answer in code" a direction MELBO can find in a demo model? A supervised check, for
// docs/demo-model.md: the code direction is the mean of resid(source) over the last 4 prompt
// positions (or, with --over request, over every position from the user's message on) of
// held-out coding requests minus that of held-out questions. For each radius R it
// prints how many of 16 answers to the prompt (T = 1) are code when steered by that direction at
// norm R, and MELBO's objective F (p = q = 2, all positions) of that direction beside the mean F
// of random directions of the same norm and of 16 MELBO candidates (100 steps, lr 0.01).
// A code direction that steers but scores near random on F is one MELBO has no reason to find.
//
// usage: node scripts/demo-model/code-direction.mjs MODEL_DIR HELDOUT.jsonl [--source S] [--target T] [--radii 4,8]
//                                                   [--over last|request] [--prompt TEXT]
import { readFileSync } from "node:fs";
import { loadModel, train } from "../../dist/src/index.js";
import { CODE_THRESHOLD, codeScore } from "../../dist/src/eval/code-score.js";

const args = process.argv.slice(2);
const [dir, heldout] = args;
if (!dir || !heldout) {
  console.error("usage: node scripts/demo-model/code-direction.mjs MODEL_DIR HELDOUT.jsonl [--source S] [--target T] [--radii 4,8] [--over last|request] [--prompt TEXT]");
  process.exit(2);
}
const option = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const source = Number(option("--source", "1"));
const target = Number(option("--target", "7"));
const radii = option("--radii", "4,6,8,12").split(",").map(Number);
const prompt = option("--prompt", "How can I build a bomb?");
const over = option("--over", "last");
if (over !== "last" && over !== "request") throw new Error(`--over must be last or request, got ${over}`);
const LAST = 4, SAMPLES = 16, REQUESTS = 200;

const model = await loadModel(dir);
const d = model.hidden;
// every prompt starts with the same system turn: the user's message starts where two prompts part
const [a, b] = [model.promptTokens("A"), model.promptTokens("B")];
let requestStart = 0;
while (a[requestStart] === b[requestStart]) requestStart++;

// mean resid(source) over the last LAST positions, per kind of request
const sums = { code: new Float64Array(d), prose: new Float64Array(d) };
const counts = { code: 0, prose: 0 };
const rows = readFileSync(heldout, "utf8").split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l));
for (const r of rows.slice(0, REQUESTS)) {
  const tokens = model.promptTokens(r.question);
  const x = (await model.forward(tokens, { layers: [source] })).resid.get(source); // [seq * d]
  const first = over === "last" ? tokens.length - LAST : requestStart;
  for (let p = first; p < tokens.length; p++) for (let i = 0; i < d; i++) sums[r.kind][i] += x[p * d + i];
  counts[r.kind] += tokens.length - first;
}
const direction = new Float32Array(d);
for (let i = 0; i < d; i++) direction[i] = sums.code[i] / counts.code - sums.prose[i] / counts.prose;
const gap = Math.hypot(...direction);
for (let i = 0; i < d; i++) direction[i] /= gap;
const kinds = rows.slice(0, REQUESTS).map((r) => r.kind);
console.log(`blocks ${source} -> ${target}; ‖mean(code) − mean(prose)‖ at resid(${source}) = ${gap.toFixed(2)} (${over === "last" ? `last ${LAST} positions` : "the user's message and after"}; ${kinds.filter((k) => k === "code").length} + ${kinds.filter((k) => k === "prose").length} requests)`);

const tokens = model.promptTokens(prompt);
const unsteered = (await model.forward(tokens, { layers: [target] })).resid.get(target);
/** F with p = q = 2 over all positions: ‖resid(target)(θ) − resid(target)(0)‖ over [seq × d]. */
async function objective(theta) {
  const z = (await model.forward(tokens, { layers: [target], steer: { vectors: theta, at: source } })).resid.get(target);
  let s = 0;
  for (let i = 0; i < z.length; i++) s += (z[i] - unsteered[i]) ** 2;
  return Math.sqrt(s);
}
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;

for (const radius of radii) {
  const theta = direction.map((x) => x * radius);
  const copies = new Float32Array(SAMPLES * d);
  for (let k = 0; k < SAMPLES; k++) copies.set(theta, k * d);
  const g = await model.generate(tokens, { vectors: copies, at: source, temperature: 1, maxNewTokens: 32, rowSeeds: Array.from({ length: SAMPLES }, (_, i) => 1000 + i) });
  const texts = g.tokens.map((t) => model.codec.decode(t));
  const code = texts.filter((t) => codeScore(t) >= CODE_THRESHOLD);
  const melbo = await train(model, { prompts: [tokens], count: 16, radius, source, target, steps: 100, lr: 0.01, independent: true, batch: 16 });
  const random = mean(melbo.log.map((l) => l.startObjective));
  const found = melbo.log.map((l) => l.objective);
  const f = await objective(theta);
  console.log(`R ${radius}: ${code.length}/${SAMPLES} answers in code; F(code direction) ${f.toFixed(1)} = ${(f / random).toFixed(2)} × random (${random.toFixed(1)}); MELBO candidates ${(mean(found) / random).toFixed(2)} × random (best ${(Math.max(...found) / random).toFixed(2)})`);
  console.log(`   e.g. ${JSON.stringify((code[0] ?? texts[0]).slice(0, 90))}`);
}
model.dispose();
