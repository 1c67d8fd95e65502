// Parity of melbo's libtorch model against an independent Python/torch Qwen2 written from
// Hugging Face's maths (test/reference/qwen2_reference.py): hidden states of every block and
// logits, the MELBO-ortho loss and its gradient through the slice map, and steering.
//
// The reference runs in float64, so the measured errors are melbo's own f32 rounding. It needs
// torch under /usr/bin/python3: without it these tests fail (they never skip silently).

import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import { loadModel } from "../src/index.js";
import { Rng } from "../src/util/rng.js";
import { testModel } from "./helpers/models.js";
import { checkPythonTorch, referenceHidden, referenceSlice } from "./helpers/python-reference.js";

// The original experiments' prompt (docs/algorithm.md §1): real token ids, chat special tokens included.
const PROMPT = Int32Array.from([
  151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 872, 198, 4340, 646, 358, 1936, 264,
  12764, 30, 151645, 198, 151644, 77091, 198,
]);
const SEQ = PROMPT.length;
const SOURCE = 1; // source block
const TARGET = 3; // target block
const TOL = 1e-5; // relative, for activations and logits (f32 against float64 truth)
const GRAD_TOL = 1e-4; // relative, for the gradient (backward adds rounding)

// ---------------------------------------------------------------- comparison helpers

/** The part of node:test's context used here (@types/node 20.9 does not export the class). */
interface TestContext {
  diagnostic(message: string): void;
}

function norm(a: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * a[i]!;
  return Math.sqrt(s);
}

/** ‖a − b‖ / ‖b‖ */
function relErr(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length, "length mismatch");
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return Math.sqrt(s) / norm(b);
}

/**
 * max_i |a_i − b_i| / (|b_i| + rms(b)): a relative error per element that does not blow up for
 * elements near 0 (those are judged against the tensor's typical size instead).
 */
function elemErr(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length, "length mismatch");
  const rms = norm(b) / Math.sqrt(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / (Math.abs(b[i]!) + rms));
  return worst;
}

function expectClose(t: TestContext, what: string, a: Float32Array, b: Float32Array, tol: number): void {
  const rel = relErr(a, b);
  const elem = elemErr(a, b);
  t.diagnostic(`${what}: rel ${rel.toExponential(2)}, elementwise ${elem.toExponential(2)}`);
  assert.ok(Number.isFinite(rel) && rel <= tol, `${what}: relative error ${rel} > ${tol}`);
  assert.ok(Number.isFinite(elem) && elem <= tol, `${what}: elementwise error ${elem} > ${tol}`);
}

function row(a: Float32Array, i: number, size: number): Float32Array {
  return a.subarray(i * size, (i + 1) * size);
}

function randomVectors(seed: number, count: number, d: number, length: number): Float32Array {
  const rng = new Rng(seed, "parity-python");
  const out = new Float32Array(count * d);
  for (let b = 0; b < count; b++) {
    const v = rng.fillNormal(row(out, b, d));
    const n = norm(v);
    for (let i = 0; i < d; i++) v[i] = (v[i]! * length) / n;
  }
  return out;
}

function meanOverPositions(resid: Float32Array, seq: number, d: number): Float32Array {
  const z = new Float32Array(d);
  for (let p = 0; p < seq; p++) for (let i = 0; i < d; i++) z[i]! += resid[p * d + i]! / seq;
  return z;
}

// ---------------------------------------------------------------- models

// Each reference run costs a Python start with torch (seconds): the unsteered forward of a model
// is shared by the tests that need it.
const unsteered = new Map<string, ReturnType<typeof referenceHidden>>();
function referenceForward(dir: string, layers: number): ReturnType<typeof referenceHidden> {
  let p = unsteered.get(dir);
  if (p === undefined) {
    p = referenceHidden(dir, layers, PROMPT, { float64: true });
    unsteered.set(dir, p);
  }
  return p;
}

