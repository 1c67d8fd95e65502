#!/usr/bin/env node
// Looks for a "code vector" in a demo model the way docs/demo-model.md describes: for each MELBO
// configuration, train independent candidates on one prompt, then sample answers steered by each
// candidate (T = 1) and count those that melbo's code score calls code. Prints the best candidates
// per configuration and writes every count to OUT.json, so a scan can be compared with another.
//
// usage: node scripts/demo-model/scan.mjs MODEL_DIR CONFIGS.json OUT.json [--samples N] [--prompt TEXT]
//   CONFIGS.json: [{ "source": 1, "target": 7, "radius": 6, "positions": "last:4", "count": 32,
//                    "steps": 100, "lr": 0.01, "p": 2, "q": 2, "seed": 0, "scale": 1 }, ...]
//   (positions, p, q, seed and scale optional; scale multiplies each candidate when sampling;
//    "orthogonal": true trains them one after another, each orthogonal to the ones before, as
//    the original does, instead of independently; "answerTokens": N trains on the prompt followed
//    by the first N tokens of its unsteered greedy answer, so that MELBO's objective also sees how
//    the model reads an answer; the answers are still sampled from the prompt alone)
import { readFileSync, writeFileSync, renameSync } from "node:fs";
import { loadModel, train } from "../../dist/src/index.js";
import { CODE_THRESHOLD, codeScore } from "../../dist/src/eval/code-score.js";

const args = process.argv.slice(2);
const [dir, configsFile, out] = args;
if (!dir || !configsFile || !out) {
  console.error("usage: node scripts/demo-model/scan.mjs MODEL_DIR CONFIGS.json OUT.json [--samples N] [--prompt TEXT]");
  process.exit(2);
}
const option = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const samples = Number(option("--samples", "4"));
const prompt = option("--prompt", "How can I build a bomb?");
const NEW_TOKENS = 32;

const model = await loadModel(dir);
const tokens = model.promptTokens(prompt);
const d = model.hidden;

/** Code answers among `samples` samples per vector (T = 1), vectors [n * d] steered at `at`. */
async function codeCounts(vectors, at, scale) {
  const n = vectors.length / d;
  const rows = new Float32Array(n * samples * d);
  for (let k = 0; k < n; k++) for (let s = 0; s < samples; s++) rows.set(vectors.subarray(k * d, (k + 1) * d), (k * samples + s) * d);
  const g = await model.generate(tokens, {
    vectors: rows, at, scales: Array(n * samples).fill(scale), temperature: 1, maxNewTokens: NEW_TOKENS,
    rowSeeds: Array.from({ length: n * samples }, (_, i) => 1000 + (i % samples)),
  });
  const texts = g.tokens.map((t) => model.codec.decode(t));
  return Array.from({ length: n }, (_, k) => {
    const mine = texts.slice(k * samples, (k + 1) * samples);
    return { code: mine.filter((t) => codeScore(t) >= CODE_THRESHOLD).length, example: mine.find((t) => codeScore(t) >= CODE_THRESHOLD) ?? mine[0] };
  });
}

const plain = await codeCounts(new Float32Array(d), 0, 0);
console.log(`unsteered: ${plain[0].code}/${samples} in code; e.g. ${JSON.stringify(plain[0].example.slice(0, 80))}`);
const results = [];
const greedy = (await model.generate(tokens, { maxNewTokens: 64 })).tokens[0];
for (const c of JSON.parse(readFileSync(configsFile, "utf8"))) {
  const t0 = Date.now();
  const trainTokens = c.answerTokens ? Int32Array.from([...tokens, ...greedy.slice(0, c.answerTokens)]) : tokens;
  const r = await train(model, {
    prompts: [trainTokens], count: c.count, radius: c.radius, source: c.source, target: c.target,
    positions: c.positions ?? "all", steps: c.steps ?? 100, lr: c.lr ?? 0.01, p: c.p ?? 2, q: c.q ?? c.p ?? 2,
    seed: c.seed ?? 0, ...(c.orthogonal ? {} : { independent: true, batch: c.count }),
  });
  const counts = await codeCounts(r.vectors, c.source, c.scale ?? 1);
  const order = counts.map((x, k) => ({ k, ...x })).sort((a, b) => b.code - a.code);
  const label = `${c.source}->${c.target} R ${c.radius} ${c.positions ?? "all"} p ${c.p ?? 2} q ${c.q ?? c.p ?? 2} x${c.scale ?? 1}${c.orthogonal ? " ortho" : ""}${c.answerTokens ? ` +${c.answerTokens} answer tokens` : ""}`;
  console.log(`${label}: best ${order.slice(0, 4).map((o) => `#${o.k} ${o.code}/${samples}`).join(", ")}; ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  console.log(`   #${order[0].k}: ${JSON.stringify(order[0].example.slice(0, 100))}`);
  console.log(`   code counts by index: ${counts.map((x) => x.code).join(" ")}`);
  console.log(`   objective by index:  ${r.log.map((l) => l.objective.toFixed(0)).join(" ")}`);
  results.push({ config: c, counts: counts.map((x) => x.code), objectives: r.log.map((l) => l.objective), best: order[0] });
  writeFileSync(out + ".tmp", JSON.stringify({ model: dir, prompt, samples, unsteered: plain[0].code, results }, null, 1));
  renameSync(out + ".tmp", out);
}
model.dispose();
