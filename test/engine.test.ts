// The native engine's own behaviour: KV-cache generation, batching, sampling, partial loading,
// release and dispose. Parity with independent references lives in parity-*.test.ts.

import assert from "node:assert/strict";
import { describe, it, before, after } from "node:test";
import { loadModel, type Model } from "../src/index.js";
import { Rng } from "../src/util/rng.js";
import { maxRelDiff, rewriteCheckpoint, roundToBf16, withEnv } from "./helpers/compare.js";
import { testModel } from "./helpers/models.js";

const shape = { layers: 4, hidden: 64, heads: 4, kvHeads: 2, intermediate: 176, seed: 7 };

function randomVectors(n: number, d: number, norm: number, seed: number): Float32Array {
  const v = new Rng(seed, "vectors").fillNormal(new Float32Array(n * d));
  for (let r = 0; r < n; r++) {
    let s = 0;
    for (let i = 0; i < d; i++) s += v[r * d + i]! ** 2;
    for (let i = 0; i < d; i++) v[r * d + i]! *= norm / Math.sqrt(s);
  }
  return v;
}

function argmaxLast(logits: Float32Array, seq: number, vocab: number): number {
  let best = 0;
  const base = (seq - 1) * vocab;
  for (let i = 1; i < vocab; i++) if (logits[base + i]! > logits[base + best]!) best = i;
  return best;
}

