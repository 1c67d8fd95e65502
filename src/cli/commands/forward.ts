import { MelboError } from "../../errors.js";
import { writeSafetensors, type TensorToWrite } from "../../model/safetensors.js";
import { readVectorRef } from "../../io/vectors.js";
import { intList, int, required, str, UsageError, type Values } from "../args.js";
import { modelOptions, promptOptions, type Command } from "../command.js";
import { modelFromArgs, promptFromArgs } from "../common.js";

export const forwardCommand: Command = {
  name: "forward",
  summary: "hidden states resid(k) and logits of a prompt, optionally steered, to a .safetensors file",
  usage: "melbo forward --model DIR --prompt TEXT [--raw] [--system TEXT] --layers 8,16 [--steer FILE[:row] --at S] --out FILE.safetensors",
  options: { ...modelOptions, ...promptOptions, layers: { type: "string" }, steer: { type: "string" }, at: { type: "string" }, out: { type: "string" } },
  async run(v: Values) {
    const out = required(v, "out");
    const layers = intList(v, "layers");
    const steerRef = str(v, "steer");
    if (steerRef !== undefined && str(v, "at") === undefined) throw new UsageError("--steer needs --at S (the block whose output is steered)");
    if (steerRef === undefined && str(v, "at") !== undefined) throw new UsageError("--at needs --steer FILE[:row] (the vector to add there)");
    const model = await modelFromArgs(v);
    try {
      const tokens = promptFromArgs(model, v);
      let steer: { vectors: Float32Array; at: number } | undefined;
      if (steerRef !== undefined) {
        const vec = await readVectorRef(steerRef, model.hidden);
        if (vec.n !== 1) throw new MelboError(`--steer needs one vector: add :row (the file has ${vec.n})`, { file: vec.file });
        steer = { vectors: vec.data, at: int(v, "at", -1) };
      }
      const result = await model.forward(tokens, { layers, logits: true, ...(steer ? { steer } : {}) });
      const d = model.hidden;
      const tensors: TensorToWrite[] = [{ name: "tokens", dtype: "I32", shape: [tokens.length], data: tokens }];
      for (const [k, resid] of result.resid) tensors.push({ name: `resid.${k}`, dtype: "F32", shape: [result.seq, d], data: resid });
      tensors.push({ name: "logits", dtype: "F32", shape: [result.seq, model.config.vocabSize], data: result.logits! });
      await writeSafetensors(out, tensors, { model: model.dir, ...(steer ? { steer: steerRef!, at: String(steer.at) } : {}) });
      process.stderr.write(`wrote ${out}: ${tokens.length} tokens, blocks [${layers.join(", ")}], logits\n`);
    } finally {
      model.dispose();
    }
  },
};
