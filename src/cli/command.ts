// The shape every CLI command shares: its options for node:util parseArgs and a runner.

import type { ParseArgsConfig } from "node:util";
import type { Values } from "./args.js";

export interface Command {
  name: string;
  summary: string;
  usage: string;
  options: NonNullable<ParseArgsConfig["options"]>;
  /** Whether positional arguments are accepted (e.g. make-test-model DIR). */
  positionals?: boolean;
  run(values: Values, positionals: string[]): Promise<void>;
}

/** Options every model-loading command takes. */
export const modelOptions = {
  model: { type: "string" },
  dtype: { type: "string" },
  device: { type: "string" },
  threads: { type: "string" },
} as const;

export const promptOptions = {
  prompt: { type: "string" },
  raw: { type: "boolean" },
  system: { type: "string" },
} as const;
