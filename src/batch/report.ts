// `melbo batch FILE --report`: `melbo report` over a whole batch. Each complete job's folder gets
// its own report.html (src/report, as `melbo report DIR` writes it), and FOLDER/report.html is one
// offline page with the batch summary, one row per job linking to its page. Like the job pages it
// loads nothing (a CSP forbids it) and escapes every text that came from a file.

import { join, relative } from "node:path";
import { describeError } from "../errors.js";
import { writeTextAtomic } from "../io/atomic.js";
import { escapeHtml } from "../report/escape.js";
import { writeReport } from "../report/report.js";
import type { Batch } from "./job-file.js";
import type { BatchSummary } from "./summary.js";

export const BATCH_REPORT_FILE = "report.html";

/** Writes every complete job's report and the batch page; returns the batch page's path and the problems met (one line each). */
export async function writeBatchReport(batch: Batch, summary: BatchSummary): Promise<{ path: string; problems: string[] }> {
  const pages = new Map<string, string>();
  const problems: string[] = [];
  for (const job of summary.jobs) {
    if (job.state !== "complete") continue;
    try {
      const { path } = await writeReport(job.out);
      pages.set(job.id, relative(batch.folder, path));
    } catch (e) {
      problems.push(`${job.id}: no report: ${describeError(e)}`);
    }
  }
  const cell = (x: string | number | null, digits = 3) => `<td>${x === null ? "–" : typeof x === "number" ? escapeHtml(Number.isInteger(x) ? String(x) : x.toFixed(digits)) : escapeHtml(x)}</td>`;
  const rows = summary.jobs.map((j) => {
    const page = pages.get(j.id);
    const name = page ? `<a href="${escapeHtml(page)}">${escapeHtml(j.id)}</a>` : escapeHtml(j.id);
    return `<tr><td>${name}</td>${cell(j.command)}${cell(j.state)}${cell(`${j.done}/${j.total ?? "?"} ${j.unit}`)}${cell(j.vectors)}${cell(j.rBelow1)}${cell(j.medianR)}${cell(j.bestR)}${cell(j.wallSeconds > 0 ? `${j.wallSeconds.toFixed(1)} s` : null)}${cell(j.device)}</tr>`;
  });
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="generator" content="melbo batch report">
<title>melbo batch ${escapeHtml(batch.name)}</title>
<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}th{background:#f4f4f4}</style>
</head><body>
<h1>melbo batch ${escapeHtml(batch.name)}</h1>
<p>${escapeHtml(batch.file)} · ${summary.totals.complete}/${summary.totals.jobs} jobs complete · ${summary.totals.vectors} vectors · ${summary.totals.rBelow1} ortho vectors with r &lt; 1 · ${escapeHtml(summary.written)}</p>
<table><thead><tr><th>job</th><th>command</th><th>state</th><th>progress</th><th>vectors</th><th>r &lt; 1</th><th>median r</th><th>best r</th><th>wall time</th><th>device</th></tr></thead>
<tbody>
${rows.join("\n")}
</tbody></table>
<p>r = ‖z(θ) − z0‖ / ‖z0 − z(0)‖ at the target block (r &lt; 1 beats θ = 0): ortho runs, and evals of ortho runs. Each job's name links to its own report.</p>
</body></html>
`;
  const path = join(batch.folder, BATCH_REPORT_FILE);
  await writeTextAtomic(path, html);
  return { path, problems };
}
