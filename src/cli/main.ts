// `melbo` entry point: dispatches to one command; MelboError (bad input) exits with code 2,
// anything else is a bug and exits with code 1 and its stack.

import { parseArgs } from "node:util";
import { MelboError } from "../errors.js";
import { MELBO_VERSION } from "../version.js";
import { UsageError, joinNegativeNumbers } from "./args.js";
import { commandHelp, parseArgsOptions, usageLine, type Command } from "./command.js";
import { batchCommand } from "./commands/batch.js";
import { demoCommand } from "./commands/demo.js";
import { exportCommand } from "./commands/export.js";
import { evalCommand } from "./commands/eval.js";
import { forwardCommand } from "./commands/forward.js";
import { generateCommand } from "./commands/generate.js";
import { importCommand } from "./commands/import.js";
import { infoCommand } from "./commands/info.js";
import { makeTestModelCommand } from "./commands/make-test-model.js";
import { orthoCommand } from "./commands/ortho.js";
import { calibrateCommand } from "./commands/calibrate.js";
import { reportCommand } from "./commands/report.js";
import { trainCommand } from "./commands/train.js";

export const commands: Command[] = [demoCommand, trainCommand, calibrateCommand, orthoCommand, evalCommand, forwardCommand, generateCommand, infoCommand, importCommand, exportCommand, makeTestModelCommand, reportCommand, batchCommand];

function help(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    "melbo: unsupervised steering vectors (MELBO, MELBO-ortho) for Qwen2-family checkpoints",
    "",
    "usage: melbo <command> [options]   (melbo <command> --help for its options; melbo --version)",
    "",
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
  ].join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(help() + "\n");
    return name === undefined ? 2 : 0;
  }
  if (name === "--version" || name === "-V") {
    process.stdout.write(`melbo ${MELBO_VERSION}\n`);
    return 0;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) {
    process.stderr.write(`melbo: unknown command "${name}"\n\n${help()}\n`);
    return 2;
  }
  try {
    const parsed = parseArgs({
      args: joinNegativeNumbers(rest, (flagName) => command.options[flagName]?.type === "string"),
      options: { ...parseArgsOptions(command.options), help: { type: "boolean", short: "h" } },
      allowPositionals: command.positionals ?? false,
      strict: true,
      tokens: true,
    });
    // parseArgs keeps the last of a repeated option; a repeated --prompt or --vectors is almost
    // always a mistake, so single-valued options may be given once.
    const seen = new Map<string, number>();
    for (const t of parsed.tokens) if (t.kind === "option") seen.set(t.name, (seen.get(t.name) ?? 0) + 1);
    for (const [option, times] of seen) {
      if (times > 1 && !command.options[option]?.multiple) throw new UsageError(`--${option} was given ${times} times: give it once`);
    }
    if (parsed.values["help"] === true) {
      process.stdout.write(commandHelp(command) + "\n");
      return 0;
    }
    await command.run(parsed.values, parsed.positionals);
    return 0;
  } catch (e) {
    // parseArgs reports unknown or malformed options with codes ERR_PARSE_ARGS_*.
    const code = (e as { code?: unknown }).code;
    if (e instanceof UsageError || (typeof code === "string" && code.startsWith("ERR_PARSE_ARGS"))) {
      process.stderr.write(`melbo ${name}: ${(e as Error).message}\nusage: ${usageLine(command)}\n(melbo ${name} --help lists every option)\n`);
      return 2;
    }
    if (e instanceof MelboError) {
      process.stderr.write(`melbo ${name}: ${e.message}\n`);
      return 2;
    }
    if (e instanceof Error && e.name === "AbortError") {
      process.stderr.write(`melbo ${name}: ${e.message}\n`);
      return 130;
    }
    process.stderr.write(`melbo ${name}: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return 1;
  }
}
