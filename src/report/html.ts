// The page of `melbo report`: one self-contained HTML file (inline CSS, inline JS, inline SVG; no
// external reference of any kind, and a Content-Security-Policy that forbids loading any). Tables
// are rendered here as HTML (readable without JS); the inline script adds sorting (click a
// header) and filtering (type in the search box). What the script needs is in a
// <script type="application/json"> block.

import { MELBO_VERSION } from "../version.js";
import { escapeHtml, jsonForScript, userText } from "./escape.js";
import { fmt } from "./svg.js";

/** Marks a file as written by `melbo report` (a later report may replace it without --force). */
export const GENERATOR = `melbo report ${MELBO_VERSION}`;

export type ColumnType = "num" | "text";

export interface Column {
  label: string;
  type: ColumnType;
  /** A CSS class for the cells (e.g. "gen" for long text). */
  cls?: string;
  /** Tooltip of the header. */
  help?: string;
}

/** One cell: its HTML (already escaped) and, for numbers, the value it sorts by (NaN sorts last). */
export interface Cell {
  html: string;
  sort?: number;
}

export interface TableSpec {
  id: string;
  caption: string;
  columns: Column[];
  rows: Cell[][];
  /** id of the search box (filters this table); the one of the main table is "search". */
  searchId: string;
  /** Text in the search box before anything is typed. */
  placeholder?: string;
}

/** A number cell: shown with `digits` significant digits, sorted by its value. */
export function num(v: number | null | undefined, digits = 4): Cell {
  if (v === null || v === undefined || Number.isNaN(v)) return { html: `<span class="na">–</span>`, sort: NaN };
  return { html: escapeHtml(fmt(v, digits)), sort: v };
}

/** A text cell from a file (escaped, marked as user text); text sorts by what it shows. */
export function text(s: string): Cell {
  return { html: userText(s) };
}

/** A text cell of the page's own words (escaped, not marked). */
export function word(s: string): Cell {
  return { html: escapeHtml(s) };
}

export function table(t: TableSpec): string {
  const head = t.columns
    .map((c) => `<th scope="col" class="${c.type}"${c.help ? ` title="${escapeHtml(c.help)}"` : ""}><button type="button">${escapeHtml(c.label)}</button></th>`)
    .join("");
  const body = t.rows
    .map((r) => {
      const cells = r.map((cell, i) => {
        const col = t.columns[i]!;
        const sortAttr = cell.sort === undefined ? "" : ` data-v="${Number.isNaN(cell.sort) ? "" : String(cell.sort)}"`;
        const cls = [col.type, col.cls].filter(Boolean).join(" ");
        return `<td class="${cls}"${sortAttr}>${col.cls === "gen" ? `<div class="gen-text">${cell.html}</div>` : cell.html}</td>`;
      });
      return `<tr>${cells.join("")}</tr>`;
    })
    .join("\n");
  return (
    `<section class="table-section" id="section-${escapeHtml(t.id)}">` +
    `<h2>${escapeHtml(t.caption)}</h2>` +
    `<div class="table-tools"><label>Search <input type="search" id="${escapeHtml(t.searchId)}" data-filter="${escapeHtml(t.id)}" placeholder="${escapeHtml(t.placeholder ?? "filter rows: any text in any column")}" autocomplete="off" spellcheck="false"></label>` +
    ` <span class="count" id="${escapeHtml(t.id)}-count">${t.rows.length} of ${t.rows.length} rows</span>` +
    ` <span class="hint">click a column header to sort; click again to reverse</span></div>` +
    `<div class="table-wrap"><table id="${escapeHtml(t.id)}" class="sortable"><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table></div>` +
    `</section>`
  );
}