const UNTIED = { layers: 4, hidden: 64, heads: 4, kvHeads: 4, intermediate: 176, tied: false, seed: 11 };
const GQA = { layers: 4, hidden: 128, heads: 8, kvHeads: 2, intermediate: 344, tied: true, seed: 12 };

before(async () => {
  // Fails (does not skip) when /usr/bin/python3 has no torch, with a message saying what to install.
  await checkPythonTorch();
});

// ---------------------------------------------------------------- (a) hidden states and logits

describe("parity with the Python reference: forward", () => {
  for (const [name, shape] of [
    ["untied MHA", UNTIED],
    ["tied GQA", GQA],
  ] as const) {
    it(`resid(k) of every block and logits, ${name}`, async (t) => {
      const dir = await testModel(shape);
      const ref = await referenceForward(dir, shape.layers);
      const model = await loadModel(dir, { dtype: "f32" });
      try {
        const layers = Array.from({ length: shape.layers }, (_, k) => k);
        const out = await model.forward(PROMPT, { layers, logits: true });
        assert.equal(out.batch, 1);
        assert.equal(out.seq, SEQ);
        for (const k of layers) {
          const mine = out.resid.get(k);
          assert.ok(mine, `no resid(${k}) returned`);
          expectClose(t, `resid(${k})`, mine, ref.resid[k]!, TOL);
        }
        assert.ok(out.logits, "no logits returned");
        assert.equal(out.logits.length, SEQ * ref.vocab);
        expectClose(t, "logits", out.logits, ref.logits, TOL);
      } finally {
        model.dispose();
      }
    });
  }

  it("BF16 weights, f32 compute, match the reference on the same (upcast) weights", async (t) => {
    const shape = { ...GQA, tied: false, seed: 13 };
    const dir = await testModel({ ...shape, dtype: "BF16" });
    const ref = await referenceForward(dir, shape.layers);
    const model = await loadModel(dir, { dtype: "f32" });
    try {
      const layers = Array.from({ length: shape.layers }, (_, k) => k);
      const out = await model.forward(PROMPT, { layers, logits: true });
      for (const k of layers) expectClose(t, `resid(${k})`, out.resid.get(k)!, ref.resid[k]!, TOL);
      expectClose(t, "logits", out.logits!, ref.logits, TOL);
    } finally {
      model.dispose();
    }
  });
});

// ---------------------------------------------------------------- (b) MELBO-ortho loss and gradient, (c) steering

