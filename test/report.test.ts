// What a user reads after a search (docs/algorithm.md §2 "Relative loss", §4): the |cos| audit
// (src/search/basis.ts maxAbsCosine), the relative loss r = ‖z(θ) − z0‖ / ‖z0 − z(0)‖, its
// summary statistics and the random-direction baseline (src/eval/ortho-report.ts). Hand-computable
// cases first; then r and the baseline against z(θ) computed here from steered forwards (blocks
// 0…target with θ added at the source), not with the slice map the library uses.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { randomBaseline, relLossStats } from "../src/eval/ortho-report.js";
import { loadModel, type Model } from "../src/index.js";
import { maxAbsCosine } from "../src/search/basis.js";
import { ortho, orthoInputs } from "../src/search/ortho.js";
import { Rng } from "../src/util/rng.js";
import { testModel } from "./helpers/models.js";

describe("maxAbsCosine", () => {
  const cos = (rows: number[][]) => maxAbsCosine(Float32Array.from(rows.flat()), rows.length, rows[0]!.length);

  it("is the largest |cos| over pairs of distinct rows", () => {
    assert.equal(cos([[1, 0], [0, 1]]), 0);
    assert.equal(cos([[3, 4], [4, 3]]), 24 / 25); // (12 + 12) / (5 · 5)
    assert.equal(cos([[3, 4], [-4, -3]]), 24 / 25, "the absolute value");
    assert.equal(cos([[2, 0], [-5, 0]]), 1, "antiparallel");
    // The worst pair is neither the first nor the last: rows 1 and 2 (1/√2), rows 0 and 2 (0).
    assert.ok(Math.abs(cos([[1, 0, 0], [0, 1, 0], [0, 1, 1], [0, 0, 7]]) - Math.SQRT1_2) < 1e-15);
    // Scale does not matter.
    assert.ok(Math.abs(cos([[1e-3, 2e-3], [300, 0]]) - 1 / Math.sqrt(5)) < 1e-7);
  });

  it("skips rows of norm 0, reads only the first n rows, and is 0 for fewer than two rows", () => {
    assert.equal(cos([[0, 0], [1, 0], [0, 2]]), 0, "a zero row has no direction");
    assert.equal(cos([[0, 0], [0, 0]]), 0);
    assert.equal(cos([[1, 1]]), 0);
    assert.equal(maxAbsCosine(Float32Array.from([1, 0, 0, 1, 1, 1]), 2, 2), 0, "row 2 ([1, 1]) is past n = 2");
    assert.equal(maxAbsCosine(new Float32Array(0), 0, 3), 0);
  });
});

describe("relLossStats", () => {
  it("counts r < 1 and r ≤ 0.5, and gives the best and the median (the lower middle value for an even count)", () => {
    const r = [0.9, 1, 0.5, 1.2, 0.3];
    assert.deepEqual(relLossStats(r), { count: 5, beatZero: 3, half: 2, best: 0.3, median: 0.9 });
    assert.deepEqual(r, [0.9, 1, 0.5, 1.2, 0.3], "the input is not reordered");
    // Sorted 0.2 0.6 0.7 1.5: the two middle values are 0.6 and 0.7; relLossStats reports 0.6.
    assert.deepEqual(relLossStats([1.5, 0.7, 0.2, 0.6]), { count: 4, beatZero: 3, half: 1, best: 0.2, median: 0.6 });
    assert.deepEqual(relLossStats([1]), { count: 1, beatZero: 0, half: 0, best: 1, median: 1 }, "r = 1 is θ = 0: it does not beat it");
    assert.deepEqual(relLossStats([0.5, 0.5000001]), { count: 2, beatZero: 2, half: 1, best: 0.5, median: 0.5 });
    // Numbers, not strings: [10, 9, 0.7] sorted as text would put 10 first.
    assert.deepEqual(relLossStats([10, 9, 0.7]), { count: 3, beatZero: 1, half: 0, best: 0.7, median: 9 });
    const empty = relLossStats([]);
    assert.equal(empty.count, 0);
    assert.ok(Number.isNaN(empty.best) && Number.isNaN(empty.median));
  });
});

