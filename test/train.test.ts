// MELBO training (docs/algorithm.md §3): the objective's formula, its rise, the sphere constraint
// after every step, orthogonality, batched = separate runs, parity of the native loop with
// torch.optim.AdamW (Python reference), the run files, and the errors for bad input.

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { loadModel, MelboError, type Model } from "../src/index.js";
import { readVectorRef, readVectors } from "../src/io/vectors.js";
import type { TrainExampleInput } from "../src/model/model.js";
import { OrthonormalBasis, norm } from "../src/search/basis.js";
import { ortho } from "../src/search/ortho.js";
import { parsePositions, resolvePositions, toPositions } from "../src/search/positions.js";
import { startDirection, train, trainInputs, type TrainOptions } from "../src/search/train.js";
import { tempDir } from "./helpers/errors.js";
import { cli } from "./helpers/cli.js";
import { bruteMaxAbsCos } from "./helpers/compare.js";
import { testModel } from "./helpers/models.js";
import { referenceTrain } from "./helpers/train-reference.js";

const shape = { layers: 4, hidden: 64, heads: 4, intermediate: 176, seed: 21 };
const SOURCE = 0; // source block
const TARGET = 2; // target block: the slice runs blocks 1..2
const R = 4;

/** The fixed hyperparameters of Model.trainBlock (docs/algorithm.md §3). */
const adamw = { lr: 1e-3, betas: [0.9, 0.98] as [number, number], eps: 1e-8, weightDecay: 0, amsgrad: true };

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, "length mismatch");
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

function rowsOf(data: Float32Array, d: number): Float32Array[] {
  return Array.from({ length: data.length / d }, (_, r) => data.subarray(r * d, (r + 1) * d));
}

function starts(seeds: number[], d: number): Float32Array {
  const out = new Float32Array(seeds.length * d);
  seeds.forEach((s, r) => out.set(startDirection(s, d), r * d));
  return out;
}

