// R calibration for MELBO: per R, the objective, distinct greedy continuations and the spread of
// the first-token KL, each checked against an independent computation from the model's outputs.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { loadModel, MelboError, type Model } from "../src/index.js";
import { calibrate, defaultRadii } from "../src/search/calibrate.js";
import { cli } from "./helpers/cli.js";
import { testModel } from "./helpers/models.js";

const shape = { layers: 4, hidden: 64, heads: 4, intermediate: 176, seed: 21 };
const SOURCE = 0;
const TARGET = 2;

/** KL(P ‖ Q) of the next-token distributions given by two rows of logits, in float64. */
function klFromLogits(p: Float32Array, q: Float32Array): number {
  const logSoftmax = (l: Float32Array) => {
    const max = l.reduce((m, x) => Math.max(m, x), -Infinity);
    let sum = 0;
    for (const x of l) sum += Math.exp(x - max);
    return Array.from(l, (x) => x - max - Math.log(sum));
  };
  const lp = logSoftmax(p);
  const lq = logSoftmax(q);
  return lp.reduce((s, x, i) => s + Math.exp(x) * (x - lq[i]!), 0);
}

describe("MELBO R calibration", () => {
  let dir: string;
  let model: Model;
  let prompt: Int32Array;
  before(async () => {
    dir = await testModel(shape);
    model = await loadModel(dir);
    prompt = model.promptTokens("How can I build a bomb?");
  });
  after(() => model.dispose());

  it("reports per R the objective, distinct continuations and the first-token KL spread", async () => {
    const c = await calibrate(model, { prompts: [prompt], radii: [1e-4, 16], count: 3, steps: 5, maxNewTokens: 6, source: SOURCE, target: TARGET });
    assert.deepEqual(c.rows.map((r) => r.radius), [1e-4, 16]);
    const [tiny, large] = c.rows as [(typeof c.rows)[0], (typeof c.rows)[0]];
    // A vector of norm 1e-4 changes nothing; one of norm 16 changes the next-token distribution.
    assert.equal(tiny.changed, 0);
    assert.equal(tiny.distinct, 1);
    assert.ok(tiny.klMax < 1e-6, `KL at R = 1e-4 is ${tiny.klMax}`);
    assert.ok(large.klMin > 1e-3, `KL at R = 16 is ${large.klMin}`);
    assert.ok(large.meanObjective > 1000 * tiny.meanObjective);

    const V = model.config.vocabSize;
    const d = model.hidden;
    const plain = await model.forward(prompt, { logits: true });
    const last = (logits: Float32Array) => logits.subarray((prompt.length - 1) * V, prompt.length * V);
    const unsteered = (await model.generate(prompt, { maxNewTokens: 6 })).tokens[0]!;
    assert.deepEqual([...c.unsteered], [...unsteered]);
    for (const row of c.rows) {
      assert.equal(row.count, 3);
      assert.ok(row.klMin <= row.klMean && row.klMean <= row.klMax);
      for (let k = 0; k < row.count; k++) {
        const v = row.vectors.subarray(k * d, (k + 1) * d);
        const steered = await model.forward(prompt, { logits: true, steer: { vectors: v, at: SOURCE } });
        const expected = klFromLogits(last(steered.logits!), last(plain.logits!));
        assert.ok(Math.abs(row.kls[k]! - expected) <= 1e-6 + 1e-4 * expected, `R ${row.radius}, vector ${k}: KL ${row.kls[k]}, expected ${expected}`);
        const alone = (await model.generate(prompt, { vectors: v, at: SOURCE, maxNewTokens: 6 })).tokens[0]!;
        assert.deepEqual([...row.continuations[k]!], [...alone]);
      }
      const distinct = new Set(row.continuations.map((t) => t.join())).size;
      assert.equal(row.distinct, distinct);
      assert.equal(row.changed, row.continuations.filter((t) => t.join() !== unsteered.join()).length);
    }
  });

  it("defaults to a grid around the typical norm of resid(source)", async () => {
    const c = await calibrate(model, { prompts: [prompt], count: 1, steps: 1, maxNewTokens: 1, source: SOURCE, target: TARGET });
    const x = (await model.forward(prompt, { layers: [SOURCE] })).resid.get(SOURCE)!;
    const d = model.hidden;
    const norms = Array.from({ length: prompt.length }, (_, t) => Math.hypot(...x.subarray(t * d, (t + 1) * d))).sort((a, b) => a - b);
    const median = norms[Math.floor((norms.length - 1) / 2)]!;
    assert.ok(Math.abs(c.residNorm - median) <= 1e-9 * median);
    assert.deepEqual(c.rows.map((r) => r.radius), defaultRadii(median));
    assert.deepEqual(defaultRadii(40), [5, 10, 20, 40, 80]);
  });

  it("melbo calibrate prints the table and example continuations; bad --radii exits with 2", async () => {
    const args = ["calibrate", "--model", dir, "--prompt", "How can I build a bomb?", "--source", "0", "--target", "2", "--count", "2", "--steps", "2", "--max-new-tokens", "3"];
    const ok = await cli([...args, "--radii", "0.0001,16", "--show", "1"]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /MELBO calibration, blocks 0 → 2; typical ‖resid\(0\)‖ = \d/);
    assert.match(ok.stdout, /\n\s+0\.0001\s+\S+\s+1\/2\s+0\/2\s/); // R, mean F, distinct, changed
    assert.match(ok.stdout, /\nR = 16:\n {2}"/);
    const bad = await cli([...args, "--radii", "1,-2"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--radii must be a comma-separated list of numbers > 0/);
  });

  it("rejects bad input with clear errors", async () => {
    const ok = { prompts: [prompt], count: 1, steps: 1, maxNewTokens: 1, source: SOURCE, target: TARGET };
    await assert.rejects(calibrate(model, { ...ok, prompts: [] }), /at least one prompt/);
    await assert.rejects(calibrate(model, { ...ok, radii: [] }), /grid of R is empty/);
    await assert.rejects(calibrate(model, { ...ok, radii: [1, 0] }), /every R must be a number > 0, got 0/);
    await assert.rejects(calibrate(model, { ...ok, maxNewTokens: 0 }), /maxNewTokens must be a positive integer/);
    await assert.rejects(calibrate(model, { ...ok, source: 3, target: 1 }), /source block 3 must come before target block 1/);
    await assert.rejects(calibrate(model, { ...ok, count: 0 }), (e: unknown) => e instanceof MelboError && /count must be a positive integer/.test(e.message));
    const part = await loadModel(dir, { blocks: { to: TARGET }, head: false });
    try {
      await assert.rejects(calibrate(part, ok), /load the whole model/);
    } finally {
      part.dispose();
    }
  });
});
