// Block mode of MELBO-ortho (docs/algorithm.md, "Block mode"): what must not change (B = 1 bit
// for bit against a recorded reference, row 1 of any block = sequential vector 1), seeds, and
// what large blocks must keep (orthogonality, no dropped rows on the default model).

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { loadModel, type Model } from "../src/index.js";
import { OrthonormalBasis, norm, row } from "../src/search/basis.js";
import { ortho, orthoInputs, type OrthoResult, type OrthoOptions } from "../src/search/ortho.js";
import { train } from "../src/search/train.js";
import { Rng } from "../src/util/rng.js";
import { bruteMaxAbsCos, maxRelDiff } from "./helpers/compare.js";
import { PINNED_ENV, REFERENCE_FILE, REFERENCE_SCRIPT, type B1Record } from "./helpers/ortho-b1-reference.js";
import { referenceOrthoBlock, type InBlockMode, type ReferenceVariant } from "./helpers/ortho-block-reference.js";
import { testModel } from "./helpers/models.js";

type Done = OrthoResult;

async function search(model: Model, o: OrthoOptions): Promise<Done> {
  return ortho(model, o);
}

const LEGACY = { blockStart: "theta0", inBlock: "gram-schmidt", gradientInBlock: false } as const;

describe("MELBO-ortho block mode", () => {
  let model: Model;
  let base: Pick<OrthoOptions, "tokens" | "theta0" | "source" | "target">;
  const d = 64;
  before(async () => {
    model = await loadModel(await testModel({ layers: 4, hidden: d, heads: 4, intermediate: 176, seed: 11 }));
    base = { tokens: model.promptTokens("How can I build a bomb?"), theta0: new Rng(1, "theta0").fillNormal(new Float32Array(d)), source: 1, target: 3 };
  });
  after(() => model.dispose());

  it("B = 1 matches the recorded reference bit for bit (pinned AVX2 kernels, one thread)", async () => {
    const recorded = JSON.parse(readFileSync(REFERENCE_FILE, "utf8")) as B1Record[];
    const { stdout } = await promisify(execFile)(process.execPath, [REFERENCE_SCRIPT], { env: { ...process.env, ...PINNED_ENV } });
    const now = JSON.parse(stdout) as B1Record[];
    assert.equal(now.length, 2);
    for (const [i, r] of recorded.entries()) {
      assert.deepEqual(now[i], r, `projection ${r.projection}: the B = 1 vectors changed`);
    }
  });

  it("B = 1 ignores every block setting: default and legacy settings give the same bits", async () => {
    for (const projection of ["post", "grad"] as const) {
      const o = { ...base, count: 3, block: 1, steps: 30, projection, minNorm: 0 };
      const now = await search(model, o);
      const legacy = await search(model, { ...o, ...LEGACY });
      assert.deepEqual(now.vectors, legacy.vectors, projection);
    }
  });

  it("row 1 of a block equals sequential vector 1 in every in-block mode", async () => {
    const o = { ...base, count: 1, steps: 60, projection: "grad" as const, minNorm: 0 };
    const sequential = await search(model, { ...o, block: 1 });
    for (const inBlock of ["gram-schmidt", "first-then-symmetric"] as const) {
      const blocked = await search(model, { ...o, count: 16, block: 16, inBlock });
      const diff = maxRelDiff(row(blocked.vectors, 1, d), row(sequential.vectors, 1, d));
      assert.ok(diff < 1e-4, `${inBlock}: row 1 differs from sequential vector 1 by ${diff}`);
    }
  });

  // Rows 2…B and the `grad` projection step by step: the native loop against the float64 reference
  // of test/helpers/ortho-block-reference.ts (Adam, gradient projections, in-block
  // orthogonalisation written out from docs/algorithm.md). Row 1 starts off θ0 here, at a random
  // direction in the complement: started at θ0 (as ortho() does), row 1 is after step 1 the
  // rounding residue of θ0's projection (norm ≈ 4e-15, a direction set by summation order), and
  // rows 2…B are projected off that direction at steps 1 and 2, so any two correct computations
  // differ there by 1e-3…1e-2 and nothing tight can be compared. Measured after 8 steps: rows equal
  // to ≤ 2e-7 (float32 rounding) in every mode; each deliberate mistake below moves some row by
  // ≥ 1e-3. Bound: 1e-5.
  it("B = 3 equals a step-by-step float64 reference, post and grad, in every in-block mode", async () => {
    const B = 3, steps = 8, SOURCE = base.source!, TARGET = base.target!;
    const theta0 = base.theta0;
    const { x } = await orthoInputs(model, base.tokens!, theta0, SOURCE, TARGET);
    const basis = new OrthonormalBasis(d);
    basis.add(theta0);
    basis.add(new Rng(2, "earlier").fillNormal(new Float32Array(d))); // a vector found before this block
    const q = basis.rows().slice();
    const z0 = await model.sliceMean({ x, thetas: theta0, source: SOURCE, target: TARGET });
    // Random starts in the complement, not orthogonal to each other (as blockStarts draws them).
    const rng = new Rng(3, "block-reference-starts");
    const starts = new Float32Array(B * d);
    [0.5, 0.3, 0.3].forEach((scale, r) => {
      const w = basis.projectOut(Float64Array.from(rng.fillNormal(new Float32Array(d))));
      const s = (scale * norm(theta0)) / norm(w);
      for (let i = 0; i < d; i++) starts[r * d + i] = w[i]! * s;
    });
    const adam = { lr: 0.01, betas: [0.9, 0.999] as [number, number], eps: 1e-8 };
    const rowDiffs = (a: Float32Array, b: Float32Array) => Array.from({ length: B }, (_, r) => {
      const x1 = row(a, r, d), x2 = row(b, r, d);
      let num = 0;
      for (let i = 0; i < d; i++) num += (x1[i]! - x2[i]!) ** 2;
      return Math.sqrt(num) / norm(x2);
    });
    const modes: [InBlockMode, boolean][] = [["first-then-symmetric", true], ["gram-schmidt", false], ["symmetric", true]];
    for (const [inBlock, gradientInBlock] of modes) {
      for (const projection of ["post", "grad"] as const) {
        const what = `${inBlock}${gradientInBlock ? " + in-block gradient" : ""}, ${projection}`;
        const native = await model.orthoBlock({ x, theta0, basis: q.slice(), rows: B, steps, source: SOURCE, target: TARGET, ...adam, projection, lossTolerance: 0, starts, inBlock, gradientInBlock });
        const reference = (variant: ReferenceVariant) =>
          referenceOrthoBlock({ model, x, z0, basis: q, starts, steps, source: SOURCE, target: TARGET, ...adam, projection, inBlock, gradientInBlock, variant });
        const ref = await reference("none");
        const diffs = rowDiffs(native.thetas, ref.thetas);
        assert.ok(diffs.every((e) => e < 1e-5), `${what}: rows differ from the reference by ${diffs.map((e) => e.toExponential(1))}`);
        assert.ok(maxRelDiff(native.losses, ref.losses) < 1e-5, `${what}: losses ${native.losses} vs ${ref.losses}`);
        assert.ok(maxRelDiff(native.thetas, starts) > 0.1, `${what}: the rows hardly moved`);
        if (inBlock !== "first-then-symmetric") continue;
        // The default mode: each mistake the reference can make on purpose is far outside the bound.
        const mistakes: ReferenceVariant[] = ["no-gradient-in-block", "gradient-in-block-row-1", "gram-schmidt-in-block", "no-in-block"];
        if (projection === "grad") mistakes.push("no-basis-gradient");
        for (const variant of mistakes) {
          const wrong = Math.max(...rowDiffs(native.thetas, (await reference(variant)).thetas));
          assert.ok(wrong > 5e-4, `${what}: the reference with "${variant}" is only ${wrong} from the native rows: the comparison cannot tell`);
        }
      }
    }
  });

  it("random starts are seeded: the same seed gives the same bits, another seed other rows 2…B and the same row 1", async () => {
    const o = { ...base, count: 6, block: 6, steps: 20, projection: "grad" as const, minNorm: 0 };
    const a = await search(model, o), b = await search(model, o), c = await search(model, { ...o, seed: 5 });
    assert.deepEqual(a.vectors, b.vectors);
    assert.deepEqual(row(c.vectors, 1, d), row(a.vectors, 1, d));
    for (let r = 2; r <= 6; r++) assert.ok(maxRelDiff(row(c.vectors, r, d), row(a.vectors, r, d)) > 1e-2, `row ${r} did not change with the seed`);
  });
});

