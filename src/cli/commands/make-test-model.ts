import { prepareOutputFolder } from "../../io/output-folder.js";
import { makeTestModel, type TestModelOptions } from "../../model/make-test-model.js";
import { UsageError, flag, int, oneOf, type Values } from "../args.js";
import type { Command } from "../command.js";

/** The embedded default model: 24 blocks so the original's blocks 8 and 16 exist. */
export const DEFAULT_MODEL_OPTIONS: TestModelOptions = {
  layers: 24,
  hidden: 256,
  heads: 8,
  kvHeads: 8,
  intermediate: 704,
  tied: false,
  seed: 0,
  dtype: "F32",
};

export const makeTestModelCommand: Command = {
  name: "make-test-model",
  summary: "write a deterministic random Qwen2 checkpoint (Hugging Face layout, real Qwen tokenizer)",
  usage:
    "melbo make-test-model DIR [--layers 2 --hidden 64 --heads 4 --kv-heads HEADS --intermediate 176\n" +
    "                      --tied --seed 0 --dtype f32|bf16] [--force]\n" +
    "melbo make-test-model DIR --default [--force]    # the embedded default model (24 blocks, hidden 256)",
  positionals: true,
  options: {
    layers: { type: "string" },
    hidden: { type: "string" },
    heads: { type: "string" },
    "kv-heads": { type: "string" },
    intermediate: { type: "string" },
    tied: { type: "boolean" },
    seed: { type: "string" },
    dtype: { type: "string" },
    default: { type: "boolean" },
    force: { type: "boolean" },
  },
  async run(v: Values, positionals: string[]) {
    const dir = positionals[0];
    if (dir === undefined || positionals.length !== 1) throw new UsageError("make-test-model takes exactly one directory");
    const base = flag(v, "default") ? DEFAULT_MODEL_OPTIONS : {};
    const heads = int(v, "heads", base.heads ?? 4, 1);
    const opts: TestModelOptions = {
      layers: int(v, "layers", base.layers ?? 2, 1),
      hidden: int(v, "hidden", base.hidden ?? 64, 1),
      heads,
      kvHeads: int(v, "kv-heads", base.kvHeads ?? heads, 1),
      intermediate: int(v, "intermediate", base.intermediate ?? 176, 1),
      tied: flag(v, "tied") || (base.tied ?? false),
      seed: int(v, "seed", base.seed ?? 0, 0),
      dtype: oneOf(v, "dtype", ["f32", "bf16"] as const, "f32") === "bf16" ? "BF16" : "F32",
    };
    await prepareOutputFolder(dir, { kind: "model", flag: "DIR", force: flag(v, "force") });
    await makeTestModel(dir, opts);
    process.stderr.write(`wrote ${dir}: ${JSON.stringify(opts)}\n`);
  },
};
