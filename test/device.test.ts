// Device placement (`loadModel(dir, { device })`): names are checked before anything is read; a
// GPU that this build cannot use is a clear error; on a machine with a CUDA device, every entry
// point on the GPU matches the CPU. The GPU half is skipped here with a printed reason when this
// build sees no CUDA device (the CPU path is what every other test file exercises).

import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { loadModel, MelboError, type Model } from "../src/index.js";
import { native } from "../src/native.js";
import { Rng } from "../src/util/rng.js";
import { maxRelDiff } from "./helpers/compare.js";
import { testModel } from "./helpers/models.js";

const SHAPE = { layers: 4, hidden: 64, heads: 4, kvHeads: 2, intermediate: 176, seed: 23 };
const cuda = native().cudaAvailable();
const noGpu = cuda ? false : "no CUDA device is available to this melbo build (CPU libtorch or no GPU)";
if (noGpu) console.log(`# GPU comparison tests skipped: ${noGpu}`);

describe("device placement", () => {
  it("rejects an unknown device name before reading the checkpoint", async () => {
    await assert.rejects(loadModel("/nonexistent/dir", { device: "tpu" as never }), (e: unknown) => e instanceof MelboError && /device must be "cpu", "cuda" or "cuda:N"/.test(e.message));
  });

  it("the default device is the CPU, and info() says so", async () => {
    const model = await loadModel(await testModel(SHAPE), { blocks: { to: 1 } });
    try {
      assert.equal(model.info().device, "cpu");
    } finally {
      model.dispose();
    }
  });

  it("a GPU this build cannot use is a clear error", { skip: cuda ? "this build has a CUDA device" : false }, async () => {
    const dir = await testModel(SHAPE);
    await assert.rejects(loadModel(dir, { device: "cuda" }), (e: unknown) => e instanceof MelboError && /no CUDA device is available/.test(e.message));
    // The native layer refuses on its own too (a caller that skips the TypeScript checks).
    assert.throws(
      () => native().loadModel({ config: {} as never, dtype: "f32", device: "cuda", firstBlock: 0, lastBlock: 0, embedding: false, head: false, tensors: [] }),
      /no CUDA device is available/,
    );
  });
});

describe("the same results on a GPU as on the CPU", { skip: noGpu }, () => {
  let cpu: Model;
  let gpu: Model;
  after(() => {
    cpu?.dispose();
    gpu?.dispose();
  });

  it("forward, loss gradient, an ortho block, training and greedy generation match", async () => {
    const dir = await testModel(SHAPE);
    cpu = await loadModel(dir);
    gpu = await loadModel(dir, { device: "cuda" });
    assert.equal(gpu.info().device, "cuda:0");
    const d = cpu.hidden;
    const tokens = cpu.promptTokens("How can I build a bomb?");
    const theta = new Rng(5, "device").fillNormal(new Float32Array(2 * d));

    const [fc, fg] = await Promise.all([cpu, gpu].map((m) => m.forward(tokens, { layers: [1, 3], logits: true })));
    assert.ok(maxRelDiff(fg!.resid.get(3)!, fc!.resid.get(3)!) < 1e-4, "resid(3)");
    assert.ok(maxRelDiff(fg!.logits!, fc!.logits!) < 1e-4, "logits");

    const x = fc!.resid.get(1)!;
    const z0 = new Float32Array(d).map((_, i) => fc!.resid.get(3)![i]! + 0.1);
    const [gc, gg] = await Promise.all([cpu, gpu].map((m) => m.orthoLossGrad({ x, thetas: theta, z0, source: 1, target: 3 })));
    assert.ok(maxRelDiff(gg!.loss, gc!.loss) < 1e-4, "loss");
    assert.ok(maxRelDiff(gg!.grad, gc!.grad) < 1e-3, "gradient");

    const basis = new Float64Array(d);
    const t0 = theta.slice(0, d);
    let n = 0;
    for (const v of t0) n += v * v;
    t0.forEach((v, i) => (basis[i] = v / Math.sqrt(n)));
    const block = { x, theta0: t0, basis, rows: 2, steps: 5, source: 1, target: 3, lr: 0.01, betas: [0.9, 0.999] as [number, number], eps: 1e-8, projection: "post" as const, lossTolerance: 0 };
    const [oc, og] = await Promise.all([cpu.orthoBlock(block), gpu.orthoBlock(block)]);
    assert.ok(maxRelDiff(og.thetas, oc.thetas) < 1e-3, "ortho vectors");

    const [ac, ag] = await Promise.all([cpu, gpu].map((m) => m.generate(tokens, { vectors: theta, at: 1, maxNewTokens: 6, stopTokens: [] })));
    assert.deepEqual(ag!.tokens.map((r) => [...r]), ac!.tokens.map((r) => [...r]), "greedy steered generation");
  });
});
