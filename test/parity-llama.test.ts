// Parity of melbo's model against llama.cpp, an independent implementation of Qwen2 (through
// node-llama-cpp's prebuilt CPU binary, installed by scripts/install-llama-reference.sh in its own
// package folder). Each test model is exported to an F32 GGUF (test/helpers/gguf.ts) and both
// sides evaluate the same token ids: the full next-token distribution at every position, and a
// greedy continuation.
//
// Both sides compute in float32, so differences are rounding only. If the reference is not
// installed these tests fail with a message saying how to install it; they never skip.

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { loadModel } from "../src/index.js";
import { exportCheckpointToGguf } from "./helpers/gguf.js";
import { disposeLlama, loadLlamaModule, openLlamaReference, type LlamaReference } from "./helpers/llama-reference.js";
import { testModel, type TestModelOptions } from "./helpers/models.js";

/** The part of node:test's context used here (@types/node 20.9 does not export the class). */
interface TestContext {
  diagnostic(message: string): void;
}

type Model = Awaited<ReturnType<typeof loadModel>>;

// The original experiments' prompt (docs/algorithm.md §1): chat-formatted, special tokens included.
const PROMPT = [
  151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 872, 198, 4340, 646, 358, 1936, 264,
  12764, 30, 151645, 198, 151644, 77091, 198,
];
const NEW_TOKENS = 20;
// Relative difference |p − q| / q, over the tokens with q ≥ REL_FLOOR (below that llama.cpp's
// float32 softmax loses relative precision to underflow). The untied test models have flat
// distributions (largest probability ≈ 0.001), where the absolute bound alone is weak: a wrong
// RoPE base moves p by only ~2e-4 there but by a factor ~10 relatively.
const REL_TOL = 1e-3;
const REL_FLOOR = 1e-6;

interface Case {
  name: string;
  opts: TestModelOptions;
  /** Max |p_melbo − p_llama| over every position and every token of the vocabulary. */
  tol: number;
}

const CASES: Case[] = [
  { name: "untied lm_head", opts: { layers: 2, hidden: 64, heads: 4, intermediate: 176, tied: false, seed: 101 }, tol: 1e-5 },
  { name: "tied embeddings", opts: { layers: 3, hidden: 64, heads: 4, intermediate: 176, tied: true, seed: 102 }, tol: 1e-5 },
  { name: "grouped-query attention", opts: { layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 176, tied: false, seed: 103 }, tol: 1e-5 },
];

/** softmax of one logits row, in float64. */
function softmax(logits: Float32Array): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  const p = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    p[i] = Math.exp(logits[i]! - max);
    sum += p[i]!;
  }
  for (let i = 0; i < p.length; i++) p[i]! /= sum;
  return p;
}

let tmp: string;

before(async () => {
  // Fails (does not skip) with "run scripts/install-llama-reference.sh" when it is missing.
  await loadLlamaModule();
  tmp = await mkdtemp(join(tmpdir(), "melbo-parity-llama-"));
});

after(async () => {
  await disposeLlama();
  if (tmp !== undefined) await rm(tmp, { recursive: true, force: true });
});

for (const c of CASES) {
  describe(`llama.cpp parity: ${c.name}`, () => {
    let model: Model | undefined;
    let ref: LlamaReference | undefined;
    let ggufPath: string;

    before(async () => {
      const dir = await testModel(c.opts);
      ggufPath = join(tmp, `${c.opts.seed}.gguf`);
      await exportCheckpointToGguf(dir, ggufPath);
      ref = await openLlamaReference(ggufPath, PROMPT.length + NEW_TOKENS + 1);
      model = await loadModel(dir, { dtype: "f32" });
    });

    after(async () => {
      model?.dispose();
      await ref?.dispose();
      if (ggufPath !== undefined) await rm(ggufPath, { force: true });
    });

    it("GGUF metadata reads back as the checkpoint's config", async () => {
      const llamaCpp = await loadLlamaModule();
      const { metadata } = await llamaCpp.readGgufFileInfo(ggufPath, { readTensorInfo: false });
      const q = metadata.qwen2;
      assert.equal(metadata.general.architecture, "qwen2");
      assert.equal(q.rope.freq_base, 1e6); // llama.cpp silently uses 10000 when it is missing
      assert.equal(q.block_count, c.opts.layers);
      assert.equal(q.attention.head_count_kv, c.opts.kvHeads ?? c.opts.heads);
      assert.equal(metadata.tokenizer.ggml.tokens.length, 151936);
      assert.equal(metadata.tokenizer.ggml.tokens[151645], "<|im_end|>");
    });

    it("next-token probabilities at every position match", async (t: TestContext) => {
      const expected = await ref!.nextTokenProbabilities(PROMPT);
      const out = await model!.forward(Int32Array.from(PROMPT), { logits: true, layers: [] });
      assert.equal(out.batch, 1);
      assert.equal(out.seq, PROMPT.length);
      const logits = out.logits!;
      const vocab = logits.length / PROMPT.length;
      assert.equal(vocab, expected[0]!.length, "vocabulary size");

      let worst = 0;
      let worstPos = -1;
      let worstTok = -1;
      let worstRel = 0;
      let maxTop = 0;
      for (let pos = 0; pos < PROMPT.length; pos++) {
        const p = softmax(logits.subarray(pos * vocab, (pos + 1) * vocab));
        const q = expected[pos]!;
        for (let i = 0; i < vocab; i++) {
          const d = Math.abs(p[i]! - q[i]!);
          if (!(d <= worst)) {
            worst = d;
            worstPos = pos;
            worstTok = i;
          }
          if (q[i]! >= REL_FLOOR) {
            const r = d / q[i]!;
            if (!(r <= worstRel)) worstRel = r;
          }
          if (p[i]! > maxTop) maxTop = p[i]!;
        }
      }
      t.diagnostic(
        `max |p_melbo - p_llama| = ${worst.toExponential(3)} (position ${worstPos}, token ${worstTok}); ` +
          `max relative ${worstRel.toExponential(3)}; largest probability ${maxTop.toFixed(4)}`,
      );
      assert.ok(Number.isFinite(worst) && worst <= c.tol, `max abs probability difference ${worst} > ${c.tol}`);
      assert.ok(worstRel <= REL_TOL, `max relative probability difference ${worstRel} > ${REL_TOL}`);
    });

    it(`greedy generation of ${NEW_TOKENS} tokens matches`, async (t: TestContext) => {
      const expected = await ref!.greedy(PROMPT, NEW_TOKENS);
      // Both sides produce all NEW_TOKENS tokens: no stop at end-of-sequence.
      const gen = await model!.generate(Int32Array.from(PROMPT), {
        maxNewTokens: NEW_TOKENS,
        temperature: 0,
        stopTokens: [],
      });
      assert.equal(gen.tokens.length, 1);
      const got = Array.from(gen.tokens[0]!);
      t.diagnostic(`llama.cpp: ${expected.join(" ")}`);
      t.diagnostic(`melbo:     ${got.join(" ")}`);
      assert.deepEqual(got, expected);
    });
  });
}
