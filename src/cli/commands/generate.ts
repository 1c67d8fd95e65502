import { int, num, numList, str, UsageError, type Values } from "../args.js";
import { defaultOf, modelOptions, promptOptions, type Command, type OptionTable } from "../command.js";
import { modelFromArgs, promptFromArgs, vectorRowsFromArgs } from "../common.js";
import { rowSeed } from "../../util/rng.js";

const generateOptions = {
  ...modelOptions,
  ...promptOptions,
  vectors: { type: "string", value: "FILE[:rows]", defaultText: "none, only the unsteered continuation", help: "steering vectors, one continuation each (rows: 3 or 0,3,10-19); with --at" },
  at: { type: "string", value: "S", defaultText: "none", help: "block whose output --vectors are added to" },
  scale: { type: "string", value: "X[,Y…]", default: 1, help: "steering strength: each vector is added × X (negative flips it); several give one line per vector and scale" },
  "max-new-tokens": { type: "string", value: "N", default: 50, help: "tokens to generate" },
  temperature: { type: "string", value: "T", default: 0, defaultText: "0 = greedy", help: "sampling temperature" },
  "top-p": { type: "string", value: "P", default: 1, help: "nucleus sampling: the smallest set of tokens with this probability" },
  seed: { type: "string", value: "N", default: 0, help: "sampling seed; a row's continuation depends on it and the row only" },
} satisfies OptionTable;
const byDefault = (key: keyof typeof generateOptions): number => defaultOf(generateOptions, key);

export const generateCommand: Command = {
  name: "generate",
  summary: "continuations of a prompt: unsteered, then one per steering vector and scale (batched, KV cache); JSON lines",
  options: generateOptions,
  notes: [
    'Each line: {"row": file row or null (unsteered), "scale", "text", "tokens"}. The unsteered line comes first.',
  ],
  async run(v: Values) {
    const ref = str(v, "vectors");
    if (ref !== undefined && str(v, "at") === undefined) throw new UsageError("--vectors needs --at S (the block whose output is steered)");
    if (ref === undefined && str(v, "at") !== undefined) throw new UsageError("--at needs --vectors FILE[:rows] (the vectors to add there)");
    const scales = numList(v, "scale", [byDefault("scale")]);
    if (ref === undefined && str(v, "scale") !== undefined) throw new UsageError("--scale needs --vectors FILE[:rows] (the vectors to scale)");
    const vec = ref !== undefined ? await vectorRowsFromArgs(v, ref) : undefined;
    const settings = {
      maxNewTokens: int(v, "max-new-tokens", byDefault("max-new-tokens"), 0),
      temperature: num(v, "temperature", byDefault("temperature")),
      topP: num(v, "top-p", byDefault("top-p")),
    };
    const seed = int(v, "seed", byDefault("seed"), 0);
    const model = await modelFromArgs(v);
    try {
      const tokens = promptFromArgs(model, v);
      const print = (row: number | null, scale: number, out: Int32Array) =>
        process.stdout.write(JSON.stringify({ row, scale, text: model.codec.decode(out), tokens: [...out] }) + "\n");
      const plain = await model.generate(tokens, { ...settings, rowSeeds: [rowSeed(seed, "unsteered")] });
      print(null, 0, plain.tokens[0]!);
      if (vec === undefined) return;
      // One batch per scale: rows × scales continuations, each with its own seed.
      for (const scale of scales) {
        const result = await model.generate(tokens, {
          ...settings, vectors: vec.data, at: int(v, "at", -1), scales: vec.rows.map(() => scale),
          rowSeeds: vec.rows.map((row) => rowSeed(seed, `row ${row} x${scale}`)),
        });
        result.tokens.forEach((out, i) => print(vec.rows[i]!, scale, out));
      }
    } finally {
      model.dispose();
    }
  },
};
