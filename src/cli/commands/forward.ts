import { writeSafetensors, type TensorToWrite } from "../../model/safetensors.js";
import { intList, int, num, required, str, UsageError, type Values } from "../args.js";
import { defaultOf, modelOptions, promptOptions, type Command } from "../command.js";
import { prepareOutputFile } from "../../io/output-folder.js";
import { modelFromArgs, promptFromArgs, vectorsFromArgs } from "../common.js";

export const forwardCommand: Command = {
  name: "forward",
  summary: "hidden states resid(k) and logits of a prompt, optionally steered, to a .safetensors file",
  options: {
    ...modelOptions,
    ...promptOptions,
    layers: { type: "string", value: "K1,K2,…", defaultText: "none, only tokens and logits", help: "blocks whose output resid.K is written" },
    steer: { type: "string", value: "FILE[:row]", defaultText: "none", help: "a steering vector to add, with --at" },
    at: { type: "string", value: "S", defaultText: "none", help: "block whose output --steer is added to" },
    scale: { type: "string", value: "X", default: 1, help: "steering strength: --steer is added × X (negative flips it)" },
    out: { type: "string", value: "FILE.safetensors", required: true, help: "the file written: tokens, resid.K, logits" },
  },
  async run(v: Values) {
    const out = required(v, "out");
    const layers = intList(v, "layers");
    const steerRef = str(v, "steer");
    if (steerRef !== undefined && str(v, "at") === undefined) throw new UsageError("--steer needs --at S (the block whose output is steered)");
    if (steerRef === undefined && str(v, "at") !== undefined) throw new UsageError("--at needs --steer FILE[:row] (the vector to add there)");
    if (steerRef === undefined && str(v, "scale") !== undefined) throw new UsageError("--scale needs --steer FILE[:row] (the vector to scale)");
    const scale = num(v, "scale", defaultOf(forwardCommand.options, "scale"));
    const steer = steerRef !== undefined ? { vectors: (await vectorsFromArgs(v, "steer", steerRef, true)).data, at: int(v, "at", -1), scales: [scale] } : undefined;
    await prepareOutputFile(out, "--out");
    const model = await modelFromArgs(v);
    try {
      const tokens = promptFromArgs(model, v);
      const result = await model.forward(tokens, { layers, logits: true, ...(steer ? { steer } : {}) });
      const d = model.hidden;
      const tensors: TensorToWrite[] = [{ name: "tokens", dtype: "I32", shape: [tokens.length], data: tokens }];
      for (const [k, resid] of result.resid) tensors.push({ name: `resid.${k}`, dtype: "F32", shape: [result.seq, d], data: resid });
      tensors.push({ name: "logits", dtype: "F32", shape: [result.seq, model.config.vocabSize], data: result.logits! });
      await writeSafetensors(out, tensors, { model: model.dir, ...(steer ? { steer: steerRef!, at: String(steer.at), scale: String(scale) } : {}) });
      process.stderr.write(`wrote ${out}: ${tokens.length} tokens, blocks [${layers.join(", ")}], logits\n`);
    } finally {
      model.dispose();
    }
  },
};
