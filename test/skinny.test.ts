// The few-row matrix kernels (native/skinny.cpp, native/skinny_bf16.cpp) against libtorch's own
// products. mixedLinear sends products of up to MELBO_SKINNY_ROWS rows to them (read on every
// call, so a test can switch them off with the environment variable); everything else in a step
// is the same code, so the losses and gradients with and without them may differ only by rounding:
// float32 rounding where activations are float32, bf16 rounding where they are bf16 (CPUs with
// AVX-512: bf16 weights then compute in bf16, and the kernels are the AVX-512 BF16 ones).
// Equal results would prove nothing if the kernels never ran, so every comparison is guarded three
// ways: the path each product takes (`model.info(rows)`, the decision mixedLinear follows) under
// each MELBO_SKINNY_ROWS, the bits (kernels on and off must not be identical), and a MELBO_PROFILE
// trace of the native ortho loop, which names the kernels' own functions (melbo::skinny_mm, …)
// when, and only when, they ran.

import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { loadModel, type Model } from "../src/index.js";
import { kernelSupport } from "../src/util/cpu.js";
import { Rng } from "../src/util/rng.js";
import { maxRelDiff, withEnv } from "./helpers/compare.js";
import { testModel } from "./helpers/models.js";

// hidden 64 and intermediate 176 are multiples of 16 (the kernels' requirement); one prompt of
// 26 tokens is 26 rows, three vectors are 78.
const SHAPE = { layers: 3, hidden: 64, heads: 4, kvHeads: 2, intermediate: 176, seed: 17 };
const SEQ = 26;
const { skinny, bf16Kernels } = kernelSupport();

/**
 * The path name a few-row product of this model must report when the kernels take it (null: this
 * CPU has no kernel for these activations, so no product may claim one).
 */
function kernelPath(model: Model, dtype: "f32" | "bf16"): string | null {
  if (model.info().activations === "bf16") return bf16Kernels ? "skinny-avx512bf16 (bf16 weights read in place)" : null;
  return skinny ? `skinny-avx2 (${dtype} weights read in place)` : null;
}

/** The kernel path of every product of a block at 26 rows (one prompt) and 78 (three vectors), under MELBO_SKINNY_ROWS = limit. */
async function pathsAt(model: Model, limit: string): Promise<{ at26: string[]; at78: string[] }> {
  const info = await withEnv("MELBO_SKINNY_ROWS", limit, async () => model.info([26, 78]));
  assert.equal(info.products.length, 7, "q, k, v, o, gate, up, down");
  return { at26: info.products.map((p) => p.paths[0]!), at78: info.products.map((p) => p.paths[1]!) };
}

