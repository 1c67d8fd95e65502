import { flag, str, UsageError, type Values } from "../args.js";
import type { Command, OptionTable } from "../command.js";
import { writeReport } from "../../report/report.js";

const reportOptions = {
  out: { type: "string", value: "FILE.html", defaultText: "DIR/report.html", help: "the HTML file to write" },
  force: { type: "boolean", help: "replace --out even when it is not a report melbo wrote" },
} satisfies OptionTable;

export const reportCommand: Command = {
  name: "report",
  summary: "one self-contained HTML page (plots, searchable tables) of an eval folder or a search run",
  options: reportOptions,
  positionals: true,
  operands: "DIR",
  notes: [
    "DIR is the folder of `melbo eval` (eval.json, generations.jsonl), of `melbo ortho` or of `melbo train`",
    "(vectors.safetensors, log.jsonl, trace.jsonl when present). The page works offline: no file or",
    "font is loaded from anywhere. Prints the path of the file written.",
  ],
  async run(v: Values, positionals: string[]) {
    if (positionals.length === 0) throw new UsageError("give the folder to report on: melbo report DIR");
    if (positionals.length > 1) throw new UsageError(`give one folder, got ${positionals.length}: ${positionals.map((p) => JSON.stringify(p)).join(" ")}`);
    const out = str(v, "out");
    if (out === "") throw new UsageError("--out needs a file name");
    const { path } = await writeReport(positionals[0]!, { ...(out !== undefined ? { out } : {}), force: flag(v, "force") });
    process.stdout.write(path + "\n");
  },
};
