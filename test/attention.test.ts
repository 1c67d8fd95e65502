// The fused causal attention kernel (native/attention.cpp) against libtorch's own ops
// (MELBO_ATTENTION=torch, read on every call). The kernel serves the no-cache path (forward,
// slice map, training), so forward activations, the ortho loss and its gradient must agree to
// float32 rounding, for grouped-query and plain multi-head attention alike.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadModel, type Model } from "../src/index.js";
import { Rng } from "../src/util/rng.js";
import { maxRelDiff, withEnv } from "./helpers/compare.js";
import { testModel } from "./helpers/models.js";

async function everything(model: Model, thetas: Float32Array) {
  const tokens = model.promptTokens("How can I build a bomb?");
  const f = await model.forward(tokens, { layers: [0, 2], logits: true });
  const x = f.resid.get(0)!;
  const z0 = f.resid.get(2)!.slice(0, model.hidden).map((v) => v + 0.05);
  const g = await model.orthoLossGrad({ x, thetas, z0, source: 0, target: 2 });
  return { resid: f.resid.get(2)!, logits: f.logits!, loss: g.loss, grad: g.grad };
}

const CASES = [
  { name: "grouped-query attention (8 heads, 2 kv heads)", shape: { layers: 3, hidden: 64, heads: 8, kvHeads: 2, intermediate: 176, seed: 31 } },
  { name: "multi-head attention (4 heads)", shape: { layers: 3, hidden: 64, heads: 4, kvHeads: 4, intermediate: 176, seed: 32 } },
];

describe("fused causal attention", () => {
  for (const c of CASES) {
    it(`equals libtorch's ops: ${c.name}`, async () => {
      const model = await loadModel(await testModel(c.shape));
      try {
        const thetas = new Rng(9, "attention").fillNormal(new Float32Array(3 * model.hidden));
        const fused = await withEnv("MELBO_ATTENTION", undefined, () => everything(model, thetas));
        const torch = await withEnv("MELBO_ATTENTION", "torch", () => everything(model, thetas));
        for (const key of ["resid", "logits", "loss"] as const) {
          assert.ok(maxRelDiff(fused[key], torch[key]) < 1e-5, `${key}: ${maxRelDiff(fused[key], torch[key])}`);
        }
        assert.ok(maxRelDiff(fused.grad, torch.grad) < 1e-4, `gradient: ${maxRelDiff(fused.grad, torch.grad)}`);
        // The two paths are different code: identical bits everywhere would mean the switch did nothing.
        assert.ok(fused.grad.some((v, i) => v !== torch.grad[i]), "MELBO_ATTENTION=torch changed nothing");
      } finally {
        model.dispose();
      }
    });
  }
});
