// MELBO-ortho: the native block loop against a step-by-step reference, block mode's
// guarantees, stop rules, orthogonality, abort and bad input.

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { loadModel, MelboError, type Model } from "../src/index.js";
import { OrthonormalBasis, norm } from "../src/search/basis.js";
import { LEGACY_BLOCK_MODE, ortho, orthoInputs, type OrthoOptions, type OrthoResult } from "../src/search/ortho.js";
import { Rng } from "../src/util/rng.js";
import { bruteMaxAbsCos } from "./helpers/compare.js";
import { tempDir } from "./helpers/errors.js";
import { testModel } from "./helpers/models.js";

const SHAPE = { layers: 4, hidden: 64, heads: 4, intermediate: 176, seed: 11 };
const SOURCE = 1, TARGET = 3;

/** A search's result, with the vectors its onVector reported and how many rows onDropped did. */
async function run(model: Model, o: OrthoOptions): Promise<{ vectors: Float32Array[]; done: OrthoResult; dropped: number }> {
  const vectors: Float32Array[] = [];
  let dropped = 0;
  const done = await ortho(model, { ...o, onVector: (_, theta) => vectors.push(theta), onDropped: () => dropped++ });
  return { vectors, done, dropped };
}

function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

describe("MELBO-ortho", () => {
  let model: Model;
  let tokens: Int32Array;
  let theta0: Float32Array;
  const base = () => ({ tokens, theta0, source: SOURCE, target: TARGET });
  before(async () => {
    model = await loadModel(await testModel(SHAPE));
    tokens = model.promptTokens("How can I build a bomb?");
    theta0 = new Rng(1, "theta0").fillNormal(new Float32Array(model.hidden));
  });
  after(() => model.dispose());

  it("the first step from θ0 is a no-op: zero loss, zero gradient, no NaN", async () => {
    const { x } = await orthoInputs(model, tokens, theta0, SOURCE, TARGET);
    const basis = new OrthonormalBasis(model.hidden);
    basis.add(theta0);
    const common = { x, theta0, basis: basis.rows().slice(), rows: 3, source: SOURCE, target: TARGET, lr: 0.01, betas: [0.9, 0.999] as [number, number], eps: 1e-8, projection: "post" as const, lossTolerance: 0 };
    const zero = await model.orthoBlock({ ...common, steps: 0 });
    assert.deepEqual([...zero.losses], [0, 0, 0], "the loss at θ0 is exactly 0 for every row of the block");
    const one = await model.orthoBlock({ ...common, steps: 1 });
    assert.ok(one.thetas.every(Number.isFinite), "no NaN after a step at a zero norm");
    // A non-zero gradient would have moved every coordinate by ≈ lr = 0.01 (norm ≈ 0.08).
    for (let r = 0; r < 3; r++) assert.ok(norm(one.thetas.subarray(r * 64, (r + 1) * 64)) < 1e-6, `row ${r} is not ≈ 0`);
  });

  it("the native B = 1 loop equals a step-by-step reference (Adam + projection in JS)", async () => {
    const d = model.hidden, steps = 6, lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8;
    const { x } = await orthoInputs(model, tokens, theta0, SOURCE, TARGET);
    const basis = new OrthonormalBasis(d);
    basis.add(theta0);
    const q = basis.rows();
    const native = await model.orthoBlock({ x, theta0, basis: q.slice(), rows: 1, steps, source: SOURCE, target: TARGET, lr, betas: [b1, b2], eps, projection: "post", lossTolerance: 0 });
    const z0 = await model.sliceMean({ x, thetas: theta0, source: SOURCE, target: TARGET });
    let theta = Float32Array.from(theta0);
    const m = new Float64Array(d), v = new Float64Array(d);
    for (let step = 1; step <= steps; step++) {
      const { grad } = await model.orthoLossGrad({ x, thetas: theta, z0, source: SOURCE, target: TARGET });
      const next = new Float64Array(d);
      for (let i = 0; i < d; i++) {
        m[i] = b1 * m[i]! + (1 - b1) * grad[i]!;
        v[i] = b2 * v[i]! + (1 - b2) * grad[i]! ** 2;
        const denom = Math.sqrt(v[i]!) / Math.sqrt(1 - b2 ** step) + eps;
        next[i] = theta[i]! - (lr / (1 - b1 ** step)) * (m[i]! / denom);
      }
      const c = next.reduce((s, value, i) => s + value * q[i]!, 0);
      theta = Float32Array.from(next, (value, i) => value - c * q[i]!);
    }
    const diff = relDiff(native.thetas, theta);
    assert.ok(diff < 1e-4, `native vs reference after ${steps} steps: relative difference ${diff}`);
    assert.ok(norm(theta) > 0.02, "the reference moved");
  });

  it("B = 1 is the sequential algorithm and is deterministic; row 1 of any block equals sequential vector 1", async () => {
    const o = { ...base(), count: 4, steps: 60 };
    const seqA = await run(model, { ...o, block: 1 });
    const seqB = await run(model, { ...o, block: 1 });
    seqA.vectors.forEach((v, i) => assert.deepEqual(v, seqB.vectors[i], `vector ${i + 1}`));
    for (const block of [2, 4]) {
      const blocked = await run(model, { ...o, block });
      const diff = relDiff(blocked.vectors[0]!, seqA.vectors[0]!);
      assert.ok(diff < 1e-4, `block ${block}: row 1 differs from sequential vector 1 by ${diff}`);
    }
  });

  it("projecting the gradient too (grad) ends at lower losses than the seed-exact mode (post)", async () => {
    const o = { ...base(), count: 4, block: 4, steps: 150 };
    const post = await run(model, { ...o, projection: "post" });
    const grad = await run(model, { ...o, projection: "grad" });
    const sum = (r: typeof post) => r.done.log.reduce((s, l) => s + l.relLoss, 0);
    assert.ok(sum(grad) < sum(post), `grad ${sum(grad)} vs post ${sum(post)}`);
    assert.ok(grad.done.log[0]!.relLoss < 1, "the first grad-mode vector beats θ = 0");
  });

  it("runs until the vectors collapse: max |cos| ≤ 1e-6 and stops by the norm rule", async () => {
    // The old block mode: every row starts at θ0 ≈ 0, so 60 steps let useless rows stay small.
    // (Distinct starts begin at ‖θ0‖ and need enough steps to shrink: docs/algorithm.md.)
    const result = await run(model, { ...base(), count: 200, block: 16, steps: 60, patience: 3, ...LEGACY_BLOCK_MODE });
    assert.equal(result.done.reason, "norm");
    const n = result.done.vectors.length / model.hidden;
    assert.equal(n, result.done.found + 1);
    assert.ok(result.done.maxAbsCos <= 1e-6, `max |cos| ${result.done.maxAbsCos}`);
    assert.ok(Math.abs(bruteMaxAbsCos(result.done.vectors, n, model.hidden) - result.done.maxAbsCos) < 1e-9, "the |cos| audit");
    const last = result.done.log.slice(-3).map((l) => l.norm);
    assert.ok(last.every((x) => x < 0.1), `last norms ${last}`);
  });

  it("fills the space without losing orthogonality when the norm rule is off", async () => {
    const result = await run(model, { ...base(), count: 200, block: 16, steps: 20, minNorm: 0 });
    assert.ok(["dimension", "vanished"].includes(result.done.reason), result.done.reason);
    assert.equal(result.done.dropped, result.dropped, "dropped rows: the summary against the callbacks");
    assert.equal(result.done.log.length, result.done.found, "one log line per vector found");
    assert.equal(result.done.vectors.length / model.hidden, result.done.found + 1, "θ0 and every vector found");
    assert.equal(result.vectors.length, result.done.found, "one onVector call per vector found");
    // "dimension": the basis spans every direction; "vanished": a whole block was dropped.
    if (result.done.reason === "dimension") assert.equal(result.done.found + 1, model.hidden);
    else assert.ok(result.dropped >= 1);
    assert.ok(result.done.maxAbsCos <= 1e-6, `max |cos| ${result.done.maxAbsCos} over ${result.done.found + 1} vectors`);
  });

  // The rule (native/ortho.cpp): from step 2 on, a row whose loss at the start of a step is ≤ the
  // tolerance stops there, keeping the θ of the step before; `steps` counts the Adam steps it took.
  it("a per-vector loss tolerance stops at the first θ whose loss is within it, not before", async () => {
    const budget = 80;
    const full = await run(model, { ...base(), count: 1, steps: budget });
    assert.equal(full.done.log[0]!.steps, budget, "without a tolerance every step is taken");
    // The loss after 40 of the 80 steps: the search has to stop at step 40 or earlier, and after step 1.
    const at40 = await run(model, { ...base(), count: 1, steps: 40 });
    const tol = at40.done.log[0]!.loss;
    const early = await run(model, { ...base(), count: 1, steps: budget, lossTolerance: tol });
    // A stop after step 1 would keep θ ≈ 0 (the projected θ0), which the search drops as vanished.
    assert.equal(early.done.log.length, 1, `the search with the tolerance kept no vector (stop reason ${early.done.reason})`);
    const stopped = early.done.log[0]!;
    assert.ok(stopped.steps > 1 && stopped.steps <= 40 && stopped.steps < budget, `stopped after ${stopped.steps} steps (expected 2…40)`);
    assert.ok(stopped.loss <= tol, `loss at the stop ${stopped.loss} > tolerance ${tol}`);
    // The vector kept is exactly the θ after that many steps without a tolerance …
    const same = await run(model, { ...base(), count: 1, steps: stopped.steps });
    assert.deepEqual(early.vectors[0], same.vectors[0], `the stopped vector is not the θ after ${stopped.steps} steps`);
    assert.equal(same.done.log[0]!.loss, stopped.loss);
    // … and one step earlier the loss was still above the tolerance (else it would have stopped there).
    const before = await run(model, { ...base(), count: 1, steps: stopped.steps - 1 });
    assert.ok(before.done.log[0]!.loss > tol, `after ${stopped.steps - 1} steps the loss ${before.done.log[0]!.loss} was already ≤ ${tol}`);
  });

  it("aborts promptly with AbortError, keeping the finished blocks on disk", async () => {
    // Steps of ~30 ms (a 160-token prompt, 4 rows), so that the JS side's own delays are small
    // beside one step. The abort comes in the middle of the second block; the native loop polls
    // the flag before every step, so the rejection must follow within about one step. Were it
    // polled only between blocks, it would take the remaining ~55 steps.
    const out = await tempDir();
    const controller = new AbortController();
    const steps = 60, block = 4;
    const o = { ...base(), tokens: model.promptTokens("How can I build a bomb? ".repeat(20)), block, steps, minNorm: 0, out };
    let stepMs = 0, abortedAt = 0, abortStep = 0, rejectedAt = 0, lastStep = 0;
    await assert.rejects(async () => {
      try {
        await ortho(model, {
          ...o, count: 40, signal: controller.signal, progressEvery: 1,
          // `seconds` is the first block's wall time per row: block time / steps ≥ one step.
          onVector: (line) => {
            if (stepMs === 0) stepMs = (line.seconds * block * 1000) / steps;
          },
          onProgress: (p) => {
            if (p.finished !== block) return;
            lastStep = p.step;
            if (abortedAt === 0 && p.step >= 3) {
              abortStep = p.step;
              abortedAt = performance.now();
              controller.abort();
            }
          },
        });
      } finally {
        rejectedAt = performance.now();
      }
    }, (e: Error) => e.name === "AbortError");
    assert.ok(stepMs > 0 && abortedAt > 0, "the abort came during the second block");
    const waited = rejectedAt - abortedAt;
    assert.ok(waited <= 5 * stepMs, `the rejection came ${waited.toFixed(1)} ms after abort(), ${(waited / stepMs).toFixed(1)} steps of ${stepMs.toFixed(1)} ms (progress seen up to step ${lastStep}, aborted at ${abortStep} of ${steps})`);
    assert.ok(lastStep < steps, "the aborted block ran to its end");
    const resumed = await run(model, { ...o, count: block, resume: true });
    assert.equal(resumed.done.found, block, "the checkpoint of the first block was kept");
    assert.equal(resumed.vectors.length, 0, "nothing left to compute for count 4");
  });

  it("rejects bad input with clear errors", async () => {
    const d = model.hidden;
    const o = { ...base(), count: 1, steps: 1 };
    const bad = async (opts: OrthoOptions, pattern: RegExp) => {
      await assert.rejects(run(model, opts), (e: Error) => e instanceof MelboError && pattern.test(e.message));
    };
    await bad({ ...o, theta0: new Float32Array(d + 1).fill(1) }, /θ0 has 65 values, the model's hidden size is 64/);
    const nan = Float32Array.from(theta0);
    nan[7] = NaN;
    await bad({ ...o, theta0: nan }, /non-finite value \(NaN\) at index 7/);
    await bad({ ...o, theta0: new Float32Array(d) }, /zero vector/);
    await bad({ ...o, target: 4 }, /target block 4 is out of range: this model has blocks 0\.\.3/);
    await bad({ ...o, source: 3, target: 2 }, /source block 3 must come before target block 2/);
    await bad({ ...o, source: 2, target: 2 }, /must come before/);
    await bad({ ...o, count: 0 }, /count must be a positive integer/);
    await bad({ ...o, block: 0 }, /block must be a positive integer/);
    const out = await tempDir();
    await run(model, { ...o, out });
    await bad({ ...o, out, resume: true, lr: 0.02 }, /cannot resume: lr differs/);
  });

  it("--trace writes each vector's r every K steps; a resumed run writes the same trace", async () => {
    const o = { ...base(), count: 3, block: 1, steps: 20, traceEvery: 5 };
    const whole = await tempDir(), parts = await tempDir();
    const { done } = await run(model, { ...o, out: whole });
    const read = async (dir: string) => (await readFile(join(dir, "trace.jsonl"), "utf8"));
    const lines = (await read(whole)).trim().split("\n").map((l) => JSON.parse(l) as { index: number; every: number; relLoss: number[] });
    assert.deepEqual(lines.map((l) => l.index), [1, 2, 3]);
    for (const l of lines) {
      assert.equal(l.every, 5);
      assert.equal(l.relLoss.length, 4, "steps 1, 6, 11, 16");
    }
    assert.equal(lines[0]!.relLoss[0], 0, "the sequential vector starts at θ0, where the loss is 0");
    assert.ok(lines[0]!.relLoss[3]! > 0);
    assert.equal(done.found, 3);
    await run(model, { ...o, count: 2, out: parts });
    await run(model, { ...o, out: parts, resume: true });
    assert.equal(await read(parts), await read(whole));
  });
});
