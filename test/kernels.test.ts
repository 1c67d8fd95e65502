// Kernel choice per CPU: Model.info(rows) reports the path each product takes, from the same
// decision mixedLinear follows (native/qwen2.cpp productPath), and `melbo info` prints it.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadModel } from "../src/index.js";
import { kernelSupport } from "../src/util/cpu.js";
import { cli } from "./helpers/cli.js";
import { withEnv } from "./helpers/compare.js";
import { testModel } from "./helpers/models.js";

const SHAPE = { layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 176, seed: 5 };
const { skinny: skinnyCpu, fastBf16, bf16Kernels } = kernelSupport();

describe("kernel choice", () => {
  it("f32: few rows take the skinny kernels (where the CPU has AVX2+FMA), many rows BLAS; MELBO_SKINNY_ROWS moves the limit", async () => {
    const model = await loadModel(await testModel(SHAPE));
    try {
      const info = model.info([26, 112, 113, 5000]);
      assert.deepEqual(info.rows, [26, 112, 113, 5000]);
      assert.equal(info.activations, "f32");
      assert.deepEqual(info.products.map((p) => p.name), ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]);
      const q = info.products[0]!;
      assert.deepEqual([q.out, q.in], [64, 64]);
      const expectSmall = skinnyCpu ? /^skinny-avx2 \(f32/ : /^blas f32$/;
      for (const p of info.products) {
        assert.match(p.paths[0]!, expectSmall, p.name);
        assert.match(p.paths[1]!, expectSmall, `${p.name} at the f32 limit (112 rows)`);
        assert.equal(p.paths[2], "blas f32", `${p.name} past the limit`);
        assert.equal(p.paths[3], "blas f32");
      }
      const off = await withEnv("MELBO_SKINNY_ROWS", "0", async () => model.info([26]));
      for (const p of off.products) assert.equal(p.paths[0], "blas f32");
      assert.throws(() => model.info([0]), /row counts must be positive integers/);
    } finally {
      model.dispose();
    }
  });

  it("bf16 weights compute in bf16 (oneDNN; few rows: AVX-512 BF16 kernels) only where the CPU multiplies bf16 fast, else in f32", async () => {
    const model = await loadModel(await testModel({ ...SHAPE, dtype: "BF16" }), { dtype: "bf16" });
    try {
      const info = model.info([26, 64, 65, 5000]);
      assert.equal(info.activations, fastBf16 ? "bf16" : "f32");
      for (const p of info.products) {
        if (fastBf16) {
          const few = bf16Kernels ? "skinny-avx512bf16 (bf16 weights read in place)" : "onednn bf16";
          assert.deepEqual(p.paths, [few, few, "onednn bf16", "onednn bf16"], p.name);
          continue;
        }
        assert.match(p.paths[0]!, skinnyCpu ? /^skinny-avx2 \(bf16 weights/ : /^widened/, p.name);
        assert.match(p.paths[1]!, skinnyCpu ? /^skinny-avx2 \(bf16 weights/ : /^widened/, p.name);
        assert.equal(p.paths[3], "widened bf16 -> f32, blas f32");
      }
    } finally {
      model.dispose();
    }
  });

  it("melbo info prints the shape, the CPU flags and a path per product and row count", async () => {
    const dir = await testModel(SHAPE);
    const r = await cli(["info", "--model", dir, "--rows", "26,5000"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /2 blocks, d 64, 4 heads \(2 kv\), intermediate 176/);
    assert.match(r.stdout, /weights f32, activations f32/);
    assert.match(r.stdout, /CPU flags: /);
    assert.match(r.stdout, /5000 rows:\n(    \w+ \[\d+×\d+\]\s+blas f32\n){7}/);
    const bad = await cli(["info", "--model", dir, "--rows", "26,x"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--rows must be positive integers/);
  });
});
