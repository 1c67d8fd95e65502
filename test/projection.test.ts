// The fused projection of MELBO-ortho: the CPU twin's maths, the CUDA kernel against it where a
// GPU exists, and the CUDA source compiling with nvcc where the toolkit exists.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, it } from "node:test";
import { native } from "../src/native.js";
import { OrthonormalBasis, dot, norm } from "../src/search/basis.js";
import { Rng } from "../src/util/rng.js";

const d = 48;

function randomRows(n: number, seed: number): Float64Array {
  return Float64Array.from(new Rng(seed, "projection").fillNormal(new Float32Array(n * d)));
}

function basisOf(m: number, seed: number): Float64Array {
  const basis = new OrthonormalBasis(d);
  const raw = randomRows(m, seed);
  for (let r = 0; r < m; r++) basis.add(raw.subarray(r * d, (r + 1) * d));
  return basis.rows().slice();
}

const rowOf = (a: Float64Array, r: number) => a.subarray(r * d, (r + 1) * d);

describe("projection (CPU twin)", () => {
  it("rows end orthogonal to the basis and to each other; earlier rows never depend on later ones", () => {
    const basis = basisOf(10, 1);
    const rows = randomRows(6, 2);
    const out = native().projectBlock({ rows, basis, d });
    for (let j = 0; j < 6; j++) {
      for (let b = 0; b < 10; b++) assert.ok(Math.abs(dot(rowOf(out, j), rowOf(basis, b))) < 1e-12);
      for (let i = 0; i < j; i++) {
        const c = dot(rowOf(out, j), rowOf(out, i)) / (norm(rowOf(out, j)) * norm(rowOf(out, i)));
        assert.ok(Math.abs(c) < 1e-12, `rows ${i}, ${j}: cos ${c}`);
      }
    }
    // Row 0 is just the complement projection; the first 3 rows do not change when rows are added after them.
    const first3 = native().projectBlock({ rows: rows.slice(0, 3 * d), basis, d });
    for (let i = 0; i < 3 * d; i++) assert.ok(Math.abs(first3[i]! - out[i]!) < 1e-13, `element ${i}`);
    // Projection is idempotent.
    const again = native().projectBlock({ rows: out, basis, d });
    for (let i = 0; i < out.length; i++) assert.ok(Math.abs(again[i]! - out[i]!) < 1e-12);
  });

  it("an empty basis leaves row 0 untouched; a row in the span of earlier rows vanishes", () => {
    const rows = randomRows(3, 4);
    rows.set(rowOf(rows, 0).map((x, i) => 2 * x - 3 * rows[d + i]!), 2 * d); // row 2 = 2·row0 − 3·row1
    const out = native().projectBlock({ rows, basis: new Float64Array(0), d });
    assert.deepEqual(rowOf(out, 0), rowOf(rows, 0));
    assert.ok(norm(rowOf(out, 2)) < 1e-12 * norm(rowOf(rows, 2)));
  });

  it("the dispatching entry point equals the reference on the CPU", () => {
    const basis = basisOf(5, 6), rows = randomRows(4, 7);
    assert.deepEqual(native().projectBlock({ rows, basis, d }), native().projectBlock({ rows, basis, d, reference: true }));
  });
});

describe("projection (CUDA)", () => {
  it("the CUDA kernel matches the libtorch reference", (t) => {
    if (!native().cudaKernelsBuilt() || !native().cudaAvailable()) {
      const why = native().cudaKernelsBuilt() ? "no CUDA device is available" : "melbo was built without CUDA (a CPU libtorch)";
      t.diagnostic(`skipped: ${why}`);
      console.log(`# CUDA projection test skipped: ${why}`);
      t.skip(why);
      return;
    }
    for (const [m, B] of [[0, 1], [7, 16], [40, 8]] as const) {
      const basis = basisOf(m, 10 + m), rows = randomRows(B, 20 + B);
      const gpu = native().projectBlock({ rows, basis, d, device: "cuda" });
      const ref = native().projectBlock({ rows, basis, d, reference: true });
      for (let i = 0; i < ref.length; i++) assert.ok(Math.abs(gpu[i]! - ref[i]!) < 1e-10, `m ${m}, B ${B}, element ${i}: ${gpu[i]} vs ${ref[i]}`);
    }
  });

  it("the CUDA source compiles with nvcc", async (t) => {
    const nvcc = ["/usr/local/cuda/bin/nvcc", "/usr/local/bin/nvcc", "/usr/bin/nvcc"].find((p) => existsSync(p));
    if (!nvcc) {
      console.log("# nvcc compile test skipped: no CUDA toolkit (nvcc) on this machine");
      t.skip("no nvcc on this machine");
      return;
    }
    const source = fileURLToPath(new URL("../../native/cuda/projection_kernel.cu", import.meta.url));
    const object = join(tmpdir(), `melbo-projection-${process.pid}.o`);
    await promisify(execFile)(nvcc, ["-c", "-gencode", "arch=compute_90,code=sm_90", source, "-o", object]);
    assert.ok(existsSync(object));
  });
});
