import { int, num, str, UsageError, type Values } from "../args.js";
import { defaultOf, modelOptions, promptOptions, type Command, type OptionTable } from "../command.js";
import { modelFromArgs, promptFromArgs, vectorsFromArgs } from "../common.js";

const generateOptions = {
  ...modelOptions,
  ...promptOptions,
  vectors: { type: "string", value: "FILE[:row]", defaultText: "none, one unsteered continuation", help: "steering vectors, one continuation each; with --at" },
  at: { type: "string", value: "S", defaultText: "none", help: "block whose output --vectors are added to" },
  "max-new-tokens": { type: "string", value: "N", default: 50, help: "tokens to generate" },
  temperature: { type: "string", value: "T", default: 0, defaultText: "0 = greedy", help: "sampling temperature" },
  "top-p": { type: "string", value: "P", default: 1, help: "nucleus sampling: the smallest set of tokens with this probability" },
  seed: { type: "string", value: "N", default: 0, help: "sampling seed" },
} satisfies OptionTable;
const byDefault = (key: keyof typeof generateOptions): number => defaultOf(generateOptions, key);

export const generateCommand: Command = {
  name: "generate",
  summary: "continuations of a prompt, one per steering vector (batched, KV cache); JSON lines",
  options: generateOptions,
  async run(v: Values) {
    const ref = str(v, "vectors");
    if (ref !== undefined && str(v, "at") === undefined) throw new UsageError("--vectors needs --at S (the block whose output is steered)");
    if (ref === undefined && str(v, "at") !== undefined) throw new UsageError("--at needs --vectors FILE[:row] (the vectors to add there)");
    const vec = ref !== undefined ? await vectorsFromArgs(v, "vectors", ref, false) : undefined;
    const model = await modelFromArgs(v);
    try {
      const tokens = promptFromArgs(model, v);
      const result = await model.generate(tokens, {
        ...(vec ? { vectors: vec.data, at: int(v, "at", -1) } : {}),
        maxNewTokens: int(v, "max-new-tokens", byDefault("max-new-tokens"), 0),
        temperature: num(v, "temperature", byDefault("temperature")),
        topP: num(v, "top-p", byDefault("top-p")),
        seed: int(v, "seed", byDefault("seed"), 0),
      });
      result.tokens.forEach((row, index) => {
        process.stdout.write(JSON.stringify({ index, text: model.codec.decode(row), tokens: [...row] }) + "\n");
      });
    } finally {
      model.dispose();
    }
  },
};