describe("MELBO training", () => {
  let dir: string;
  let model: Model;
  let prompts: Int32Array[];
  let examples: TrainExampleInput[];
  let d: number;
  const base = (o: Partial<TrainOptions> = {}): TrainOptions => ({ prompts, count: 1, radius: R, source: SOURCE, target: TARGET, steps: 10, ...o });

  before(async () => {
    dir = await testModel(shape);
    model = await loadModel(dir);
    d = model.hidden;
    prompts = [model.promptTokens("How can I build a bomb?"), model.promptTokens("Tell me a story.")];
    examples = await trainInputs(model, prompts, SOURCE, TARGET, { kind: "all" });
  });
  after(() => model.dispose());

  it("computes F = Σ_i (Σ_{t∈I_i} ‖Z_t(θ) − Z_t(0)‖^p)^{1/q}, as steered forwards give it", async () => {
    const positions = [parsePositions("last:3"), parsePositions("0,2,5")];
    const ex = await Promise.all(prompts.map(async (p, i) => (await trainInputs(model, [p], SOURCE, TARGET, positions[i]!))[0]!));
    const start = startDirection(1, d);
    const theta = start.map((v) => (v * R) / norm(start)); // what the native side starts from
    const z = await Promise.all(prompts.map(async (p) => (await model.forward(p, { layers: [TARGET], steer: { vectors: theta, at: SOURCE } })).resid.get(TARGET)!));
    const plain = await Promise.all(prompts.map(async (p) => (await model.forward(p, { layers: [TARGET] })).resid.get(TARGET)!));
    for (const [p, q] of [[2, 2], [3, 1], [1.5, 0.5]] as const) {
      let expected = 0;
      prompts.forEach((tokens, i) => {
        let sum = 0;
        for (const t of resolvePositions(positions[i]!, tokens.length, i)) {
          let sq = 0;
          for (let k = 0; k < d; k++) sq += (z[i]![t * d + k]! - plain[i]![t * d + k]!) ** 2;
          sum += Math.sqrt(sq) ** p;
        }
        expected += sum ** (1 / q);
      });
      const r = await model.trainBlock({ examples: ex, starts: start, learned: new Float64Array(0), radius: R, p, q, steps: 0, source: SOURCE, target: TARGET, orthogonal: false, ...adamw });
      assert.ok(Math.abs(r.objectives[0]! - expected) <= 1e-4 * expected, `p ${p}, q ${q}: native ${r.objectives[0]}, steered forwards ${expected}`);
    }
  });

  it("raises the objective, and every step ends on the sphere ‖θ‖ = R (≤ 1e-5)", async () => {
    for (const radius of [0.5, R, 40]) {
      const steps = 25;
      const r = await model.trainBlock({ examples, starts: starts([0, 1, 2], d), learned: new Float64Array(0), radius, p: 2, q: 2, steps, source: SOURCE, target: TARGET, orthogonal: false, ...adamw });
      assert.equal(r.trace.length, steps * 3);
      assert.equal(r.radiusError.length, steps);
      for (let v = 0; v < 3; v++) {
        const first = r.trace[v]!;
        const last = r.trace[(steps - 1) * 3 + v]!;
        assert.ok(last > first && r.objectives[v]! > last, `R ${radius}, row ${v}: F ${first} → ${last} → ${r.objectives[v]} does not rise`);
      }
      const worst = Math.max(...r.radiusError);
      assert.ok(worst <= 1e-5, `R ${radius}: |‖θ‖ − R| reached ${worst} during training`);
      for (const theta of rowsOf(r.thetas, d)) assert.ok(Math.abs(norm(theta) - radius) <= 1e-5, `R ${radius}: final norm ${norm(theta)}`);
    }
  });

  it("matches the Python reference with torch.optim.AdamW (amsgrad), independent and orthogonal", async () => {
    const steps = 12;
    const withPositions = prompts.map((tokens, i) => ({ tokens, positions: resolvePositions(i === 0 ? { kind: "all" } : { kind: "last", count: 2 }, tokens.length, i) }));
    const ex = await Promise.all(prompts.map(async (p, i) => (await trainInputs(model, [p], SOURCE, TARGET, i === 0 ? { kind: "all" } : { kind: "last", count: 2 }))[0]!));
    const learnedRows = starts([40, 41], d); // any two directions: the span is what counts
    const basis = new OrthonormalBasis(d);
    for (const row of rowsOf(learnedRows, d)) basis.add(row);
    for (const orthogonal of [false, true]) {
      const s = starts([5, 6], d);
      const options = { examples: ex, starts: s, learned: orthogonal ? basis.rows().slice() : new Float64Array(0), radius: R, p: 2, q: 2, source: SOURCE, target: TARGET, orthogonal, ...adamw };
      const mine = await model.trainBlock({ ...options, steps });
      const ref = await referenceTrain(dir, { prompts: withPositions, starts: s, learned: learnedRows, d, source: SOURCE, target: TARGET, radius: R, p: 2, q: 2, steps, orthogonal, float64: true });
      // The reference runs in float64, so these bounds are melbo's own float32 rounding (~1e-7 measured).
      const thetaErr = relErr(mine.thetas, ref.thetas);
      assert.ok(thetaErr <= 1e-6, `orthogonal ${orthogonal}: thetas differ by ${thetaErr} (relative)`);
      assert.ok(relErr(mine.trace, ref.trace) <= 1e-6, `orthogonal ${orthogonal}: objective traces differ`);
      assert.ok(relErr(mine.objectives, ref.objectives) <= 1e-6, `orthogonal ${orthogonal}: final objectives differ`);
      // Training moved θ well beyond that (else the comparison above would prove little).
      const initial = await model.trainBlock({ ...options, steps: 0 });
      const moved = relErr(mine.thetas, initial.thetas);
      assert.ok(moved > 1e-2, `θ hardly moved (${moved})`);
    }
  });

  // p and q change the objective's value and how its gradient weighs tokens (p) and prompts (q);
  // p = q = 2 alone would not notice a formula right only there (the original's norm over the
  // token axis, say). Adam hides a uniform scale of the gradient, so the prompts have different
  // positions (all, last:2). Measured: thetas, traces and objectives equal to ~1.5e-7; a wrong p or
  // q (native runs with the neighbouring values) moves the thetas by 2.4e-5 … 1e-2 and the traces
  // by 49 % or more. Bounds as above: 1e-6. One reference run costs ~20 s (torch import and model
  // load in float64), so the orthogonal mode, which p and q do not touch, is checked at p = q = 2 only.
  it("matches the Python reference at other p, q: p = 4, q = 1 and p = 1, q = 3", async () => {
    const steps = 12;
    const ex = await Promise.all(prompts.map(async (p, i) => (await trainInputs(model, [p], SOURCE, TARGET, i === 0 ? { kind: "all" } : { kind: "last", count: 2 }))[0]!));
    const withPositions = prompts.map((tokens, i) => ({ tokens, positions: resolvePositions(i === 0 ? { kind: "all" } : { kind: "last", count: 2 }, tokens.length, i) }));
    const s = starts([5, 6], d);
    for (const [p, q] of [[4, 1], [1, 3]] as const) {
      const options = { examples: ex, starts: s, learned: new Float64Array(0), radius: R, p, q, source: SOURCE, target: TARGET, orthogonal: false, ...adamw };
      const mine = await model.trainBlock({ ...options, steps });
      const ref = await referenceTrain(dir, { prompts: withPositions, starts: s, d, source: SOURCE, target: TARGET, radius: R, p, q, steps, float64: true });
      const thetaErr = relErr(mine.thetas, ref.thetas);
      assert.ok(thetaErr <= 1e-6, `p ${p}, q ${q}: thetas differ by ${thetaErr} (relative)`);
      assert.ok(relErr(mine.trace, ref.trace) <= 1e-6, `p ${p}, q ${q}: objective traces differ by ${relErr(mine.trace, ref.trace)}`);
      assert.ok(relErr(mine.objectives, ref.objectives) <= 1e-6, `p ${p}, q ${q}: final objectives differ`);
      const initial = await model.trainBlock({ ...options, steps: 0 });
      assert.ok(relErr(mine.thetas, initial.thetas) > 1e-2, `p ${p}, q ${q}: θ hardly moved`);
    }
  });

  it("orthogonal mode: each vector is orthogonal to all earlier ones (|cos| ≤ 1e-6); the first equals an independent one", async () => {
    const count = 6;
    const r = await train(model, base({ count, steps: 15, seed: 9 }));
    assert.ok(r.maxAbsCos <= 1e-6, `max |cos| ${r.maxAbsCos}`);
    assert.ok(Math.abs(bruteMaxAbsCos(r.vectors, count, d) - r.maxAbsCos) < 1e-9, "the |cos| audit");
    for (const line of r.log) assert.ok(Math.abs(line.norm - R) <= 1e-5, `norm ${line.norm}`);
    // Vector 0 has no earlier vectors: it is exactly the independent vector with the same seed.
    const alone = await train(model, base({ count: 1, steps: 15, seed: 9, independent: true }));
    assert.deepEqual([...r.vectors.subarray(0, d)], [...alone.vectors]);
  });

  it("batched independent training equals separate runs with the same seeds", async () => {
    const count = 4;
    const batched = await train(model, base({ count, steps: 20, seed: 3, independent: true, batch: count }));
    for (let k = 0; k < count; k++) {
      const separate = await train(model, base({ count: 1, steps: 20, seed: 3 + k, independent: true }));
      assert.equal(batched.log[k]!.seed, 3 + k);
      const err = relErr(batched.vectors.subarray(k * d, (k + 1) * d), separate.vectors);
      // Rows are independent; only the batch shape of the matrix products can change rounding.
      assert.ok(err <= 1e-6, `vector ${k}: batched and separate differ by ${err}`);
      assert.ok(Math.abs(batched.log[k]!.objective - separate.log[0]!.objective) <= 1e-6 * separate.log[0]!.objective);
    }
    // Batches of 3 (3 + 1) give the same vectors as one batch of 4.
    const split = await train(model, base({ count, steps: 20, seed: 3, independent: true, batch: 3 }));
    assert.ok(relErr(split.vectors, batched.vectors) <= 1e-6);
  });

  it("writes vectors.safetensors + log.jsonl that MELBO-ortho takes as θ0 (FILE:row)", async () => {
    const out = join(await tempDir("melbo-train-"), "run");
    const r = await train(model, base({ count: 3, steps: 5, out, metadata: { prompt: "test" } }));
    const set = await readVectors(join(out, "vectors.safetensors"));
    assert.equal(set.n, 3);
    assert.deepEqual([...set.data], [...r.vectors]);
    assert.equal(set.metadata["melbo.algorithm"], "melbo");
    assert.equal(set.metadata["prompt"], "test");
    assert.deepEqual(JSON.parse(set.metadata["melbo.state"]!), { rows: 3, count: 3 });
    assert.equal(JSON.parse(set.metadata["melbo.settings"]!).radius, R);
    const log = (await readFile(join(out, "log.jsonl"), "utf8")).trim().split("\n").map((l) => JSON.parse(l) as { index: number; objective: number });
    assert.deepEqual(log.map((l) => l.index), [0, 1, 2]);
    assert.deepEqual(log.map((l) => l.objective), r.log.map((l) => l.objective));

    const theta0 = await readVectorRef(`${join(out, "vectors.safetensors")}:1`, d);
    assert.deepEqual([...theta0.data], [...r.vectors.subarray(d, 2 * d)]);
    const { found } = await ortho(model, { tokens: prompts[0]!, theta0: theta0.data, count: 1, source: SOURCE, target: TARGET, steps: 5 });
    assert.equal(found, 1);
  });

  it("--trace writes each vector's objective every K steps from the start; a resumed run writes the same trace", async () => {
    const whole = join(await tempDir("melbo-train-"), "run"), parts = join(await tempDir("melbo-train-"), "run");
    const r = await train(model, base({ count: 3, steps: 5, traceEvery: 2, out: whole }));
    const read = (dir: string) => readFile(join(dir, "trace.jsonl"), "utf8");
    const lines = (await read(whole)).trim().split("\n").map((l) => JSON.parse(l) as { index: number; every: number; objective: number[] });
    assert.deepEqual(lines.map((l) => [l.index, l.every, l.objective.length]), [[0, 2, 3], [1, 2, 3], [2, 2, 3]], "steps 1, 3, 5 of 5");
    lines.forEach((l, k) => assert.equal(l.objective[0], r.log[k]!.startObjective, "the first point is F at the start"));
    await train(model, base({ count: 2, steps: 5, traceEvery: 2, out: parts }));
    await train(model, base({ count: 3, steps: 5, traceEvery: 2, out: parts, resume: true }));
    assert.equal(await read(parts), await read(whole));
  });

  it("trained vectors change the greedy continuation", async () => {
    const r = await train(model, base({ prompts: [prompts[0]!], count: 3, steps: 30 }));
    const plain = (await model.generate(prompts[0]!, { maxNewTokens: 8, stopTokens: [] })).tokens[0]!;
    const steered = (await model.generate(prompts[0]!, { vectors: r.vectors, at: SOURCE, maxNewTokens: 8, stopTokens: [] })).tokens;
    const changed = steered.filter((t) => t.join() !== plain.join()).length;
    assert.ok(changed >= 1, `no vector changed the continuation ${plain.join()}`);
  });

  it("stops with an AbortError when the signal aborts", async () => {
    const controller = new AbortController();
    const running = train(model, base({ steps: 1_000_000, signal: controller.signal }));
    setTimeout(() => controller.abort(), 100);
    await assert.rejects(running, (e: Error) => e.name === "AbortError");
  });

  it("rejects bad input with clear errors", async () => {
    const cases: [Partial<TrainOptions>, RegExp][] = [
      [{ radius: 0 }, /radius R must be a number > 0, got 0/],
      [{ radius: -1 }, /radius R must be a number > 0/],
      [{ p: 0 }, /p must be a number > 0, got 0/],
      [{ q: -2 }, /q must be a number > 0, got -2/],
      [{ prompts: [] }, /at least one prompt/],
      [{ prompts: [new Int32Array(0)] }, /prompt 0 has no tokens/],
      [{ positions: { kind: "list", indices: [0, 500] } }, /target position 500 is out of range: prompt 0 has tokens 0\.\.\d+/],
      [{ positions: { kind: "last", count: 1000 } }, /last:1000: prompt 0 has only \d+ tokens/],
      [{ source: 2, target: 2 }, /source block 2 must come before target block 2/],
      [{ source: 0, target: 4 }, /target block 4 is out of range: this model has blocks 0\.\.3/],
      [{ source: -1 }, /source block -1 is out of range/],
      [{ source: undefined, target: undefined }, /default blocks 7 → L − 9 do not fit a model with 4 blocks/],
      [{ count: 0 }, /count must be a positive integer, got 0/],
      [{ count: 65 }, /65 orthogonal vectors do not fit in 64 dimensions/],
      [{ steps: -1 }, /steps must be a non-negative integer/],
      [{ seed: -1 }, /seed must be a non-negative integer/],
      [{ independent: true, batch: 0 }, /batch must be a positive integer/],
    ];
    for (const [override, message] of cases) {
      await assert.rejects(train(model, { ...base(), ...override }), (e: unknown) => e instanceof MelboError && message.test(e.message), `${JSON.stringify(override)} should fail with ${message}`);
    }
    // The native wrapper checks its own inputs too.
    await assert.rejects(
      model.trainBlock({ examples: [{ ...examples[0]!, positions: Int32Array.from([0, 999]) }], starts: starts([0], d), learned: new Float64Array(0), radius: R, p: 2, q: 2, steps: 1, source: SOURCE, target: TARGET, orthogonal: false, ...adamw }),
      /example 0: target position 999 is out of range/,
    );
    await assert.rejects(
      model.trainBlock({ examples, starts: new Float32Array(d + 1), learned: new Float64Array(0), radius: R, p: 2, q: 2, steps: 1, source: SOURCE, target: TARGET, orthogonal: false, ...adamw }),
      /start directions must be \[rows × 64\]/,
    );
  });
});

