// Pieces several commands share: loading a model and building its prompt from CLI options.

import { MelboError } from "../errors.js";
import { readVectorRows, type VectorRows } from "../io/vectors.js";
import { readConfig } from "../model/config.js";
import { checkDevice, loadModel, type LoadOptions, type Model } from "../model/model.js";
import { setThreads } from "../native.js";
import { UsageError, flag, int, oneOf, required, str, type Values } from "./args.js";
import { defaultChoice, defaultOf, defaultString, modelOptions } from "./command.js";

const DTYPES = ["f32", "bf16"] as const;

export async function modelFromArgs(v: Values, options: Omit<LoadOptions, "dtype" | "device"> = {}): Promise<Model> {
  const threads = int(v, "threads", defaultOf(modelOptions, "threads"), 0);
  if (threads > 0) setThreads(threads);
  return loadModel(required(v, "model"), {
    ...options,
    dtype: oneOf(v, "dtype", DTYPES, defaultChoice(modelOptions, "dtype", DTYPES)),
    device: checkDevice(str(v, "device") ?? defaultString(modelOptions, "device")),
  });
}

export function promptFromArgs(model: Model, v: Values): Int32Array {
  const system = str(v, "system");
  return model.promptTokens(required(v, "prompt"), { raw: flag(v, "raw"), ...(system !== undefined ? { system } : {}) });
}

/**
 * The vectors file named by --FLAG (FILE or FILE:row), read and checked against the width in
 * the model's config.json before the model loads: a bad file is reported at once, not after a
 * load of seconds. `single`: exactly one vector is needed (the message asks for :row).
 */
export async function vectorsFromArgs(v: Values, flagName: string, ref: string, single: boolean): Promise<{ data: Float32Array; n: number }> {
  const vec = await vectorRowsFromArgs(v, ref);
  if (single && vec.n !== 1) throw new MelboError(`--${flagName} needs one vector: add :row (the file has ${vec.n})`, { file: vec.file });
  return vec;
}

/** The rows a FILE[:rows] reference names (FILE:0,3,10-19), checked against the model's width before the model loads. */
export async function vectorRowsFromArgs(v: Values, ref: string): Promise<VectorRows> {
  const config = await readConfig(required(v, "model"));
  return readVectorRows(ref, config.hiddenSize);
}

/** --resume or --force (runFolderFlags): at most one of them. */
export function resumeOrForce(v: Values): { resume: boolean; force: boolean } {
  const resume = flag(v, "resume"), force = flag(v, "force");
  if (resume && force) throw new UsageError("--resume continues the run in --out, --force replaces it: give one of them");
  return { resume, force };
}
