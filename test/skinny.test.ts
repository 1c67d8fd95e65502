// The few-row matrix kernels (native/skinny.cpp, native/skinny_bf16.cpp) against libtorch's own
// products. mixedLinear sends products of up to MELBO_SKINNY_ROWS rows to them (read on every
// call, so a test can switch them off with the environment variable); everything else in a step
// is the same code, so the losses and gradients with and without them may differ only by rounding:
// float32 rounding where activations are float32, bf16 rounding where they are bf16 (CPUs with
// AVX-512: bf16 weights then compute in bf16, and the kernels are the AVX-512 BF16 ones).

import assert from "node:assert/strict";
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
const { bf16Kernels } = kernelSupport();

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

for (const dtype of ["f32", "bf16"] as const) {
  describe(`few-row matrix kernels, ${dtype} weights`, () => {
    let model: Model | undefined;
    after(() => model?.dispose());

    it("loss and gradient equal libtorch's products (kernels on, off, and past the row limit)", async () => {
      const dir = await testModel({ ...SHAPE, dtype: dtype === "f32" ? "F32" : "BF16" });
      model = await loadModel(dir, { dtype });
      const thetas = new Rng(3, "skinny").fillNormal(new Float32Array(3 * model.hidden));
      const kernels = await withEnv("MELBO_SKINNY_ROWS", "128", () => lossGrad(model!, thetas));
      const blas = await withEnv("MELBO_SKINNY_ROWS", "0", () => lossGrad(model!, thetas));
      // 30 rows: the one-prompt products of the forward use the kernels, the 78-row ones do not.
      const mixed = await withEnv("MELBO_SKINNY_ROWS", "30", () => lossGrad(model!, thetas));
      assert.ok(kernels.loss.every((l) => Number.isFinite(l) && l > 0));
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
      assert.match(model.info([26]).products[0]!.paths[0]!, /^skinny-avx512bf16/);
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

    it("a row's result does not depend on the other rows of its batch (bit for bit)", async () => {
      const dir = await testModel({ ...SHAPE, dtype: dtype === "f32" ? "F32" : "BF16" });
      model ??= await loadModel(dir, { dtype });
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
