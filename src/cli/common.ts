// Pieces several commands share: loading a model and building its prompt from CLI options.

import { checkDevice, loadModel, type LoadOptions, type Model } from "../model/model.js";
import { setThreads } from "../native.js";
import { flag, int, oneOf, required, str, type Values } from "./args.js";

export async function modelFromArgs(v: Values, options: Omit<LoadOptions, "dtype" | "device"> = {}): Promise<Model> {
  const threads = int(v, "threads", 0, 0);
  if (threads > 0) setThreads(threads);
  return loadModel(required(v, "model"), {
    ...options,
    dtype: oneOf(v, "dtype", ["f32", "bf16"] as const, "f32"),
    device: checkDevice(str(v, "device") ?? "cpu"),
  });
}

export function promptFromArgs(model: Model, v: Values): Int32Array {
  const system = str(v, "system");
  return model.promptTokens(required(v, "prompt"), { raw: flag(v, "raw"), ...(system !== undefined ? { system } : {}) });
}
