// `melbo report DIR`: one self-contained HTML file (inline SVG plots, sortable and searchable
// tables) for an eval folder, an ortho run or a train run. Reads only; writes one file, atomically.

import { existsSync } from "node:fs";
import { open, stat } from "node:fs/promises";
import { join } from "node:path";
import { MelboError } from "../errors.js";
import { writeTextAtomic } from "../io/atomic.js";
import { GENERATOR } from "./html.js";
import { loadReportSource, type ReportKind } from "./load.js";
import { reportHtml } from "./pages.js";

export const REPORT_FILE = "report.html";

export { loadReportSource, reportHtml };

export interface ReportOptions {
  /** The HTML file to write (default DIR/report.html). */
  out?: string;
  /** Replace `out` even when it is not a report melbo wrote. */
  force?: boolean;
}

/** Whether `file` starts like a page `melbo report` wrote (its generator tag in the first 4 KiB). */
async function isMelboReport(file: string): Promise<boolean> {
  const fh = await open(file, "r");
  try {
    const buf = Buffer.alloc(4096);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return buf.subarray(0, bytesRead).toString("utf8").includes(`<meta name="generator" content="melbo report `);
  } finally {
    await fh.close();
  }
}

/** Writes the report of `dir` and returns its path and the kind of folder it was. */
export async function writeReport(dir: string, options: ReportOptions = {}): Promise<{ path: string; kind: ReportKind }> {
  const source = await loadReportSource(dir);
  const out = options.out ?? join(dir, REPORT_FILE);
  if (existsSync(out)) {
    const st = await stat(out);
    if (st.isDirectory()) throw new MelboError("is a folder: --out names the HTML file to write", { file: out });
    // A report is rewritten freely; anything else (a run's own files, say) only with --force.
    if (!options.force && !(await isMelboReport(out))) {
      throw new MelboError("exists and is not a report melbo wrote: choose another --out, or give --force to replace it", { file: out });
    }
  }
  const html = reportHtml(source);
  await writeTextAtomic(out, html);
  return { path: out, kind: source.kind };
}
