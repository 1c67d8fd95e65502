import { readVectorRef } from "../../io/vectors.js";
import { int, num, str, UsageError, type Values } from "../args.js";
import { modelOptions, promptOptions, type Command } from "../command.js";
import { modelFromArgs, promptFromArgs } from "../common.js";

export const generateCommand: Command = {
  name: "generate",
  summary: "continuations of a prompt, one per steering vector (batched, KV cache); JSON lines",
  usage:
    "melbo generate --model DIR --prompt TEXT [--raw] [--vectors FILE[:row] --at S] [--max-new-tokens 50]\n" +
    "               [--temperature 0] [--top-p 1] [--seed 0]",
  options: {
    ...modelOptions,
    ...promptOptions,
    vectors: { type: "string" },
    at: { type: "string" },
    "max-new-tokens": { type: "string" },
    temperature: { type: "string" },
    "top-p": { type: "string" },
    seed: { type: "string" },
  },
  async run(v: Values) {
    const ref = str(v, "vectors");
    if (ref !== undefined && str(v, "at") === undefined) throw new UsageError("--vectors needs --at S (the block whose output is steered)");
    if (ref === undefined && str(v, "at") !== undefined) throw new UsageError("--at needs --vectors FILE[:row] (the vectors to add there)");
    const model = await modelFromArgs(v);
    try {
      const tokens = promptFromArgs(model, v);
      const vec = ref !== undefined ? await readVectorRef(ref, model.hidden) : undefined;
      const result = await model.generate(tokens, {
        ...(vec ? { vectors: vec.data, at: int(v, "at", -1) } : {}),
        maxNewTokens: int(v, "max-new-tokens", 50, 0),
        temperature: num(v, "temperature", 0),
        topP: num(v, "top-p", 1),
        seed: int(v, "seed", 0, 0),
      });
      result.tokens.forEach((row, index) => {
        process.stdout.write(JSON.stringify({ index, text: model.codec.decode(row), tokens: [...row] }) + "\n");
      });
    } finally {
      model.dispose();
    }
  },
};
