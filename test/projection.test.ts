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

  it("equals an independent float64 Gram–Schmidt written here (complement of the basis, then earlier rows in order)", () => {
    const basis = basisOf(5, 6), rows = randomRows(4, 7);
    const expected = new Float64Array(rows.length);
    for (let r = 0; r < 4; r++) {
      const v = Float64Array.from(rowOf(rows, r));
      const subtract = (u: Float64Array, unit: boolean) => {
        let c = 0, uu = 0;
        for (let i = 0; i < d; i++) (c += v[i]! * u[i]!), (uu += u[i]! * u[i]!);
        const f = unit ? c : c / uu;
        for (let i = 0; i < d; i++) v[i]! -= f * u[i]!;
      };
      for (let b = 0; b < 5; b++) subtract(rowOf(basis, b), true);
      for (let i = 0; i < r; i++) subtract(rowOf(expected, i), false);
      expected.set(v, r * d);
    }
    for (const out of [native().projectBlock({ rows, basis, d }), native().projectBlock({ rows, basis, d, reference: true })]) {
      let worst = 0;
      for (let i = 0; i < out.length; i++) worst = Math.max(worst, Math.abs(out[i]! - expected[i]!));
      assert.ok(worst < 1e-12, `largest difference ${worst}`);
    }
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

describe("in-block orthogonalisation modes", () => {
  const unit = (v: Float64Array) => v.map((x) => x / norm(v));
  const maxCos = (out: Float64Array, B: number) => {
    let worst = 0;
    for (let i = 0; i < B; i++) for (let j = i + 1; j < B; j++) {
      worst = Math.max(worst, Math.abs(dot(rowOf(out, i), rowOf(out, j))) / (norm(rowOf(out, i)) * norm(rowOf(out, j))));
    }
    return worst;
  };
  const permute = (a: Float64Array, order: number[]) => {
    const out = new Float64Array(a.length);
    order.forEach((from, to) => out.set(rowOf(a, from), to * d));
    return out;
  };

  it("symmetric: orthogonal to the basis and each other, norms kept, no row favoured, closer to the inputs than Gram–Schmidt", () => {
    const B = 8, basis = basisOf(6, 30), rows = randomRows(B, 31);
    const out = native().projectBlock({ rows, basis, d, inBlock: "symmetric" });
    assert.ok(maxCos(out, B) < 1e-12, `max |cos| ${maxCos(out, B)}`);
    for (let j = 0; j < B; j++) for (let b = 0; b < 6; b++) assert.ok(Math.abs(dot(rowOf(out, j), rowOf(basis, b))) < 1e-12);
    // Norms: those of the rows projected onto the complement (row 0 of Gram–Schmidt is exactly that).
    for (let j = 0; j < B; j++) {
      const projected = native().projectBlock({ rows: rows.slice(j * d, (j + 1) * d), basis, d });
      assert.ok(Math.abs(norm(rowOf(out, j)) - norm(projected)) < 1e-12 * norm(projected), `row ${j} norm`);
    }
    // Permuting the inputs permutes the outputs: no row is favoured by its index.
    const order = [3, 0, 7, 1, 6, 2, 5, 4];
    const shuffled = native().projectBlock({ rows: permute(rows, order), basis, d, inBlock: "symmetric" });
    const expected = permute(out, order);
    for (let i = 0; i < out.length; i++) assert.ok(Math.abs(shuffled[i]! - expected[i]!) < 1e-11, `element ${i}`);
    // Löwdin's property: the orthonormal set closest to the input directions.
    const gs = native().projectBlock({ rows, basis, d, inBlock: "gram-schmidt" });
    const distance = (o: Float64Array) => {
      let s = 0;
      for (let j = 0; j < B; j++) {
        const a = unit(native().projectBlock({ rows: rows.slice(j * d, (j + 1) * d), basis, d })), b = unit(rowOf(o, j).slice());
        for (let i = 0; i < d; i++) s += (a[i]! - b[i]!) ** 2;
      }
      return s;
    };
    assert.ok(distance(out) < distance(gs), `symmetric ${distance(out)} vs Gram–Schmidt ${distance(gs)}`);
  });

  it("first-then-symmetric: row 0 is exactly Gram–Schmidt's row 0; the others are orthogonal to it and symmetric among themselves", () => {
    const B = 6, basis = basisOf(4, 40), rows = randomRows(B, 41);
    const out = native().projectBlock({ rows, basis, d, inBlock: "first-then-symmetric" });
    const gs = native().projectBlock({ rows, basis, d, inBlock: "gram-schmidt" });
    assert.deepEqual(rowOf(out, 0), rowOf(gs, 0));
    assert.ok(maxCos(out, B) < 1e-12, `max |cos| ${maxCos(out, B)}`);
    const order = [0, 4, 2, 5, 1, 3]; // row 0 stays first
    const shuffled = native().projectBlock({ rows: permute(rows, order), basis, d, inBlock: "first-then-symmetric" });
    const expected = permute(out, order);
    for (let i = 0; i < out.length; i++) assert.ok(Math.abs(shuffled[i]! - expected[i]!) < 1e-11, `element ${i}`);
  });

  it("a zero row stays zero and the others are still orthogonal; an unknown mode is a clear error", () => {
    const B = 4, rows = randomRows(B, 50);
    rows.fill(0, 2 * d, 3 * d);
    const out = native().projectBlock({ rows, basis: new Float64Array(0), d, inBlock: "symmetric" });
    assert.ok(rowOf(out, 2).every((x) => x === 0));
    const live = Float64Array.from([...rowOf(out, 0), ...rowOf(out, 1), ...rowOf(out, 3)]);
    assert.ok(maxCos(live, 3) < 1e-12);
    assert.throws(() => native().projectBlock({ rows, basis: new Float64Array(0), d, inBlock: "löwdin" as "symmetric" }), /option 'inBlock' must be/);
  });
});
