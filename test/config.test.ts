import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { readConfig } from "../src/model/config.js";
import { rejectsMelbo, tempDir } from "./helpers/errors.js";

// The published config.json of Qwen1.5-1.8B-Chat (also in shared/data/qwen1.5-1.8b-chat/).
const QWEN15: Record<string, unknown> = {
  architectures: ["Qwen2ForCausalLM"],
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151645,
  hidden_act: "silu",
  hidden_size: 2048,
  initializer_range: 0.02,
  intermediate_size: 5504,
  max_position_embeddings: 32768,
  max_window_layers: 21,
  model_type: "qwen2",
  num_attention_heads: 16,
  num_hidden_layers: 24,
  num_key_value_heads: 16,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  sliding_window: 32768,
  tie_word_embeddings: false,
  torch_dtype: "bfloat16",
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 151936,
};

async function withConfig(content: string | Record<string, unknown>): Promise<{ dir: string; file: string }> {
  const dir = await tempDir();
  const file = join(dir, "config.json");
  await writeFile(file, typeof content === "string" ? content : JSON.stringify(content));
  return { dir, file };
}

describe("readConfig", () => {
  it("reads the Qwen1.5-1.8B-Chat config", async () => {
    const { dir } = await withConfig(QWEN15);
    assert.deepEqual(await readConfig(dir), {
      architecture: "Qwen2ForCausalLM",
      hiddenSize: 2048,
      intermediateSize: 5504,
      numLayers: 24,
      numHeads: 16,
      numKvHeads: 16,
      headDim: 128,
      vocabSize: 151936,
      rmsNormEps: 1e-6,
      ropeTheta: 1e6,
      maxPositionEmbeddings: 32768,
      tieWordEmbeddings: false,
      bosTokenId: 151643,
      eosTokenId: [151645],
    });
  });

  it("accepts an eos array, GQA, tied embeddings, null bos, and defaults absent optional fields", async () => {
    const raw = { ...QWEN15, eos_token_id: [151645, 151643], num_key_value_heads: 2, tie_word_embeddings: true, bos_token_id: null };
    delete (raw as Record<string, unknown>)["rope_theta"];
    const c = await readConfig((await withConfig(raw)).dir);
    assert.deepEqual(c.eosTokenId, [151645, 151643]);
    assert.equal(c.numKvHeads, 2);
    assert.equal(c.tieWordEmbeddings, true);
    assert.equal(c.bosTokenId, null);
    assert.equal(c.ropeTheta, 10000); // Hugging Face's Qwen2Config default
    const noKv = { ...QWEN15 };
    delete (noKv as Record<string, unknown>)["num_key_value_heads"];
    assert.equal((await readConfig((await withConfig(noKv)).dir)).numKvHeads, 16);
  });

  it("rejects an unsupported architecture with the supported list", async () => {
    const { dir, file } = await withConfig({ ...QWEN15, architectures: ["LlamaForCausalLM"], model_type: "llama" });
    const e = await rejectsMelbo(() => readConfig(dir), file);
    assert.equal(e.message, `${file}: unsupported architecture "LlamaForCausalLM" (supported: Qwen2ForCausalLM — Qwen1.5, Qwen2, Qwen2.5)`);
  });

  it("rejects a wrong model_type and a missing architectures field", async () => {
    const a = await withConfig({ ...QWEN15, model_type: "qwen3" });
    await rejectsMelbo(() => readConfig(a.dir), a.file, `unsupported model_type "qwen3"`);
    const raw = { ...QWEN15 };
    delete (raw as Record<string, unknown>)["architectures"];
    const b = await withConfig(raw);
    await rejectsMelbo(() => readConfig(b.dir), b.file, `missing field "architectures"`);
  });

  it("names the missing file", async () => {
    const dir = await tempDir();
    await rejectsMelbo(() => readConfig(dir), join(dir, "config.json"), "missing config.json");
  });

  it("rejects bad JSON and a non-object", async () => {
    const a = await withConfig("{ \"hidden_size\": 64, ");
    await rejectsMelbo(() => readConfig(a.dir), a.file, "invalid JSON");
    const b = await withConfig("[1, 2]");
    await rejectsMelbo(() => readConfig(b.dir), b.file, "must be a JSON object");
  });

  for (const key of ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "eos_token_id"]) {
    it(`rejects a missing ${key}`, async () => {
      const raw = { ...QWEN15 };
      delete (raw as Record<string, unknown>)[key];
      const { dir, file } = await withConfig(raw);
      await rejectsMelbo(() => readConfig(dir), file, `missing field "${key}"`);
    });
  }

  it("rejects non-integer and non-positive sizes", async () => {
    const a = await withConfig({ ...QWEN15, hidden_size: 2048.5 });
    await rejectsMelbo(() => readConfig(a.dir), a.file, `"hidden_size" must be a positive integer`, "2048.5");
    const b = await withConfig({ ...QWEN15, num_hidden_layers: 0 });
    await rejectsMelbo(() => readConfig(b.dir), b.file, `"num_hidden_layers" must be a positive integer`);
    const c = await withConfig({ ...QWEN15, vocab_size: "151936" });
    await rejectsMelbo(() => readConfig(c.dir), c.file, `"vocab_size" must be a positive integer`);
    const d = await withConfig({ ...QWEN15, rms_norm_eps: -1 });
    await rejectsMelbo(() => readConfig(d.dir), d.file, `"rms_norm_eps" must be a positive number`);
  });

  it("rejects head counts that do not divide", async () => {
    const a = await withConfig({ ...QWEN15, num_attention_heads: 15 });
    await rejectsMelbo(() => readConfig(a.dir), a.file, "hidden_size 2048 is not a multiple of num_attention_heads 15");
    const b = await withConfig({ ...QWEN15, num_key_value_heads: 3 });
    await rejectsMelbo(() => readConfig(b.dir), b.file, "num_attention_heads 16 is not a multiple of num_key_value_heads 3");
  });

  it("rejects bad eos/bos ids", async () => {
    const a = await withConfig({ ...QWEN15, eos_token_id: "<|im_end|>" });
    await rejectsMelbo(() => readConfig(a.dir), a.file, `"eos_token_id" must be a token id`);
    const b = await withConfig({ ...QWEN15, eos_token_id: [] });
    await rejectsMelbo(() => readConfig(b.dir), b.file, `"eos_token_id"`);
    const c = await withConfig({ ...QWEN15, eos_token_id: [151645, 1.5] });
    await rejectsMelbo(() => readConfig(c.dir), c.file, `"eos_token_id"`);
    const d = await withConfig({ ...QWEN15, eos_token_id: 200000 });
    await rejectsMelbo(() => readConfig(d.dir), d.file, "eos_token_id 200000 is outside the vocabulary");
    const e = await withConfig({ ...QWEN15, bos_token_id: -1 });
    await rejectsMelbo(() => readConfig(e.dir), e.file, `"bos_token_id"`);
  });

  it("rejects what changes the computation: rope_scaling, another activation, a non-boolean tie flag", async () => {
    const a = await withConfig({ ...QWEN15, rope_scaling: { type: "yarn", factor: 4 } });
    await rejectsMelbo(() => readConfig(a.dir), a.file, "unsupported rope_scaling");
    const ok = await withConfig({ ...QWEN15, rope_scaling: null }); // Qwen2.5 configs say null
    assert.equal((await readConfig(ok.dir)).hiddenSize, 2048);
    const b = await withConfig({ ...QWEN15, hidden_act: "gelu" });
    await rejectsMelbo(() => readConfig(b.dir), b.file, `unsupported hidden_act "gelu"`);
    const c = await withConfig({ ...QWEN15, tie_word_embeddings: "false" });
    await rejectsMelbo(() => readConfig(c.dir), c.file, `"tie_word_embeddings" must be true or false`);
  });
});