/** How often each function is named in a MELBO_PROFILE trace of orthoBlock (3 rows × 26 tokens = 78 rows, steps 2…3). */
async function profiledKernels(model: Model, limit: string): Promise<Map<string, number>> {
  const d = model.hidden;
  const tokens = Int32Array.from({ length: SEQ }, (_, i) => (i * 7919) % 5000);
  const x = (await model.forward(tokens, { layers: [0] })).resid.get(0)!;
  const theta0 = new Rng(5, "skinny").fillNormal(new Float32Array(d));
  const dir = await mkdtemp(join(tmpdir(), "melbo-skinny-profile-"));
  try {
    const file = join(dir, "trace.json");
    await withEnv("MELBO_PROFILE", file, () => withEnv("MELBO_SKINNY_ROWS", limit, () =>
      model.orthoBlock({ x, theta0, basis: new Float64Array(0), rows: 3, steps: 3, source: 0, target: 2, lr: 0.01, betas: [0.9, 0.999], eps: 1e-8, projection: "post", lossTolerance: 0 })));
    const counts = new Map<string, number>();
    for (const m of (await readFile(file, "utf8")).matchAll(/"name":\s*"([^"]+)"/g)) counts.set(m[1]!, (counts.get(m[1]!) ?? 0) + 1);
    return counts;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function lossGrad(model: Model, thetas: Float32Array) {
  const d = model.hidden;
  const tokens = Int32Array.from({ length: SEQ }, (_, i) => (i * 7919) % 5000);
  const { resid } = await model.forward(tokens, { layers: [0, 2] });
  const x = resid.get(0)!;
  const z0 = new Float32Array(d);
  const r2 = resid.get(2)!;
  for (let t = 0; t < SEQ; t++) for (let i = 0; i < d; i++) z0[i]! += r2[t * d + i]! / SEQ + 0.01;
  return model.orthoLossGrad({ x, thetas, z0, source: 0, target: 2 });
}

// The third case forces what CPUs without AVX-512 do with bf16 weights (MELBO_BF16_MATMUL=f32, read
// at load): f32 activations, bf16 weights read in place by the AVX2 kernels.
const CASES = [
  { dtype: "f32", name: "f32 weights", matmul: undefined },
  { dtype: "bf16", name: "bf16 weights", matmul: undefined },
  { dtype: "bf16", name: "bf16 weights, f32 activations (MELBO_BF16_MATMUL=f32)", matmul: "f32" },
] as const;

for (const { dtype, name, matmul } of CASES) {
  const load = async () => {
    const dir = await testModel({ ...SHAPE, dtype: dtype === "f32" ? "F32" : "BF16" });
    return { dir, model: await withEnv("MELBO_BF16_MATMUL", matmul, () => loadModel(dir, { dtype })) };
  };
  describe(`few-row matrix kernels, ${name}`, () => {
    let model: Model | undefined;
    after(() => model?.dispose());

    it("loss and gradient equal libtorch's products (kernels on, off, and past the row limit)", async () => {
      const { dir, model: loaded } = await load();
      model = loaded;
      if (matmul === "f32") assert.equal(model.info().activations, "f32", "MELBO_BF16_MATMUL=f32 is read at load");
      const thetas = new Rng(3, "skinny").fillNormal(new Float32Array(3 * model.hidden));
      const kernels = await withEnv("MELBO_SKINNY_ROWS", "128", () => lossGrad(model!, thetas));
      const blas = await withEnv("MELBO_SKINNY_ROWS", "0", () => lossGrad(model!, thetas));
      // 30 rows: the one-prompt products of the forward use the kernels, the 78-row ones do not.
      const mixed = await withEnv("MELBO_SKINNY_ROWS", "30", () => lossGrad(model!, thetas));
      assert.ok(kernels.loss.every((l) => Number.isFinite(l) && l > 0));
      // The three settings took the paths they are meant to: all kernels, none, kernels for the
      // one-prompt (26-row) products only.
      const kernel = kernelPath(model, dtype);
      const [on, off, limit30] = [await pathsAt(model, "128"), await pathsAt(model, "0"), await pathsAt(model, "30")];
      for (const p of [...off.at26, ...off.at78, ...limit30.at78]) assert.doesNotMatch(p, /skinny/, "a product took a kernel past its row limit");
      if (kernel === null) {
        for (const p of [...on.at26, ...on.at78]) assert.doesNotMatch(p, /skinny/, "this CPU has no few-row kernel for these activations");
        console.log(`# ${dtype}: this CPU has no few-row kernel for ${model.info().activations} activations: the comparisons below compare BLAS with itself`);
      } else {
        for (const p of [...on.at26, ...on.at78, ...limit30.at26]) assert.equal(p, kernel);
        // Different code, so different rounding somewhere: identical bits would mean the switch did nothing.
        assert.ok(kernels.grad.some((v, i) => v !== blas.grad[i]), "MELBO_SKINNY_ROWS=0 changed nothing: the kernels did not run");
        assert.ok(kernels.grad.some((v, i) => v !== mixed.grad[i]), "MELBO_SKINNY_ROWS=30 changed nothing: the 78-row kernels did not run");
        assert.ok(mixed.grad.some((v, i) => v !== blas.grad[i]), "the 26-row kernels of the forward did not run");
      }
      if (model.info().activations === "f32") {
        for (const [name, other] of [["kernels off", blas], ["row limit 30", mixed]] as const) {
          assert.ok(maxRelDiff(kernels.loss, other.loss) < 1e-5, `${name}: loss ${kernels.loss} vs ${other.loss}`);
          assert.ok(maxRelDiff(kernels.grad, other.grad) < 1e-4, `${name}: gradient differs by ${maxRelDiff(kernels.grad, other.grad)}`);
        }
        return;
      }
      // bf16 activations: both sides round to bf16 after every operation, in different orders, so
      // each is judged against the same weights computed in float32: the kernels may be at most
      // twice as far from it as oneDNN's products are (measured: loss 2e-4 vs 5e-4, gradient 5e-3 vs 4e-3), and must be close to oneDNN.
      assert.ok(bf16Kernels, "bf16 activations on a CPU without AVX-512 BF16");
      const exact = await loadModel(dir, { dtype: "f32" });
      const f32 = await lossGrad(exact, thetas).finally(() => exact.dispose());
      const lossErr = (r: typeof f32) => maxRelDiff(r.loss, f32.loss), gradErr = (r: typeof f32) => maxRelDiff(r.grad, f32.grad);
      for (const [name, other] of [["kernels off", blas], ["row limit 30", mixed]] as const) {
        assert.ok(lossErr(kernels) <= 2 * lossErr(other) + 1e-4, `${name}: loss error ${lossErr(kernels)} vs ${lossErr(other)}`);
        assert.ok(gradErr(kernels) <= 2 * gradErr(other) + 1e-3, `${name}: gradient error ${gradErr(kernels)} vs ${gradErr(other)}`);
        assert.ok(maxRelDiff(kernels.loss, other.loss) < 1e-2, `${name}: loss ${kernels.loss} vs ${other.loss}`);
      }
      assert.ok(maxRelDiff(kernels.loss, blas.loss) > 0, "the kernels did not run: identical to oneDNN");
    });

    it("the kernels' own functions run in the native loop when enabled, and only then (MELBO_PROFILE trace)", async (t) => {
      model ??= (await load()).model;
      if (kernelPath(model, dtype) === null) {
        t.skip(`this CPU has no few-row kernel for ${model.info().activations} activations`);
        return;
      }
      const [fwd, bwd] = model.info().activations === "bf16" ? ["melbo::skinny_bf16_mm", "melbo::skinny_bf16_mm_backward"] : ["melbo::skinny_mm", "melbo::skinny_mm_backward"];
      const on = await profiledKernels(model, "128");
      // Every profiled step runs the 7 products of both blocks of the slice (1, 2) forward and backward.
      for (const name of [fwd, bwd]) {
        const n = on.get(name) ?? 0;
        assert.ok(n > 0 && n % 14 === 0, `${name} ran ${n} times with the kernels on: expected a positive multiple of 7 products × 2 blocks`);
      }
      assert.equal(on.get(fwd), on.get(bwd), "one input gradient per forward product");
      // Without the kernels a product goes to torch::linear, or (bf16 weights, f32 activations) widens
      // its weight once forward and once backward (qwen2.cpp, mixedLinear).
      const [library, perProduct] = model.info().activations === "f32" && dtype === "bf16" ? ["melbo::widen_bf16", 2] : ["aten::linear", 1];
      assert.equal(on.get(library) ?? 0, 0, `${library} ran with the kernels on`);
      // Off, and past the row limit (78 rows > 30): the same products go to the library instead.
      for (const limit of ["0", "30"]) {
        const off = await profiledKernels(model, limit);
        for (const name of off.keys()) assert.doesNotMatch(name, /skinny/, `${name} ran with MELBO_SKINNY_ROWS=${limit} (78 rows)`);
        assert.equal(off.get(library), perProduct * on.get(fwd)!, `MELBO_SKINNY_ROWS=${limit}: every product through ${library}`);
      }
    });

    it("a row's result does not depend on the other rows of its batch (bit for bit)", async () => {
      model ??= (await load()).model;
      const d = model.hidden;
      const thetas = new Rng(4, "skinny").fillNormal(new Float32Array(3 * d));
      // A limit above the batch's 78 rows, so that the batch and each row alone take the kernels.
      const batch = await withEnv("MELBO_SKINNY_ROWS", "128", () => lossGrad(model!, thetas));
      for (let b = 0; b < 3; b++) {
        const alone = await withEnv("MELBO_SKINNY_ROWS", "128", () => lossGrad(model!, thetas.slice(b * d, (b + 1) * d)));
        assert.equal(batch.loss[b], alone.loss[0], `row ${b}: loss`);
        assert.deepEqual(batch.grad.slice(b * d, (b + 1) * d), alone.grad, `row ${b}: gradient`);
      }
    });
  });
}