/** A definition list of the header: term → HTML (already escaped). */
export function facts(items: [string, string][]): string {
  return `<dl class="facts">${items.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${v}</dd>`).join("")}</dl>`;
}

/** A small key-value grid for settings objects. */
export function settingsGrid(values: Record<string, unknown>): string {
  const items = Object.entries(values).map(([k, v]) => {
    const shown = typeof v === "number" ? fmt(v, 6) : typeof v === "string" ? v : JSON.stringify(v);
    return `<span class="setting"><span class="k">${escapeHtml(k)}</span> <span class="ut">${escapeHtml(shown ?? "null")}</span></span>`;
  });
  return `<div class="settings">${items.join(" ")}</div>`;
}

const CSS = `
*{box-sizing:border-box}
body{margin:0;padding:24px 28px 48px;background:#f6f6f4;color:#161616;font:15px/1.45 "DejaVu Sans",Helvetica,Arial,sans-serif}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:19px;margin:28px 0 10px}
.sub{color:#444;margin:0 0 16px}
.card{background:#fff;border:1px solid #d9d9d4;border-radius:6px;padding:14px 18px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:6px 18px;margin:0}
dl.facts dt{font-weight:bold;color:#333}
dl.facts dd{margin:0;overflow-wrap:anywhere}
.settings{display:flex;flex-wrap:wrap;gap:4px 8px}
.setting{background:#f0f0ec;border-radius:4px;padding:1px 7px;font-size:13.5px}
.setting .k{color:#555}
ol.prompts{margin:0;padding-left:22px}
ol.prompts li{white-space:pre-wrap;overflow-wrap:anywhere}
.plots{display:flex;flex-wrap:wrap;gap:16px}
.plots figure{margin:0;background:#fff;border:1px solid #d9d9d4;border-radius:6px;padding:6px}
.plots figcaption{font-size:13px;color:#444;max-width:640px;padding:2px 8px 6px}
svg.plot{display:block;max-width:100%;height:auto}
svg.plot .point:hover{stroke:#000;stroke-width:1.5}
svg.plot .curve:hover{stroke-opacity:1;stroke-width:2.5}
.table-tools{margin:0 0 8px;display:flex;flex-wrap:wrap;gap:10px;align-items:center}
.table-tools input{font:inherit;padding:4px 8px;width:24em;border:1px solid #999;border-radius:4px}
.count{font-weight:bold}
.hint{color:#666;font-size:13px}
.table-wrap{max-height:720px;overflow:auto;border:1px solid #d9d9d4;border-radius:6px;background:#fff}
table{border-collapse:collapse;width:100%;font-size:13.5px}
thead th{position:sticky;top:0;background:#e9e9e4;z-index:1;border-bottom:1px solid #bbb;text-align:left;padding:0}
th button{font:inherit;font-weight:bold;background:none;border:0;padding:7px 9px;width:100%;text-align:inherit;cursor:pointer;color:#161616;white-space:nowrap}
th.num button{text-align:right}
th[aria-sort=ascending] button::after{content:" \\25B2"}
th[aria-sort=descending] button::after{content:" \\25BC"}
td{padding:5px 9px;border-bottom:1px solid #eee;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tbody tr:nth-child(even){background:#fafaf8}
tbody tr:hover{background:#eef3fb}
td.gen{min-width:28em}
.gen-text{white-space:pre-wrap;overflow-wrap:anywhere;max-height:9.5em;overflow:auto;font:12.5px/1.4 "DejaVu Sans Mono",monospace}
td.tokens{font:12.5px/1.4 "DejaVu Sans Mono",monospace;min-width:24em;white-space:normal;word-break:break-word}
.na{color:#999}
.note{color:#444;font-size:14px}
.warn{background:#fff4d6;border:1px solid #d9a400;border-radius:6px;padding:10px 14px;font-weight:bold}
footer{margin-top:32px;color:#666;font-size:13px}
`;

// Plain ES5-style script: no comments with slashes, no external anything. Sorts by data-v
// (numbers numerically, NaN last; text with numeric collation: "row 2" before "row 10") and filters
// rows by a case-insensitive substring of their cells.
const JS = `
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  function key(td, type) {
    var v = td.getAttribute("data-v");
    if (type === "num") return v === null || v === "" ? NaN : Number(v);
    return (v === null ? td.textContent : v).toLowerCase();
  }
  function sortTable(table, col, th) {
    var type = data.tables[table.id].columns[col].type;
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.map.call(body.rows, function (r, i) { return { r: r, k: key(r.cells[col], type), i: i }; });
    rows.sort(function (a, b) {
      if (type === "num") {
        var an = isNaN(a.k), bn = isNaN(b.k);
        if (an || bn) return an && bn ? a.i - b.i : an ? 1 : -1;
        return a.k === b.k ? a.i - b.i : (a.k < b.k ? -dir : dir);
      }
      var c = a.k.localeCompare(b.k, undefined, { numeric: true });
      return c === 0 ? a.i - b.i : c * dir;
    });
    var frag = document.createDocumentFragment();
    rows.forEach(function (x) { frag.appendChild(x.r); });
    body.appendChild(frag);
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.querySelector("button").addEventListener("click", function () { sortTable(table, col, th); });
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll("input[data-filter]"), function (input) {
    var table = document.getElementById(input.getAttribute("data-filter"));
    var count = document.getElementById(table.id + "-count");
    var texts = new Map();
    Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
      texts.set(r, Array.prototype.map.call(r.cells, function (c) { return c.textContent; }).join("\\n").toLowerCase());
    });
    function apply() {
      var q = input.value.toLowerCase(), shown = 0;
      texts.forEach(function (t, r) {
        var hit = q === "" || t.indexOf(q) >= 0;
        r.hidden = !hit;
        if (hit) shown++;
      });
      count.textContent = shown + " of " + texts.size + " rows";
    }
    input.addEventListener("input", apply);
    if (input.value !== "") apply();
  });
})();
`;

export interface PageSpec {
  title: string;
  /** One line under the title (already escaped HTML). */
  subtitle: string;
  /** Sections of the page, already HTML. */
  sections: string[];
  /** Data for the script (tables' column types) and for readers of the file. */
  data: { kind: string; tables: Record<string, { columns: { label: string; type: ColumnType }[] }>; [key: string]: unknown };
}

export function page(p: PageSpec): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="generator" content="${escapeHtml(GENERATOR)}">
<title>${escapeHtml(p.title)}</title>
<style>${CSS}</style>
</head>
<body>
<h1>${escapeHtml(p.title)}</h1>
<p class="sub">${p.subtitle}</p>
${p.sections.join("\n")}
<footer>Written by ${escapeHtml(GENERATOR)}. Hover over a point for its values.</footer>
<script type="application/json" id="report-data">${jsonForScript(p.data)}</script>
<script>${JS}</script>
</body>
</html>
`;
}

/** Columns as the script reads them. */
export function tableData(t: TableSpec): { columns: { label: string; type: ColumnType }[] } {
  return { columns: t.columns.map((c) => ({ label: c.label, type: c.type })) };
}

/** A figure holding one plot and an optional caption (already escaped HTML). */
export function figure(svg: string, caption?: string): string {
  return `<figure>${svg}${caption ? `<figcaption>${caption}</figcaption>` : ""}</figure>`;
}