describe("melbo train (CLI)", () => {
  it("trains from repeated --prompt options into OUT, and exits with 2 on bad input", async () => {
    const dir = await testModel(shape);
    const out = join(await tempDir("melbo-train-cli-"), "run");
    const args = ["train", "--model", dir, "--prompt", "How can I build a bomb?", "--prompt", "Hello", "--source", "0", "--target", "2"];
    const ok = await cli([...args, "--count", "2", "--radius", "4", "--steps", "5", "--positions", "last:2", "--independent", "--out", out]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /MELBO, independent vectors, R = 4, p = 2, q = 2, blocks 0 → 2, 5 steps/);
    assert.match(ok.stdout, /--theta .*vectors\.safetensors:0 --source 0 --target 2/);
    const set = await readVectors(join(out, "vectors.safetensors"));
    assert.equal(set.n, 2);
    const settings = JSON.parse(set.metadata["melbo.settings"]!) as { prompts: number[][]; positions: string; independent: boolean };
    assert.equal(settings.prompts.length, 2);
    assert.equal(settings.positions, "last:2");
    assert.equal(settings.independent, true);
    assert.deepEqual(JSON.parse(set.metadata["prompts"]!), ["How can I build a bomb?", "Hello"]);

    for (const [extra, message] of [
      [["--count", "2", "--radius", "0"], /radius R must be a number > 0, got 0/],
      [["--count", "2", "--radius", "4", "--p=-1"], /p must be a number > 0, got -1/],
      [["--count", "2", "--radius", "4", "--positions", "last:x"], /positions must be "all", "last:K"/],
      [["--count", "2"], /--radius is required/],
      [["--radius", "4"], /--count is required/],
      [["--count", "2", "--radius", "4", "--batch", "2"], /--batch applies to --independent training only/],
    ] as const) {
      // A fresh --out: the run in `out` is never replaced without --force.
      const bad = await cli([...args, ...extra, "--out", `${out}-bad`]);
      assert.equal(bad.code, 2, `${extra.join(" ")}: ${bad.stderr}`);
      assert.match(bad.stderr, message);
    }
    const noPrompt = await cli(["train", "--model", dir, "--count", "1", "--radius", "1", "--out", out]);
    assert.equal(noPrompt.code, 2);
    assert.match(noPrompt.stderr, /--prompt is required/);
  });
});