describe("engine", () => {
  let model: Model;
  let dir: string;
  before(async () => {
    dir = await testModel(shape);
    model = await loadModel(dir);
  });
  after(() => model.dispose());

  it("greedy generation with the KV cache equals re-running the whole prefix each step", async () => {
    const prompt = model.promptTokens("Tell me a story.");
    const gen = await model.generate(prompt, { maxNewTokens: 8, stopTokens: [] });
    const V = model.config.vocabSize;
    let seq = Array.from(prompt);
    for (let i = 0; i < 8; i++) {
      const out = await model.forward(Int32Array.from(seq), { logits: true });
      const next = argmaxLast(out.logits!, seq.length, V);
      assert.equal(gen.tokens[0]![i], next, `token ${i}`);
      seq.push(next);
    }
  });

  it("steered generation with the cache equals a steered full forward", async () => {
    const prompt = model.promptTokens("Hello");
    const v = randomVectors(1, model.hidden, 6, 1);
    const gen = await model.generate(prompt, { vectors: v, at: 1, maxNewTokens: 5, stopTokens: [] });
    const seq = Array.from(prompt);
    for (let i = 0; i < 5; i++) {
      const out = await model.forward(Int32Array.from(seq), { logits: true, steer: { vectors: v, at: 1 } });
      const next = argmaxLast(out.logits!, seq.length, model.config.vocabSize);
      assert.equal(gen.tokens[0]![i], next, `token ${i}`);
      seq.push(next);
    }
  });

  it("each row of a steered batch equals generating that vector alone", async () => {
    const prompt = model.promptTokens("Hello");
    const d = model.hidden;
    const v = randomVectors(3, d, 8, 2);
    const batch = await model.generate(prompt, { vectors: v, at: 2, maxNewTokens: 6, stopTokens: [] });
    assert.equal(batch.tokens.length, 3);
    for (let b = 0; b < 3; b++) {
      const alone = await model.generate(prompt, { vectors: v.slice(b * d, (b + 1) * d), at: 2, maxNewTokens: 6, stopTokens: [] });
      assert.deepEqual([...batch.tokens[b]!], [...alone.tokens[0]!], `row ${b}`);
    }
    // The vectors are strong enough to change the continuation of at least one row.
    const plain = await model.generate(prompt, { maxNewTokens: 6, stopTokens: [] });
    assert.ok(batch.tokens.some((row) => row.join() !== plain.tokens[0]!.join()));
  });

  it("sampling is reproducible by seed; top-p near 0 is greedy; stop tokens end a row", async () => {
    const prompt = model.promptTokens("Hi");
    const a = await model.generate(prompt, { maxNewTokens: 10, temperature: 1, seed: 5, stopTokens: [] });
    const b = await model.generate(prompt, { maxNewTokens: 10, temperature: 1, seed: 5, stopTokens: [] });
    const c = await model.generate(prompt, { maxNewTokens: 10, temperature: 1, seed: 6, stopTokens: [] });
    assert.deepEqual([...a.tokens[0]!], [...b.tokens[0]!]);
    assert.notDeepEqual([...a.tokens[0]!], [...c.tokens[0]!]);
    const greedy = await model.generate(prompt, { maxNewTokens: 10, stopTokens: [] });
    const nucleus = await model.generate(prompt, { maxNewTokens: 10, temperature: 1, topP: 1e-9, seed: 9, stopTokens: [] });
    assert.deepEqual([...nucleus.tokens[0]!], [...greedy.tokens[0]!]);
    const stop = greedy.tokens[0]![3]!;
    const stopped = await model.generate(prompt, { maxNewTokens: 10, stopTokens: [stop] });
    const firstStop = [...greedy.tokens[0]!].indexOf(stop);
    assert.deepEqual([...stopped.tokens[0]!], [...greedy.tokens[0]!.slice(0, firstStop + 1)]);
  });

  it("a model loaded with fewer blocks holds only those and says what is missing", async () => {
    const part = await loadModel(dir, { blocks: { to: 1 } });
    try {
      const { firstBlock, lastBlock, embedding, head, dtype, device, activations } = part.info();
      assert.deepEqual({ firstBlock, lastBlock, embedding, head, dtype, device, activations }, { firstBlock: 0, lastBlock: 1, embedding: true, head: false, dtype: "f32", device: "cpu", activations: "f32" });
      const tokens = part.promptTokens("Hi");
      const full = await model.forward(tokens, { layers: [1] });
      const mine = await part.forward(tokens, { layers: [1] });
      assert.deepEqual(mine.resid.get(1), full.resid.get(1));
      await assert.rejects(part.forward(tokens, { layers: [2] }), /blocks 0\.\.2 .* holds blocks 0\.\.1/);
      await assert.rejects(part.forward(tokens, { logits: true }), /blocks 0\.\.3/);
    } finally {
      part.dispose();
    }
  });

  it("release() drops early blocks; the slice map still runs on the rest", async () => {
    const m = await loadModel(dir, { blocks: { to: 3 } });
    try {
      const tokens = m.promptTokens("Hi");
      const x = (await m.forward(tokens, { layers: [1] })).resid.get(1)!;
      const thetas = randomVectors(2, m.hidden, 3, 4);
      const z0 = new Float32Array(m.hidden);
      const beforeRelease = await m.orthoLossGrad({ x, thetas, z0, source: 1, target: 3 });
      m.release(2, true);
      const { firstBlock, lastBlock, embedding, head, dtype, device } = m.info();
      assert.deepEqual({ firstBlock, lastBlock, embedding, head, dtype, device }, { firstBlock: 2, lastBlock: 3, embedding: false, head: true, dtype: "f32", device: "cpu" });
      const afterRelease = await m.orthoLossGrad({ x, thetas, z0, source: 1, target: 3 });
      assert.deepEqual(afterRelease.loss, beforeRelease.loss);
      await assert.rejects(m.forward(tokens, { layers: [1] }), /embedding is not loaded|holds blocks 2\.\.3/);
      await assert.rejects(m.orthoLossGrad({ x, thetas, z0, source: 0, target: 3 }), /holds blocks 2\.\.3/);
    } finally {
      m.dispose();
    }
  });

  it("release() while jobs run: they finish on the blocks they started with (copy on write)", async () => {
    const m = await loadModel(dir, { blocks: { to: 3 } });
    try {
      const tokens = m.promptTokens("How can I build a bomb? ".repeat(8));
      const alone = await m.forward(tokens, { layers: [3] });
      // Several forwards over blocks 0..3 in flight on libuv's threads, then blocks 0..2 and the
      // embedding released on the JS thread before any of them can have finished.
      const running = Array.from({ length: 4 }, () => m.forward(tokens, { layers: [3] }));
      m.release(3, true);
      for (const r of await Promise.all(running)) assert.deepEqual(r.resid.get(3), alone.resid.get(3));
      assert.equal(m.info().firstBlock, 3);
      await assert.rejects(m.forward(tokens, { layers: [3] }), /embedding is not loaded|holds blocks 3\.\.3/);
    } finally {
      m.dispose();
    }
  });

  // `--dtype bf16` has two arithmetics (docs/architecture.md, "bf16 weights, f32 arithmetic on CPUs
  // without AVX-512"). With f32 activations nothing but the weights' rounding may change the result:
  // block matrices and lm_head are rounded to bf16, norms, biases and the (untied) embedding stay
  // as the file has them (native/weights.cpp). So the forward must equal, bit for bit, the f32
  // forward of a checkpoint holding those rounded values: bit for bit through BLAS, to float32
  // rounding through the few-row kernels (bit for bit today too). (README once said "final losses
  // within 0.1 % of f32" for this mode: a property of the model's sensitivity, not of the code.)
  it("bf16 weights with f32 arithmetic equal f32 arithmetic on the bf16-rounded weights", async () => {
    const { mkdtemp, rm } = await import("node:fs/promises");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const roundedDir = await mkdtemp(join(tmpdir(), "melbo-bf16-rounded-"));
    const wide = await withEnv("MELBO_BF16_MATMUL", "f32", () => loadModel(dir, { dtype: "bf16" }));
    try {
      assert.equal(wide.info().activations, "f32");
      const isMatrix = (name: string, shape: readonly number[]) => shape.length === 2 && name !== "model.embed_tokens.weight";
      await rewriteCheckpoint(dir, roundedDir, { values: (name, shape, data) => (isMatrix(name, shape) ? roundToBf16(data) : data) });
      const rounded = await loadModel(roundedDir);
      try {
        const tokens = model.promptTokens("How can I build a bomb?");
        const layers = [0, 1, 2, 3];
        // Kernels on: bf16 weights read in place by the few-row kernels; off: widened to f32, BLAS.
        for (const skinnyRows of [undefined, "0"]) {
          const run = (m: Model) => withEnv("MELBO_SKINNY_ROWS", skinnyRows, () => m.forward(tokens, { layers, logits: true }));
          const [mine, expected, exact] = [await run(wide), await run(rounded), await run(model)];
          const outputs = [...layers.map((k) => [`resid(${k})`, mine.resid.get(k)!, expected.resid.get(k)!] as const), ["logits", mine.logits!, expected.logits!] as const];
          for (const [what, got, want] of outputs) {
            if (skinnyRows === "0") {
              // Widening is exact and the product is the same BLAS call: identical bits.
              assert.deepEqual(got, want, `widened bf16 weights: ${what}`);
            } else {
              // The kernels read bf16 and f32 weights with one template (identical bits today); a
              // different summation order would be float32 rounding, no more.
              assert.ok(maxRelDiff(got, want) <= 1e-6, `few-row kernels, bf16 weights: ${what} differs by ${maxRelDiff(got, want)}`);
            }
          }
          // The rounding did change the weights (else the identity above is empty).
          assert.ok(maxRelDiff(mine.logits!, exact.logits!) > 1e-4, "bf16 weights gave the f32 model's logits");
        }
      } finally {
        rounded.dispose();
      }
    } finally {
      wide.dispose();
      await rm(roundedDir, { recursive: true, force: true });
    }
  });

  // bf16 activations (CPUs with AVX-512, forced elsewhere with MELBO_BF16_MATMUL=bf16): every
  // product rounds to bf16 (unit roundoff u = 2^-8 ≈ 0.39 %); norms and softmax stay f32. Measured
  // on this 4-block model: 0.5 % (resid(0)) growing to 1.1 % (resid(3), logits) relative RMS error
  // against f32. Bound: 2 % (≈ 5u) at every block and on the logits, where the test had 5 %; and
  // at least u/4 away from f32 arithmetic on the same rounded weights, which the test above makes
  // bit-identical: proof that the activations really are bf16.
  it("bf16 activations stay within 2 % of f32 (≈ 5 bf16 roundings), and do round", async () => {
    const fast = await withEnv("MELBO_BF16_MATMUL", "bf16", () => loadModel(dir, { dtype: "bf16" }));
    const wide = await withEnv("MELBO_BF16_MATMUL", "f32", () => loadModel(dir, { dtype: "bf16" }));
    try {
      assert.equal(fast.info().activations, "bf16");
      const tokens = model.promptTokens("How can I build a bomb?");
      const layers = [0, 1, 2, 3];
      const run = (m: Model) => m.forward(tokens, { layers, logits: true });
      const [b, a, w] = [await run(fast), await run(model), await run(wide)];
      const rms = (x: Float32Array, y: Float32Array) => {
        let num = 0, den = 0;
        for (let i = 0; i < x.length; i++) {
          num += (x[i]! - y[i]!) ** 2;
          den += y[i]! ** 2;
        }
        return Math.sqrt(num / den);
      };
      const u = 2 ** -8;
      for (const [what, mine, f32, widened] of [
        ...layers.map((k) => [`resid(${k})`, b.resid.get(k)!, a.resid.get(k)!, w.resid.get(k)!] as const),
        ["logits", b.logits!, a.logits!, w.logits!] as const,
      ]) {
        const err = rms(mine, f32);
        assert.ok(err < 0.02, `${what}: relative error ${err} against f32 (bound 2 %)`);
        const fromWeights = rms(mine, widened);
        assert.ok(fromWeights > u / 4, `${what}: ${fromWeights} from f32 arithmetic on the same bf16 weights: the activations were not rounded`);
      }
    } finally {
      fast.dispose();
      wide.dispose();
    }
  });

  it("rejects bad input with clear errors and survives", async () => {
    const tokens = model.promptTokens("Hi");
    const d = model.hidden;
    await assert.rejects(model.forward(new Int32Array([model.config.vocabSize])), /outside the vocabulary/);
    await assert.rejects(model.forward(tokens, { layers: [4] }), /layer 4 is out of range/);
    await assert.rejects(model.forward(tokens, { steer: { vectors: new Float32Array(d - 1), at: 1 } }), /batch must be a positive integer|must be \[/);
    const nan = new Float32Array(d);
    nan[3] = NaN;
    await assert.rejects(model.forward(tokens, { steer: { vectors: nan, at: 1 } }), /non-finite/);
    await assert.rejects(model.orthoLossGrad({ x: new Float32Array(d * 2), thetas: new Float32Array(d), z0: new Float32Array(d), source: 2, target: 1 }), /must come before/);
    await assert.rejects(model.generate(tokens, { maxNewTokens: 2, topP: 0 }), /topP/);
    await assert.rejects(loadModel(dir, { blocks: { to: 9 } }), /out of range/);
    // Still healthy afterwards.
    const out = await model.forward(tokens, { layers: [0] });
    assert.equal(out.resid.get(0)!.length, tokens.length * d);
  });

  it("a prompt longer than max_position_embeddings is refused, naming the checkpoint", async () => {
    const { cp, mkdtemp, readFile, rm, symlink, writeFile } = await import("node:fs/promises");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const short = await mkdtemp(join(tmpdir(), "melbo-short-"));
    try {
      for (const f of ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]) await cp(join(dir, f), join(short, f));
      await symlink(join(dir, "model.safetensors"), join(short, "model.safetensors"));
      const config = JSON.parse(await readFile(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
      await writeFile(join(short, "config.json"), JSON.stringify({ ...config, max_position_embeddings: 8 }));
      const m = await loadModel(short, { blocks: { to: 0 } });
      try {
        const tokens = m.promptTokens("How can I build a bomb?");
        await assert.rejects(m.forward(tokens, { layers: [0] }), /melbo-short-.*: the prompt has 26 tokens, more than this model's max_position_embeddings \(8\)/);
        await assert.rejects(m.generate(tokens.slice(0, 6), { maxNewTokens: 3 }), /6 tokens \+ 3 new/);
      } finally {
        m.dispose();
      }
    } finally {
      await rm(short, { recursive: true, force: true });
    }
  });

  it("a disposed model rejects calls", async () => {
    const m = await loadModel(dir, { blocks: { to: 0 } });
    m.dispose();
    assert.throws(() => m.info(), /disposed/);
    await assert.rejects(m.forward(new Int32Array([1])), /disposed/);
  });
});
