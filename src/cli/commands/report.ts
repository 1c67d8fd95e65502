import { flag, str, UsageError, type Values } from "../args.js";
import type { Command, OptionTable } from "../command.js";
import { stat } from "node:fs/promises";
import { readBatchFile } from "../../batch/job-file.js";
import { writeBatchReport } from "../../batch/report.js";
import { summarise, writeSummary } from "../../batch/summary.js";
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
  operands: "DIR | BATCH.json",
  notes: [
    "DIR is the folder of `melbo eval` (eval.json, generations.jsonl), of `melbo ortho` or of `melbo train`",
    "(vectors.safetensors, log.jsonl, trace.jsonl when present). The page works offline: no file or",
    "font is loaded from anywhere. Prints the path of the file written. Given a `melbo batch` job file, it",
    "reports the whole batch: each complete job's page and FOLDER/report.html linking them (docs/batch.md).",
  ],
  async run(v: Values, positionals: string[]) {
    if (positionals.length === 0) throw new UsageError("give the folder to report on: melbo report DIR");
    if (positionals.length > 1) throw new UsageError(`give one folder, got ${positionals.length}: ${positionals.map((p) => JSON.stringify(p)).join(" ")}`);
    const out = str(v, "out");
    if (out === "") throw new UsageError("--out needs a file name");
    const target = positionals[0]!;
    // A batch's job file: the report of the whole batch (as `melbo batch FILE --report` writes it).
    if (target.endsWith(".json") && (await stat(target).catch(() => null))?.isFile()) {
      if (out !== undefined) throw new UsageError("--out does not apply to a batch: its page is FOLDER/report.html");
      const batch = await readBatchFile(target);
      const summary = await summarise(batch);
      await writeSummary(batch, summary);
      const { path, problems } = await writeBatchReport(batch, summary);
      for (const p of problems) process.stderr.write(`melbo report: ${p}\n`);
      process.stdout.write(path + "\n");
      return;
    }
    const { path } = await writeReport(target, { ...(out !== undefined ? { out } : {}), force: flag(v, "force") });
    process.stdout.write(path + "\n");
  },
};