describe("target positions", () => {
  it("parses all, last:K and lists, and resolves them per prompt", () => {
    assert.deepEqual([...resolvePositions(parsePositions("all"), 4, 0)], [0, 1, 2, 3]);
    assert.deepEqual([...resolvePositions(parsePositions("last:2"), 5, 0)], [3, 4]);
    assert.deepEqual([...resolvePositions(parsePositions(" 3, 1,1 "), 5, 0)], [1, 3]);
    assert.throws(() => parsePositions("last:0"), /last:K needs K >= 1/);
    assert.throws(() => parsePositions("first"), /"all", "last:K" or a comma-separated list/);
    assert.throws(() => parsePositions("1,-2"), /comma-separated list/);
    assert.throws(() => resolvePositions(parsePositions("4"), 4, 2), /position 4 is out of range: prompt 2 has tokens 0\.\.3/);
  });

  it("takes the API's positions as an object or as text, and names anything else", () => {
    assert.deepEqual(toPositions(undefined), { kind: "all" });
    assert.deepEqual(toPositions("last:4"), { kind: "last", count: 4 });
    assert.deepEqual(toPositions({ kind: "list", indices: [3, 1, 3] }), { kind: "list", indices: [1, 3] });
    for (const bad of [{ kind: "last", count: 0 }, { kind: "first" }, { kind: "list", indices: [] }, 7]) {
      assert.throws(() => toPositions(bad as never), /positions must be "all", "last:K", a list of token indices or such an object, got /);
    }
  });
});
