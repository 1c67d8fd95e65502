// The shape every CLI command shares: one option table (what node:util parseArgs reads and what
// --help prints, defaults included) and a runner.

import type { ParseArgsConfig } from "node:util";
import { DEFAULT_SYSTEM } from "../model/tokenizer.js";
import type { Values } from "./args.js";

/** One flag: how parseArgs reads it and how --help describes it. */
export interface OptionSpec {
  type: "string" | "boolean";
  /** May be repeated (parseArgs collects the values in an array). */
  multiple?: boolean;
  short?: string;
  /** What the flag does, in a few words. */
  help: string;
  /** Placeholder of the value in --help: N, DIR, TEXT, FILE[:row], post|grad. String flags only. */
  value?: string;
  /**
   * The value the code uses when the flag is absent: a number for the flags read with int()/num()
   * (read it with defaultOf), the word for string flags (defaultString, defaultChoice).
   */
  default?: number | string;
  /** The default in words where it is not one literal value ("L-9", "none"); --help shows it instead of `default`. */
  defaultText?: string;
  /** The command cannot run without it (--help marks it "required"). */
  required?: boolean;
  /** Options shared by several commands; --help lists them under their own heading. */
  group?: "prompt" | "model";
}

export type OptionTable = Record<string, OptionSpec>;

export interface Command {
  name: string;
  summary: string;
  /** Every flag the command takes; the single source of parseArgs' options, --help and the usage line. */
  options: OptionTable;
  /** Whether positional arguments are accepted (e.g. make-test-model DIR). */
  positionals?: boolean;
  /** Placeholder of the positional arguments in the usage line (e.g. "DIR"). */
  operands?: string;
  /** Lines --help prints after the options. */
  notes?: string[];
  run(values: Values, positionals: string[]): Promise<void>;
}

/** Options every model-loading command takes. */
export const modelOptions = {
  model: { type: "string", value: "DIR", required: true, group: "model", help: "Hugging Face checkpoint folder: config.json, *.safetensors, tokenizer" },
  dtype: { type: "string", value: "f32|bf16", default: "f32", group: "model", help: "weights and compute: f32 (exact) or bf16" },
  device: { type: "string", value: "cpu|cuda|cuda:N", default: "cpu", group: "model", help: "where the model runs" },
  threads: { type: "string", value: "N", default: 0, defaultText: "MELBO_THREADS, else all cores", group: "model", help: "CPU threads" },
} satisfies OptionTable;

/** How a prompt is given: its text, wrapped in the model's chat template unless --raw. */
export const promptOptions = {
  prompt: { type: "string", value: "TEXT", required: true, group: "prompt", help: "the prompt, wrapped in the model's chat template" },
  raw: { type: "boolean", group: "prompt", help: "use the prompt's text as it is, without the chat template" },
  system: { type: "string", value: "TEXT", defaultText: JSON.stringify(DEFAULT_SYSTEM), group: "prompt", help: "the chat template's system message" },
} satisfies OptionTable;

/** --resume and --force of the commands that write a run folder (ortho, train); read with resumeOrForce(). */
export const runFolderFlags = {
  resume: { type: "boolean", help: "continue the run saved in --out" },
  force: { type: "boolean", help: "replace the run saved in --out" },
} satisfies OptionTable;

/** The options as node:util parseArgs takes them (only its own keys). */
export function parseArgsOptions(table: OptionTable): NonNullable<ParseArgsConfig["options"]> {
  return Object.fromEntries(
    Object.entries(table).map(([name, o]) => [name, { type: o.type, ...(o.multiple ? { multiple: true } : {}), ...(o.short !== undefined ? { short: o.short } : {}) }]),
  );
}

function spec(table: OptionTable, key: string): OptionSpec {
  const o = table[key];
  if (!o) throw new Error(`no option --${key} in the table`);
  return o;
}

/** The numeric default of a flag read with int() or num(). */
export function defaultOf(table: OptionTable, key: string): number {
  const d = spec(table, key).default;
  if (typeof d !== "number") throw new Error(`option --${key} has no numeric default in its table`);
  return d;
}

/** The default of a string flag. */
export function defaultString(table: OptionTable, key: string): string {
  const d = spec(table, key).default;
  if (typeof d !== "string") throw new Error(`option --${key} has no string default in its table`);
  return d;
}

/** The default of a flag read with oneOf(): one of `allowed`. */
export function defaultChoice<T extends string>(table: OptionTable, key: string, allowed: readonly T[]): T {
  const d = defaultString(table, key);
  if (!(allowed as readonly string[]).includes(d)) throw new Error(`the default of --${key}, "${d}", is not one of ${allowed.join(", ")}`);
  return d as T;
}

/** The default as --help shows it; undefined for flags without one (boolean and required flags). */
export function defaultInWords(o: OptionSpec): string | undefined {
  if (o.defaultText !== undefined) return o.defaultText;
  return o.default === undefined ? undefined : String(o.default);
}

function flagText(name: string, o: OptionSpec): string {
  return o.type === "string" ? `--${name} ${o.value ?? "VALUE"}` : `--${name}`;
}

/** One line: the command, its operands and its required flags, then [options]. */
export function usageLine(c: Command): string {
  const parts = [`melbo ${c.name}`];
  if (c.operands) parts.push(c.operands);
  for (const [name, o] of Object.entries(c.options)) {
    if (!o.required) continue;
    parts.push(flagText(name, o));
    if (o.multiple) parts.push(`[${flagText(name, o)} …]`);
  }
  parts.push("[options]");
  return parts.join(" ");
}

/** What `melbo CMD --help` prints: the summary, the usage line, every flag with its default. */
export function commandHelp(c: Command): string {
  const entries = Object.entries(c.options);
  const width = Math.max(...entries.map(([name, o]) => flagText(name, o).length));
  const line = ([name, o]: [string, OptionSpec]): string => {
    const d = defaultInWords(o);
    const repeat = o.multiple ? ", repeatable" : "";
    const note = o.required ? ` (required${repeat})` : d !== undefined ? ` (default: ${d})${o.multiple ? " (repeatable)" : ""}` : o.multiple ? " (repeatable)" : "";
    return `  ${flagText(name, o).padEnd(width)}  ${o.help}${note}`;
  };
  const sections: [string, [string, OptionSpec][]][] = [
    ["options", entries.filter(([, o]) => o.group === undefined)],
    ["prompt options", entries.filter(([, o]) => o.group === "prompt")],
    ["model options", entries.filter(([, o]) => o.group === "model")],
  ];
  const out = [c.summary, "", `usage: ${usageLine(c)}`];
  for (const [heading, list] of sections) {
    if (list.length > 0) out.push("", `${heading}:`, ...list.map(line));
  }
  if (c.notes && c.notes.length > 0) out.push("", ...c.notes);
  return out.join("\n");
}
