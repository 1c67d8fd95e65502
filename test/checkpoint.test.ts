import assert from "node:assert/strict";
import { copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { MelboError } from "../src/errors.js";
import { readCheckpoint } from "../src/model/checkpoint.js";
import { blockTensorNames, expectedTensorShapes } from "../src/model/qwen2-layout.js";
import { makeTestModel } from "../src/model/make-test-model.js";
import { readSafetensorsTensor, writeSafetensors, type TensorToWrite } from "../src/model/safetensors.js";
import type { Qwen2Config } from "../src/model/types.js";
import { rejectsMelbo, tempDir } from "./helpers/errors.js";
import { testModel } from "./helpers/models.js";

// A tiny valid config (small vocab, so negative cases write kilobytes, not megabytes).
const TINY: Record<string, unknown> = {
  architectures: ["Qwen2ForCausalLM"],
  model_type: "qwen2",
  hidden_size: 16,
  intermediate_size: 24,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 32,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: false,
  bos_token_id: 1,
  eos_token_id: 2,
};

const TINY_CONFIG: Qwen2Config = {
  architecture: "Qwen2ForCausalLM",
  maxPositionEmbeddings: 32768,
  hiddenSize: 16,
  intermediateSize: 24,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 4,
  vocabSize: 32,
  rmsNormEps: 1e-6,
  ropeTheta: 10000,
  tieWordEmbeddings: false,
  bosTokenId: 1,
  eosTokenId: [2],
};

function zeros(shapes: Map<string, number[]>): TensorToWrite[] {
  return [...shapes].map(([name, shape]) => ({
    name,
    dtype: "F32" as const,
    shape,
    data: new Float32Array(shape.reduce((a, b) => a * b, 1)),
  }));
}

/** A checkpoint of TINY (config overridable), with its tensor list edited by `edit`. */
async function tinyCheckpoint(
  edit: (t: TensorToWrite[]) => TensorToWrite[] = (t) => t,
  config: Record<string, unknown> = TINY,
): Promise<string> {
  const dir = await tempDir();
  await writeFile(join(dir, "config.json"), JSON.stringify(config));
  await writeSafetensors(join(dir, "model.safetensors"), edit(zeros(expectedTensorShapes(TINY_CONFIG))));
  return dir;
}

function std(a: Float32Array, mean: number): number {
  let s = 0;
  for (const v of a) s += (v - mean) ** 2;
  return Math.sqrt(s / a.length);
}

function avg(a: Float32Array): number {
  let s = 0;
  for (const v of a) s += v;
  return s / a.length;
}

describe("expected tensors", () => {
  it("lists the HF Qwen2 names and shapes, with GQA and tying", () => {
    const m = expectedTensorShapes(TINY_CONFIG);
    assert.equal(m.size, 1 + 12 * 2 + 2);
    assert.deepEqual(m.get("model.embed_tokens.weight"), [32, 16]);
    assert.deepEqual(m.get("model.layers.1.self_attn.q_proj.weight"), [16, 16]);
    assert.deepEqual(m.get("model.layers.1.self_attn.q_proj.bias"), [16]);
    assert.deepEqual(m.get("model.layers.1.self_attn.k_proj.weight"), [8, 16]); // 2 kv heads × 4
    assert.deepEqual(m.get("model.layers.1.self_attn.v_proj.bias"), [8]);
    assert.deepEqual(m.get("model.layers.1.self_attn.o_proj.weight"), [16, 16]);
    assert.equal(m.has("model.layers.1.self_attn.o_proj.bias"), false);
    assert.deepEqual(m.get("model.layers.0.mlp.gate_proj.weight"), [24, 16]);
    assert.deepEqual(m.get("model.layers.0.mlp.up_proj.weight"), [24, 16]);
    assert.deepEqual(m.get("model.layers.0.mlp.down_proj.weight"), [16, 24]);
    assert.deepEqual(m.get("model.layers.0.input_layernorm.weight"), [16]);
    assert.deepEqual(m.get("model.layers.0.post_attention_layernorm.weight"), [16]);
    assert.deepEqual(m.get("model.norm.weight"), [16]);
    assert.deepEqual(m.get("lm_head.weight"), [32, 16]);
    assert.equal(m.has("model.layers.2.input_layernorm.weight"), false);
    assert.equal(expectedTensorShapes({ ...TINY_CONFIG, tieWordEmbeddings: true }).has("lm_head.weight"), false);
    assert.equal(blockTensorNames(7).length, 12);
    assert.ok(blockTensorNames(7).every((n) => n.startsWith("model.layers.7.")));
  });
});

describe("readCheckpoint on test models", () => {
  it("reads back the default test model", async () => {
    const dir = await testModel({});
    const ck = await readCheckpoint(dir);
    assert.equal(ck.dir, dir);
    assert.equal(ck.config.hiddenSize, 64);
    assert.equal(ck.config.numLayers, 2);
    assert.equal(ck.config.vocabSize, 151936);
    assert.equal(ck.config.tieWordEmbeddings, false);
    assert.deepEqual(ck.config.eosTokenId, [151645]);
    assert.equal(ck.config.bosTokenId, 151643);
    assert.equal(ck.tensors.size, 27);
    const emb = ck.tensors.get("model.embed_tokens.weight");
    assert.deepEqual(emb?.shape, [151936, 64]);
    assert.equal(emb?.dtype, "F32");
    assert.equal(emb?.path, join(dir, "model.safetensors"));
    assert.deepEqual(ck.tensors.get("model.layers.1.mlp.down_proj.weight")?.shape, [64, 176]);
  });

  it("tied BF16 GQA variant: no lm_head, BF16 tensors, kv shapes", async () => {
    const dir = await testModel({ tied: true, dtype: "BF16", heads: 4, kvHeads: 2, seed: 3 });
    const ck = await readCheckpoint(dir);
    assert.equal(ck.config.tieWordEmbeddings, true);
    assert.equal(ck.tensors.has("lm_head.weight"), false);
    assert.equal(ck.tensors.size, 26);
    assert.ok([...ck.tensors.values()].every((t) => t.dtype === "BF16"));
    assert.deepEqual(ck.tensors.get("model.layers.0.self_attn.k_proj.weight")?.shape, [32, 64]);
    const cfg = JSON.parse(await readFile(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
    assert.equal(cfg["torch_dtype"], "bfloat16");
  });

  it("test model weights have the trained-like scales and are deterministic per seed", async () => {
    const dir = await testModel({});
    const file = join(dir, "model.safetensors");
    const get = async (name: string) => {
      const d = (await readSafetensorsTensor(file, name)).data;
      assert.ok(d instanceof Float32Array);
      return d;
    };
    const emb = await get("model.embed_tokens.weight");
    assert.ok(Math.abs(avg(emb)) < 0.01 && Math.abs(std(emb, 0) - 1) < 0.01, "embeddings N(0, 1)");
    const q = await get("model.layers.0.self_attn.q_proj.weight");
    assert.ok(Math.abs(std(q, 0) - 1 / 8) < 0.01, `q_proj std ${std(q, 0)} vs 1/sqrt(64)`);
    const down = await get("model.layers.0.mlp.down_proj.weight");
    assert.ok(Math.abs(std(down, 0) - 1 / Math.sqrt(176)) < 0.005, "down_proj std 1/sqrt(fan_in = 176)");
    const lm = await get("lm_head.weight");
    assert.ok(Math.abs(std(lm, 0) - 1 / 8) < 0.002, "lm_head std 1/sqrt(d)");
    const norm = await get("model.layers.1.post_attention_layernorm.weight");
    assert.ok(Math.abs(avg(norm) - 1) < 0.05 && std(norm, 1) > 0.05 && std(norm, 1) < 0.15, "norm 1 + N(0, 0.1)");
    const bias = await get("model.layers.1.self_attn.k_proj.bias");
    assert.ok(std(bias, 0) > 0.05 && std(bias, 0) < 0.15, "bias N(0, 0.1)");
    // Different tensors of the same shape get different streams.
    const k = await get("model.layers.0.self_attn.k_proj.weight");
    assert.notDeepEqual(k, q);

    // Same seed → same bytes; another seed → other weights (smallest vocab to keep this quick).
    const a = await makeTestModel(await tempDir(), { vocab: 151646, layers: 1, seed: 5 });
    const b = await makeTestModel(await tempDir(), { vocab: 151646, layers: 1, seed: 5 });
    const c = await makeTestModel(await tempDir(), { vocab: 151646, layers: 1, seed: 6 });
    // (Buffer → Uint8Array view: @types/node 20.9 Buffers don't type-check as Uint8Array under TS 5.9.)
    const bytes = async (d: string): Promise<Uint8Array> => {
      const buf = await readFile(join(d, "model.safetensors"));
      return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
    };
    const same = (x: Uint8Array, y: Uint8Array): boolean => x.length === y.length && x.every((v, i) => v === y[i]);
    assert.ok(same(await bytes(a), await bytes(b)), "same seed, different bytes");
    assert.ok(!same(await bytes(a), await bytes(c)), "different seeds, same bytes");
    assert.equal((await readCheckpoint(a)).config.vocabSize, 151646);
  });

  it("refuses a vocabulary too small for the Qwen special tokens", async () => {
    const dir = await tempDir();
    await assert.rejects(() => makeTestModel(dir, { vocab: 1000 }), (e: unknown) => e instanceof MelboError && /151646/.test(e.message));
  });
});

describe("readCheckpoint: sharded layout", () => {
  /** Splits the default test model into 2 shards + index, in a fresh dir. */
  async function shardedCopy(edit?: (index: Record<string, string>, shards: TensorToWrite[][]) => void): Promise<string> {
    const src = await testModel({});
    const dir = await tempDir();
    await copyFile(join(src, "config.json"), join(dir, "config.json"));
    const names = [...expectedTensorShapes((await readCheckpoint(src)).config).keys()];
    const shards: TensorToWrite[][] = [[], []];
    const weightMap: Record<string, string> = {};
    for (const [i, name] of names.entries()) {
      const t = await readSafetensorsTensor(join(src, "model.safetensors"), name);
      assert.ok(t.data instanceof Float32Array);
      const s = i < names.length / 2 ? 0 : 1;
      shards[s]!.push({ name, dtype: "F32", shape: t.shape, data: t.data });
      weightMap[name] = `model-0000${s + 1}-of-00002.safetensors`;
    }
    edit?.(weightMap, shards);
    for (const s of [0, 1]) await writeSafetensors(join(dir, `model-0000${s + 1}-of-00002.safetensors`), shards[s]!);
    await writeFile(join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
    return dir;
  }

  it("reads tensors from both shards", async () => {
    const dir = await shardedCopy();
    const ck = await readCheckpoint(dir);
    assert.equal(ck.tensors.size, 27);
    assert.equal(ck.tensors.get("model.embed_tokens.weight")?.path, join(dir, "model-00001-of-00002.safetensors"));
    assert.equal(ck.tensors.get("lm_head.weight")?.path, join(dir, "model-00002-of-00002.safetensors"));
    const orig = await readCheckpoint(await testModel({}));
    for (const [name, t] of orig.tensors) assert.deepEqual(ck.tensors.get(name)?.shape, t.shape, name);
  });

  it("a weight_map name missing from its shard names the shard and tensor", async () => {
    const dir = await shardedCopy((_, shards) => {
      shards[1] = shards[1]!.filter((t) => t.name !== "model.norm.weight");
    });
    await rejectsMelbo(() => readCheckpoint(dir), join(dir, "model-00002-of-00002.safetensors"), `tensor "model.norm.weight" is missing`);
  });

  it("a tensor required by the config but absent from the index", async () => {
    const dir = await shardedCopy((map) => {
      delete map["model.layers.1.mlp.up_proj.weight"];
    });
    await rejectsMelbo(() => readCheckpoint(dir), join(dir, "model.safetensors.index.json"), `missing tensor "model.layers.1.mlp.up_proj.weight"`);
  });

  it("a missing shard file and a shard path outside the directory", async () => {
    const dir = await shardedCopy();
    const index = join(dir, "model.safetensors.index.json");
    await rm(join(dir, "model-00002-of-00002.safetensors"));
    await rejectsMelbo(() => readCheckpoint(dir), index, `shard "model-00002-of-00002.safetensors" named in weight_map is missing`);
    await writeFile(index, JSON.stringify({ weight_map: { "model.norm.weight": "../elsewhere.safetensors" } }));
    await rejectsMelbo(() => readCheckpoint(dir), index, "outside the checkpoint directory");
    await writeFile(index, JSON.stringify({ metadata: {} }));
    await rejectsMelbo(() => readCheckpoint(dir), index, `missing object "weight_map"`);
  });
});

describe("readCheckpoint: errors", () => {
  it("accepts the tiny baseline", async () => {
    const ck = await readCheckpoint(await tinyCheckpoint());
    assert.deepEqual(ck.config, TINY_CONFIG);
    assert.equal(ck.tensors.size, 27);
  });

  it("missing tensor names the file and the tensor", async () => {
    const dir = await tinyCheckpoint((t) => t.filter((x) => x.name !== "model.layers.1.self_attn.v_proj.bias"));
    await rejectsMelbo(() => readCheckpoint(dir), join(dir, "model.safetensors"), `missing tensor "model.layers.1.self_attn.v_proj.bias"`);
  });

  it("wrong shape says expected and found", async () => {
    const dir = await tinyCheckpoint((t) =>
      t.map((x) => (x.name === "model.layers.0.mlp.down_proj.weight" ? { ...x, shape: [24, 16] } : x)),
    );
    await rejectsMelbo(
      () => readCheckpoint(dir), join(dir, "model.safetensors"),
      `tensor "model.layers.0.mlp.down_proj.weight" has shape [24, 16], expected [16, 24]`,
    );
  });

  it("embedding rows must equal vocab_size", async () => {
    const dir = await tinyCheckpoint((t) => t, { ...TINY, vocab_size: 40 });
    await rejectsMelbo(() => readCheckpoint(dir), join(dir, "model.safetensors"), `"model.embed_tokens.weight" has shape [32, 16], expected [40, 16]`);
  });

  it("an untied config needs lm_head; a tied one does not", async () => {
    const untied = await tinyCheckpoint((t) => t.filter((x) => x.name !== "lm_head.weight"));
    await rejectsMelbo(() => readCheckpoint(untied), join(untied, "model.safetensors"), `missing tensor "lm_head.weight"`);
    const tied = await tinyCheckpoint((t) => t.filter((x) => x.name !== "lm_head.weight"), { ...TINY, tie_word_embeddings: true });
    assert.equal((await readCheckpoint(tied)).tensors.has("lm_head.weight"), false);
  });

  it("unsupported architecture", async () => {
    const dir = await tinyCheckpoint((t) => t, { ...TINY, architectures: ["LlamaForCausalLM"] });
    await rejectsMelbo(() => readCheckpoint(dir), join(dir, "config.json"), `unsupported architecture "LlamaForCausalLM"`, "Qwen2ForCausalLM");
  });

  it("weights in an unsupported dtype", async () => {
    const dir = await tinyCheckpoint((t) => [...t, { name: "extra", dtype: "I32", shape: [1], data: Int32Array.from([0]) }]);
    await rejectsMelbo(() => readCheckpoint(dir), join(dir, "model.safetensors"), `tensor "extra"`, `unsupported dtype "I32"`);
  });

  it("missing directory, a file instead of a directory, and no weights", async () => {
    const base = await tempDir();
    const missing = join(base, "nope");
    await rejectsMelbo(() => readCheckpoint(missing), missing, "checkpoint directory not found");
    const file = join(base, "file");
    await writeFile(file, "x");
    await rejectsMelbo(() => readCheckpoint(file), file, "not a directory");
    const empty = join(base, "empty");
    await mkdir(empty);
    await rejectsMelbo(() => readCheckpoint(empty), join(empty, "config.json"), "missing config.json");
    await writeFile(join(empty, "config.json"), JSON.stringify(TINY));
    await rejectsMelbo(() => readCheckpoint(empty), empty, "neither model.safetensors nor model.safetensors.index.json");
  });
});
