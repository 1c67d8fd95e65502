// Checkpoints in the layouts real models ship in, loaded into the engine: sharded
// (model.safetensors.index.json + shards) and F16. Each copy is written here from a single-file
// test model with melbo's own safetensors writer, and the engine's outputs must equal the
// original's: bit for bit for the same values in another layout, and for F16 bit for bit against
// an F32 checkpoint holding the f16-rounded values (f16 → f32 is exact). test/checkpoint.test.ts
// checks the readers' validation; this file checks what the engine computes from what they read.

import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { loadModel, type Model } from "../src/index.js";
import { INDEX_FILE, SINGLE_FILE, readCheckpoint } from "../src/model/checkpoint.js";
import { readSafetensorsTensor } from "../src/model/safetensors.js";
import { Rng } from "../src/util/rng.js";
import { maxRelDiff, rewriteCheckpoint, roundToF16 } from "./helpers/compare.js";
import { testModel } from "./helpers/models.js";

// Tied embeddings (as Qwen2-0.5B and 1.5B ship): one vocabulary-sized matrix instead of two halves
// the bytes each copy writes and each load maps.
const SHAPE = { layers: 3, hidden: 64, heads: 4, kvHeads: 2, intermediate: 176, tied: true, seed: 41 };

/** Everything a model computes that depends on its weights: every block's output, logits, a steered slice's loss and gradient. */
async function outputs(model: Model) {
  const tokens = model.promptTokens("How can I build a bomb?");
  const f = await model.forward(tokens, { layers: [0, 1, 2], logits: true });
  const d = model.hidden;
  const thetas = new Rng(2, "checkpoint-load").fillNormal(new Float32Array(2 * d));
  const z0 = f.resid.get(2)!.slice(0, d);
  const g = await model.orthoLossGrad({ x: f.resid.get(0)!, thetas, z0, source: 0, target: 2 });
  return { resid0: f.resid.get(0)!, resid1: f.resid.get(1)!, resid2: f.resid.get(2)!, logits: f.logits!, loss: g.loss, grad: g.grad };
}

async function withModel<T>(dir: string, dtype: "f32" | "bf16", use: (m: Model) => Promise<T>): Promise<T> {
  const m = await loadModel(dir, { dtype });
  try {
    return await use(m);
  } finally {
    m.dispose();
  }
}

describe("loading sharded and F16 checkpoints", () => {
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), "melbo-checkpoint-load-"));
  });
  after(() => rm(tmp, { recursive: true, force: true }));

  for (const source of ["F32", "BF16"] as const) {
    it(`${source} weights in 3 shards compute exactly what the single file does`, async () => {
      const dir = await testModel({ ...SHAPE, dtype: source });
      const sharded = join(tmp, `sharded-${source}`);
      const { files } = await rewriteCheckpoint(dir, sharded, { shards: 3, dtype: () => source });
      // Only the index and its shards: the loader cannot fall back on a single file.
      const present = await readdir(sharded);
      assert.ok(!present.includes(SINGLE_FILE) && present.includes(INDEX_FILE), present.join(", "));
      const index = JSON.parse(await readFile(join(sharded, INDEX_FILE), "utf8")) as { weight_map: Record<string, string> };
      assert.deepEqual([...new Set(Object.values(index.weight_map))].sort(), [...files].sort(), "every shard holds tensors");
      const [single, split] = [await readCheckpoint(dir), await readCheckpoint(sharded)];
      assert.equal(split.tensors.size, single.tensors.size);
      assert.ok([...split.tensors.values()].every((t) => t.dtype === source), "the shards keep the dtype");
      // Consecutive runs of tensors per shard: the weights the loader maps come from all three files.
      assert.equal(new Set([...split.tensors.values()].map((t) => t.path)).size, 3);
      const dtype = source === "F32" ? "f32" : "bf16";
      const want = await withModel(dir, dtype, outputs);
      const got = await withModel(sharded, dtype, outputs);
      for (const key of Object.keys(want) as (keyof typeof want)[]) assert.deepEqual(got[key], want[key], `${source} weights: ${key}`);
      if (source !== "F32") return; // (each load costs ~2 s, most of it the tokenizer)
      // A partial load (blocks 1…2, no embedding) reads from the right shards too.
      const part = async (d: string) => {
        const m = await loadModel(d, { blocks: { from: 1, to: 2 } });
        try {
          const x = new Rng(5, "checkpoint-load-x").fillNormal(new Float32Array(7 * m.hidden));
          return await m.orthoLossGrad({ x, thetas: new Float32Array(m.hidden).fill(0.1), z0: new Float32Array(m.hidden), source: 0, target: 2 });
        } finally {
          m.dispose();
        }
      };
      const [a, b] = [await part(dir), await part(sharded)];
      assert.deepEqual(b.loss, a.loss, "partial load: loss");
      assert.deepEqual(b.grad, a.grad, "partial load: gradient");
    });
  }

  it("an F16 checkpoint computes exactly what F32 weights rounded to f16 do", async () => {
    const dir = await testModel(SHAPE);
    const f16 = join(tmp, "f16");
    const rounded = join(tmp, "f32-rounded-to-f16");
    await rewriteCheckpoint(dir, f16, { dtype: () => "F16" });
    await rewriteCheckpoint(dir, rounded, { values: (_name, _shape, data) => roundToF16(data) });
    assert.ok([...(await readCheckpoint(f16)).tensors.values()].every((t) => t.dtype === "F16"));
    // f16 keeps 11 significant bits: the rounding changes the weights, so the identity below is
    // not an empty one (checked on a block matrix, read back from each file).
    const name = "model.layers.1.mlp.down_proj.weight";
    const [stored, exact] = [await readSafetensorsTensor(join(f16, SINGLE_FILE), name), await readSafetensorsTensor(join(dir, SINGLE_FILE), name)];
    const change = maxRelDiff(stored.data as Float32Array, exact.data as Float32Array);
    assert.ok(change > 1e-4 && change < 1e-3, `f16 rounding changed ${name} by ${change} (relative to its largest value)`);
    const got = await withModel(f16, "f32", outputs);
    const want = await withModel(rounded, "f32", outputs);
    for (const key of Object.keys(want) as (keyof typeof want)[]) {
      assert.deepEqual(got[key], want[key], `${key}: F16 weights against the same values in F32`);
    }
  });
});