describe("parity with the Python reference: slice map, loss, gradient, steering", () => {
  const shape = GQA;
  const d = shape.hidden;
  let dir: string;
  let x: Float32Array; // resid(S) of the unsteered prompt, from the float64 reference
  let z0: Float32Array; // z(θ0) for a θ0 unrelated to the θ under test, so the loss is not 0

  before(async () => {
    dir = await testModel(shape);
    x = (await referenceForward(dir, shape.layers)).resid[SOURCE]!;
    const theta0 = randomVectors(100, 1, d, 7);
    const ref0 = await referenceSlice(dir, { x, thetas: theta0, z0: new Float32Array(d), source: SOURCE, target: TARGET }, { float64: true });
    z0 = meanOverPositions(ref0.residT, SEQ, d);
  });

  it("loss and dθ loss agree for B = 3 different θ", async (t) => {
    const thetas = randomVectors(1, 3, d, 4);
    const ref = await referenceSlice(dir, { x, thetas, z0, source: SOURCE, target: TARGET }, { float64: true });
    const model = await loadModel(dir, { dtype: "f32" });
    try {
      const g = await model.orthoLossGrad({ x, thetas, z0, source: SOURCE, target: TARGET });
      assert.equal(g.loss.length, 3);
      assert.equal(g.grad.length, 3 * d);
      for (let b = 0; b < 3; b++) {
        assert.ok(ref.loss[b]! > 0.1, "the loss under test should not be near 0");
        const lossRel = Math.abs(g.loss[b]! - ref.loss[b]!) / ref.loss[b]!;
        t.diagnostic(`row ${b}: loss ${g.loss[b]} vs ${ref.loss[b]} (rel ${lossRel.toExponential(2)})`);
        assert.ok(lossRel <= TOL, `row ${b}: loss relative error ${lossRel} > ${TOL}`);
        expectClose(t, `row ${b} grad`, row(g.grad, b, d), row(ref.grad, b, d), GRAD_TOL);
      }
    } finally {
      model.dispose();
    }
  });

  it("steering θ_b at block s: resid(t) equals the reference slice map on resid(s) + θ_b, and the orthoLossGrad loss", async (t) => {
    const B = 2;
    const thetas = randomVectors(2, B, d, 5);
    const ref = await referenceSlice(dir, { x, thetas, z0, source: SOURCE, target: TARGET }, { float64: true });
    const model = await loadModel(dir, { dtype: "f32" });
    try {
      const tokens = new Int32Array(B * SEQ);
      for (let b = 0; b < B; b++) tokens.set(PROMPT, b * SEQ);
      const out = await model.forward(tokens, { layers: [SOURCE, TARGET], logits: true, steer: { vectors: thetas, at: SOURCE } });
      assert.equal(out.batch, B);
      assert.equal(out.seq, SEQ);
      const residS = out.resid.get(SOURCE)!;
      const residT = out.resid.get(TARGET)!;
      // The same x through melbo's own slice path (orthoLossGrad) must give the same loss.
      const g = await model.orthoLossGrad({ x, thetas, z0, source: SOURCE, target: TARGET });
      for (let b = 0; b < B; b++) {
        // resid(s) += θ (docs/algorithm.md §1): the steered resid(s) is the unsteered one plus θ_b.
        const expectS = new Float32Array(SEQ * d);
        for (let p = 0; p < SEQ; p++) for (let i = 0; i < d; i++) expectS[p * d + i] = x[p * d + i]! + thetas[b * d + i]!;
        expectClose(t, `row ${b} resid(s)`, row(residS, b, SEQ * d), expectS, TOL);
        expectClose(t, `row ${b} resid(t)`, row(residT, b, SEQ * d), row(ref.residT, b, SEQ * d), TOL);
        const z = meanOverPositions(row(residT, b, SEQ * d), SEQ, d);
        let s = 0;
        for (let i = 0; i < d; i++) s += (z[i]! - z0[i]!) ** 2;
        const lossFromForward = Math.sqrt(s);
        const rel = Math.abs(lossFromForward - g.loss[b]!) / g.loss[b]!;
        t.diagnostic(`row ${b}: loss from steered forward ${lossFromForward}, orthoLossGrad ${g.loss[b]}, reference ${ref.loss[b]} (rel ${rel.toExponential(2)})`);
        assert.ok(rel <= TOL, `row ${b}: steered-forward loss and orthoLossGrad loss differ by ${rel}`);
      }
      // The two rows carry different vectors: they must not come out equal.
      assert.ok(relErr(row(residT, 0, SEQ * d), row(residT, 1, SEQ * d)) > 1e-3, "rows 0 and 1 should differ");
      // Steered logits against a full reference forward (tokens → logits) with θ_b at block s.
      const full = await referenceHidden(dir, shape.layers, PROMPT, { float64: true, steer: { theta: thetas, at: SOURCE, rows: B } });
      for (let b = 0; b < B; b++) {
        expectClose(t, `row ${b} steered resid(t), full forward`, row(residT, b, SEQ * d), row(full.resid[TARGET]!, b, SEQ * d), TOL);
        expectClose(t, `row ${b} steered logits`, row(out.logits!, b, SEQ * full.vocab), row(full.logits, b, SEQ * full.vocab), TOL);
      }
    } finally {
      model.dispose();
    }
  });
});