describe("MELBO-ortho block mode at B = 64 on the default model", () => {
  const dir = join(process.cwd(), "models", "default");
  let model: Model | undefined;
  before(async () => {
    if (existsSync(join(dir, "config.json"))) model = await loadModel(dir);
  });
  after(() => model?.dispose());

  it("with the demo's θ0: no row dropped and orthogonality ≤ 1e-6 after 40 steps, both projections", async (t) => {
    if (process.env["MELBO_SANITIZE"]) {
      // Same code paths as the small blocks above, 10× slower under ASan (its large-buffer allocator): 8 of the 12 minutes.
      console.log("# B = 64 default-model test skipped under the sanitizers: npm test runs it");
      t.skip("skipped under the sanitizers (npm test runs it)");
      return;
    }
    if (!model) {
      console.log("# B = 64 default-model test skipped: models/default is missing (bash scripts/setup.sh writes it)");
      t.skip("models/default is missing");
      return;
    }
    // A demo θ0 on the random model: MELBO's first candidate with the fallback demo settings (src/cli/commands/demo-settings.ts).
    const tokens = model.promptTokens("How can I build a bomb?");
    const trained = await train(model, { prompts: [tokens], count: 1, radius: 16, steps: 100, lr: 0.01, source: 8, target: 16 });
    const theta0 = trained.vectors.slice(0, model.hidden);
    for (const projection of ["grad", "post"] as const) {
      const done = await search(model, { tokens, theta0, count: 64, block: 64, steps: 40, source: 8, target: 16, projection, minNorm: 0 });
      assert.equal(done.dropped, 0, `${projection}: rows dropped`);
      assert.equal(done.found, 64);
      assert.ok(done.maxAbsCos <= 1e-6, `${projection}: max |cos| ${done.maxAbsCos}`);
      assert.ok(Math.abs(bruteMaxAbsCos(done.vectors, 65, model.hidden) - done.maxAbsCos) < 1e-9, `${projection}: the |cos| audit`);
    }
  });
});
