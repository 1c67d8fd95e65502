import { prepareOutputFolder } from "../../io/output-folder.js";
import { makeTestModel, type TestModelOptions } from "../../model/make-test-model.js";
import { UsageError, flag, int, oneOf, type Values } from "../args.js";
import { defaultChoice, defaultOf, type Command, type OptionTable } from "../command.js";

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

/** A shape flag's default, and the embedded default model's value where --default changes it. */
function shape(value: number, withDefault: number | undefined, help: string, placeholder = "N") {
  const text = withDefault === undefined || withDefault === value ? `${value}` : `${value}; ${withDefault} with --default`;
  return { type: "string", value: placeholder, default: value, defaultText: text, help } as const;
}

const makeTestModelOptions = {
  layers: shape(2, DEFAULT_MODEL_OPTIONS.layers, "transformer blocks"),
  hidden: shape(64, DEFAULT_MODEL_OPTIONS.hidden, "hidden size d"),
  heads: shape(4, DEFAULT_MODEL_OPTIONS.heads, "attention heads"),
  "kv-heads": { type: "string", value: "N", defaultText: "--heads", help: "key/value heads; fewer for grouped-query attention" },
  intermediate: shape(176, DEFAULT_MODEL_OPTIONS.intermediate, "MLP intermediate size"),
  tied: { type: "boolean", help: "tie the output head to the embedding" },
  seed: shape(0, DEFAULT_MODEL_OPTIONS.seed, "seed of the random weights"),
  dtype: { type: "string", value: "f32|bf16", default: "f32", help: "dtype of the weights written" },
  default: { type: "boolean", help: `the embedded default model's shape (${DEFAULT_MODEL_OPTIONS.layers} blocks, hidden ${DEFAULT_MODEL_OPTIONS.hidden}); other flags override it` },
  force: { type: "boolean", help: "replace the files melbo writes in a non-empty DIR" },
} satisfies OptionTable;
const byDefault = (key: keyof typeof makeTestModelOptions): number => defaultOf(makeTestModelOptions, key);
const DTYPES = ["f32", "bf16"] as const;

export const makeTestModelCommand: Command = {
  name: "make-test-model",
  summary: "write a deterministic random Qwen2 checkpoint (Hugging Face layout, real Qwen tokenizer)",
  positionals: true,
  operands: "DIR",
  options: makeTestModelOptions,
  notes: ["DIR: the checkpoint folder written (config.json, model.safetensors, tokenizer files)."],
  async run(v: Values, positionals: string[]) {
    const dir = positionals[0];
    if (dir === undefined || positionals.length !== 1) throw new UsageError("make-test-model takes exactly one directory");
    const base = flag(v, "default") ? DEFAULT_MODEL_OPTIONS : {};
    const heads = int(v, "heads", base.heads ?? byDefault("heads"), 1);
    const opts: TestModelOptions = {
      layers: int(v, "layers", base.layers ?? byDefault("layers"), 1),
      hidden: int(v, "hidden", base.hidden ?? byDefault("hidden"), 1),
      heads,
      kvHeads: int(v, "kv-heads", base.kvHeads ?? heads, 1),
      intermediate: int(v, "intermediate", base.intermediate ?? byDefault("intermediate"), 1),
      tied: flag(v, "tied") || (base.tied ?? false),
      seed: int(v, "seed", base.seed ?? byDefault("seed"), 0),
      dtype: oneOf(v, "dtype", DTYPES, defaultChoice(makeTestModelOptions, "dtype", DTYPES)) === "bf16" ? "BF16" : "F32",
    };
    await prepareOutputFolder(dir, { kind: "model", flag: "DIR", force: flag(v, "force") });
    await makeTestModel(dir, opts);
    process.stderr.write(`wrote ${dir}: ${JSON.stringify(opts)}\n`);
  },
};