describe("relative loss r and the random baseline", () => {
  const SOURCE = 1, TARGET = 3;
  let model: Model;
  let tokens: Int32Array;
  let theta0: Float32Array;
  let d: number;

  /** z(θ) for each row of `thetas` [B * d]: the mean over positions of resid(T) with θ added to resid(S), in float64. */
  async function zOf(thetas: Float32Array): Promise<Float64Array[]> {
    const B = thetas.length / d, seq = tokens.length;
    const batch = new Int32Array(B * seq);
    for (let b = 0; b < B; b++) batch.set(tokens, b * seq);
    const resid = (await model.forward(batch, { layers: [TARGET], steer: { vectors: thetas, at: SOURCE } })).resid.get(TARGET)!;
    return Array.from({ length: B }, (_, b) => {
      const z = new Float64Array(d);
      for (let t = 0; t < seq; t++) for (let i = 0; i < d; i++) z[i]! += resid[(b * seq + t) * d + i]! / seq;
      return z;
    });
  }
  const dist = (a: Float64Array, b: Float64Array) => Math.sqrt(a.reduce((s, x, i) => s + (x - b[i]!) ** 2, 0));

  before(async () => {
    model = await loadModel(await testModel({ layers: 4, hidden: 64, heads: 4, intermediate: 176, seed: 11 }));
    d = model.hidden;
    tokens = model.promptTokens("How can I build a bomb?");
    theta0 = new Rng(1, "theta0").fillNormal(new Float32Array(d));
  });
  after(() => model.dispose());

  it("the denominator is ‖z0 − z(0)‖; r(0) = 1 and r(θ0) = 0 to float32 rounding", async () => {
    const { x, z0, denominator } = await orthoInputs(model, tokens, theta0, SOURCE, TARGET);
    const [zTheta0, zZero] = await zOf(Float32Array.from([...theta0, ...new Float32Array(d)]));
    const expected = dist(zTheta0!, zZero!);
    assert.ok(Math.abs(denominator - expected) <= 1e-6 * expected, `denominator ${denominator}, steered forwards ${expected}`);
    // The loss the search reports, at θ = 0 and at θ0, through the library's slice map.
    const { loss } = await model.orthoLossGrad({ x, thetas: Float32Array.from([...new Float32Array(d), ...theta0]), z0, source: SOURCE, target: TARGET });
    const rZero = loss[0]! / denominator, rTheta0 = loss[1]! / denominator;
    assert.ok(Math.abs(rZero - 1) <= 1e-6, `r(θ = 0) = ${rZero}`);
    assert.ok(rTheta0 <= 1e-6, `r(θ0) = ${rTheta0}`);
  });

  it("a search's r per vector equals ‖z(θ) − z0‖ / ‖z0 − z(0)‖ from steered forwards", async () => {
    const done = await ortho(model, { tokens, theta0, count: 3, block: 3, steps: 30, source: SOURCE, target: TARGET, projection: "grad", minNorm: 0 });
    const denominator = done.inputs.denominator;
    assert.ok(done.log.length === 3);
    const [zTheta0, zZero, ...found] = await zOf(Float32Array.from([...theta0, ...new Float32Array(d), ...done.vectors.subarray(d)]));
    const den = dist(zTheta0!, zZero!);
    assert.ok(Math.abs(denominator - den) <= 1e-6 * den);
    done.log.forEach((line, k) => {
      const r = dist(found[k]!, zTheta0!) / den;
      assert.ok(Math.abs(line.relLoss - r) <= 1e-6, `vector ${k + 1}: r ${line.relLoss}, steered forwards ${r}`);
      assert.ok(Math.abs(line.loss / denominator - line.relLoss) <= 1e-12 * line.relLoss, "r = loss / denominator");
    });
    assert.ok(done.log.some((l) => Math.abs(l.relLoss - 1) > 0.05), "the vectors moved away from r = 1 (else this proves little)");
  });

  it("the random baseline: directions orthogonal to θ0 at the given norms, seeded; norm 0 gives r = 1", async () => {
    const { x, z0, denominator } = await orthoInputs(model, tokens, theta0, SOURCE, TARGET);
    const t0 = Math.hypot(...theta0);
    // 36 norms: past the 32 rows the baseline evaluates at once, and 0 (θ = 0) among them.
    const norms = Array.from({ length: 36 }, (_, k) => (k === 0 ? 0 : [0.5, 1, 2][k % 3]! * t0));
    const o = { x, z0, theta0, norms, source: SOURCE, target: TARGET, denominator };
    const r = await randomBaseline(model, o);
    assert.equal(r.length, norms.length);
    assert.ok(Math.abs(r[0]! - 1) <= 1e-6, `r at norm 0: ${r[0]}`);
    assert.deepEqual(await randomBaseline(model, o), r, "seeded: the same numbers again");
    const other = await randomBaseline(model, { ...o, seed: 1 });
    assert.ok(other.slice(1).every((v, k) => v !== r[k + 1]), "another seed, other directions");
    // The directions, drawn as documented: one normal vector per row from the "random-baseline"
    // stream of the seed, minus its component along θ0, scaled to the row's norm.
    const rng = new Rng(0, "random-baseline");
    const thetas = new Float32Array(norms.length * d);
    norms.forEach((n, k) => {
      const v = Float64Array.from(rng.fillNormal(new Float32Array(d)));
      const c = v.reduce((s, x, i) => s + x * theta0[i]!, 0) / (t0 * t0);
      for (let i = 0; i < d; i++) v[i]! -= c * theta0[i]!;
      const s = n / Math.hypot(...v);
      for (let i = 0; i < d; i++) thetas[k * d + i] = v[i]! * s;
    });
    const z = await zOf(thetas);
    const [zTheta0, zZero] = await zOf(Float32Array.from([...theta0, ...new Float32Array(d)]));
    const den = dist(zTheta0!, zZero!);
    r.forEach((value, k) => {
      const expected = dist(z[k]!, zTheta0!) / den;
      assert.ok(Math.abs(value - expected) <= 1e-6, `row ${k} (norm ${norms[k]}): r ${value}, steered forwards ${expected}`);
    });
    // The norms matter: on this model r grows with the norm on average (measured: 1.12, 1.34, 2.04).
    const mean = (m: number) => { const v = r.filter((_, k) => k > 0 && k % 3 === m); return v.reduce((s, x) => s + x, 0) / v.length; };
    assert.ok(mean(2) > mean(1) && mean(1) > mean(0), `mean r at norms 0.5, 1, 2 × ‖θ0‖: ${mean(0)}, ${mean(1)}, ${mean(2)}`);
  });
});
