// The content of a report, per kind of folder: header facts, plots and tables.

import { CODE_THRESHOLD, codeShares } from "../eval/code-score.js";
import type { EvalEntry, EvalFile, GenerationLine } from "../eval/eval-file.js";
import { escapeHtml, tokenText, userText } from "./escape.js";
import { facts, figure, num, page, settingsGrid, table, tableData, text, word, type Cell, type Column, type TableSpec } from "./html.js";
import type { ReportSource, TraceLine } from "./load.js";
import { COLORS, fmt, histogram, plot, type Curve, type PointSeries } from "./svg.js";

const R_LABEL = "r (1 = as good as θ = 0)";
const ROW_LABEL = "row of the vectors file";

/** Plot ids and their point counts per series, as drawn (finite values only): written into the page's data. */
type PlotCounts = Record<string, Record<string, number>>;

function count(series: PointSeries[]): Record<string, number> {
  return Object.fromEntries(series.map((s) => [s.name, s.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y)).length]));
}

/** Centred moving average over `window` points (ends use the points there are); NaN values are skipped. */
export function movingAverage(points: { x: number; y: number }[], window: number): { x: number; y: number }[] {
  const pts = points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y)).sort((a, b) => a.x - b.x);
  const half = Math.floor(window / 2);
  return pts.map((p, i) => {
    const lo = Math.max(0, i - half), hi = Math.min(pts.length, i - half + window);
    let s = 0;
    for (let j = lo; j < hi; j++) s += pts[j]!.y;
    return { x: p.x, y: s / (hi - lo) };
  });
}

/** The window of the KL moving average: 50, or n/5 for fewer than 250 vectors (at least 2). */
export function averageWindow(n: number): number {
  return Math.max(2, Math.min(50, Math.floor(n / 5)));
}

function median(values: number[]): number {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

function seconds(s: number): string {
  if (!Number.isFinite(s)) return "–";
  if (s < 120) return `${fmt(s, 3)} s`;
  if (s < 7200) return `${fmt(s / 60, 3)} min`;
  return `${fmt(s / 3600, 3)} h`;
}

/** "0–39 (40 rows)" for consecutive rows, else the list (shortened). */
function rowsInWords(rows: number[]): string {
  if (rows.length === 0) return "none";
  const consecutive = rows.every((r, i) => i === 0 || r === rows[i - 1]! + 1);
  if (consecutive) return rows.length === 1 ? `${rows[0]}` : `${rows[0]}–${rows[rows.length - 1]} (${rows.length} rows)`;
  const shown = rows.slice(0, 20).join(", ") + (rows.length > 20 ? ", …" : "");
  return `${shown} (${rows.length} rows)`;
}

function tableSection(t: TableSpec, tables: Record<string, ReturnType<typeof tableData>>): string {
  tables[t.id] = tableData(t);
  return table(t);
}

// ---------------------------------------------------------------------------------------- eval

function evalPage(dir: string, ev: EvalFile, generations: GenerationLine[]): string {
  const plots: string[] = [];
  const counts: PlotCounts = {};
  const tables: Record<string, ReturnType<typeof tableData>> = {};
  const reference = ev.reference === "theta0" ? "P_0 = steered by θ0" : "P_0 = unsteered";
  const nPrompts = ev.prompts.length;

  // The vectors at scale 1 (or at the first scale evaluated, when 1 was not).
  const scale = ev.settings.scales.includes(1) || ev.settings.scales.length === 0 ? 1 : ev.settings.scales[0]!;
  const vectors = ev.entries.filter((e) => e.kind === "vector" && e.scale === scale && typeof e.row === "number").sort((a, b) => a.row! - b.row!);
  const scaleWords = `scale ${fmt(scale)}`;
  const meanOver = nPrompts === 1 ? "prompt 0" : `mean over ${nPrompts} prompts`;

  // KL by row, with moving averages.
  const window = averageWindow(vectors.length);
  const kl: PointSeries[] = [
    { name: "KL(P_e ‖ P_0)", points: vectors.map((e) => ({ x: e.row!, y: e.klToReference, tip: `${e.id}: KL(P_e ‖ P_0) = ${fmt(e.klToReference, 4)} nats` })) },
    { name: "KL(P_0 ‖ P_e)", points: vectors.map((e) => ({ x: e.row!, y: e.klFromReference, tip: `${e.id}: KL(P_0 ‖ P_e) = ${fmt(e.klFromReference, 4)} nats` })) },
  ];
  const unsteered = ev.entries.find((e) => e.kind === "unsteered");
  plots.push(
    figure(
      plot({
        id: "kl",
        title: "KL divergence from the reference, by vector",
        subtitle: `${reference} · next token after the prompt · ${meanOver} · ${scaleWords}`,
        xLabel: ROW_LABEL,
        yLabel: "KL, nats",
        series: kl,
        lines: vectors.length >= 4 ? kl.map((s, i) => ({ name: `${s.name}, moving mean of ${window}`, points: movingAverage(s.points, window), color: COLORS[i]! })) : [],
        hlines: ev.reference === "theta0" && unsteered && Number.isFinite(unsteered.klToReference) ? [{ y: unsteered.klToReference, label: `unsteered (θ = 0): KL(P_e ‖ P_0) = ${fmt(unsteered.klToReference)}` }] : [],
        xInteger: true,
        yZero: true,
      }),
      `Each point is one vector added at block ${ev.settings.at}. Lower means the steered model's next-token distribution is closer to ${ev.reference === "theta0" ? "θ0's" : "the unsteered model's"}.`,
    ),
  );
  counts["kl"] = count(kl);

  // Norm by row.
  const norm: PointSeries[] = [{ name: "‖θ‖", points: vectors.map((e) => ({ x: e.row!, y: e.norm, tip: `${e.id}: ‖${fmt(scale)} · θ‖ = ${fmt(e.norm, 4)}` })) }];
  plots.push(figure(plot({ id: "norm", title: "Norm of each vector", subtitle: scaleWords, xLabel: ROW_LABEL, yLabel: "norm ‖scale · θ‖₂", series: norm, xInteger: true, yZero: true })));
  counts["norm"] = count(norm);

  // r by row (ortho runs), beside random directions of the same norm.
  if (vectors.some((e) => e.r !== null && e.r !== undefined)) {
    const r: PointSeries[] = [{ name: "r of the vector", points: vectors.filter((e) => typeof e.r === "number").map((e) => ({ x: e.row!, y: e.r!, tip: `${e.id}: r = ${fmt(e.r!, 4)}` })) }];
    const random = vectors.filter((e) => typeof e.randomR === "number");
    if (random.length > 0) {
      r.push({ name: "r of a random direction (same norm)", points: random.map((e) => ({ x: e.row!, y: e.randomR!, tip: `${e.id}: random direction of the same norm, r = ${fmt(e.randomR!, 4)}` })) });
    }
    plots.push(
      figure(
        plot({
          id: "r",
          title: "Relative loss r by vector",
          subtitle: `r = ‖z(θ) − z0‖ / ‖z0 − z(0)‖ at block ${ev.settings.target ?? "?"} · ${scaleWords}`,
          xLabel: ROW_LABEL,
          yLabel: R_LABEL,
          series: r,
          hlines: [{ y: 1, label: "r = 1: as good as θ = 0" }],
          xInteger: true,
          yZero: true,
        }),
        "Below the dashed line a vector reproduces θ0's effect better than no steering at all.",
      ),
    );
    counts["r"] = count(r);
  }

  // |cos| histogram (written once the eval is complete).
  const cosine = ev.cosine;
  if (cosine) {
    const h = cosine.histogram;
    plots.push(
      figure(
        histogram({
          id: "cos",
          title: "|cos| between the evaluated rows",
          subtitle: `${cosine.pairs} pairs · max ${fmt(cosine.maxAbs)} · mean ${fmt(cosine.meanAbs)}`,
          xLabel: "|cos|",
          yLabel: "pairs of rows",
          edges: h.edges,
          counts: h.counts,
          series: "pairs",
        }),
        "One bar per bin, all bins drawn the same width whatever their edges (decades: 0, 1e-9, …, 0.1, 1).",
      ),
    );
    counts["cos"] = { pairs: h.counts.length };
  }

  // Code score by row.
  const code: PointSeries[] = [
    { name: "greedy", points: vectors.map((e) => ({ x: e.row!, y: e.greedyCodeScore, tip: `${e.id}: greedy code score ${fmt(e.greedyCodeScore, 3)}` })) },
    { name: "sampled (mean)", points: vectors.map((e) => ({ x: e.row!, y: e.sampleCodeScore, tip: `${e.id}: mean code score of the samples ${fmt(e.sampleCodeScore, 3)}` })) },
  ];
  const shares = codeShares(vectors);
  if (shares.counted > 0) {
    code.push({ name: "share of samples that are code", points: vectors.map((e) => ({ x: e.row!, y: e.sampleCodeShare, tip: `${e.id}: ${fmt(e.sampleCodeShare * 100, 3)} % of the samples are code` })) });
  }
  plots.push(
    figure(
      plot({
        id: "code", title: "Code score of the continuations, by vector",
        subtitle: `${meanOver} · ${scaleWords} · ${ev.settings.samples} sample${ev.settings.samples === 1 ? "" : "s"} at T = ${fmt(ev.settings.temperature)}`,
        xLabel: ROW_LABEL, yLabel: "code score / share", series: code, hlines: [{ y: CODE_THRESHOLD, label: `code from ${CODE_THRESHOLD}` }], xInteger: true, yZero: true,
      }),
      `How much the continuation looks like code (see docs/eval.md); a text is code from a score of ${CODE_THRESHOLD}.` +
        (shares.counted > 0 ? ` ${shares.code} of ${shares.counted} vectors turn at least half of their sampled answers into code.` : ""),
    ),
  );
  counts["code"] = count(code);

  // Sums and means of the first k rows.
  const combos = ev.entries.filter((e) => (e.kind === "sum" || e.kind === "mean") && typeof e.k === "number");
  if (combos.length > 0) {
    const series: PointSeries[] = (["sum", "mean"] as const)
      .map((kind) => ({
        name: kind === "sum" ? "sum of the first k rows" : "mean of the first k rows",
        points: combos.filter((e) => e.kind === kind).map((e) => ({ x: e.k!, y: e.klToReference, tip: `${e.id}: KL(P_e ‖ P_0) = ${fmt(e.klToReference, 4)} nats, ‖θ‖ = ${fmt(e.norm, 4)}` })),
      }))
      .filter((s) => s.points.length > 0);
    plots.push(figure(plot({ id: "sums", title: "Sums and means of the first k vectors", subtitle: `${reference} · ${meanOver}`, xLabel: "k (vectors combined)", yLabel: "KL(P_e ‖ P_0), nats", series, xInteger: true, yZero: true })));
    counts["sums"] = count(series);
  }

  // Entries table.
  const ortho = ev.entries.some((e) => e.r !== null && e.r !== undefined);
  const random = ev.entries.some((e) => e.randomR !== null && e.randomR !== undefined);
  const entryColumns: Column[] = [
    { label: "entry", type: "text" },
    { label: "kind", type: "text" },
    { label: "row", type: "num" },
    { label: "k", type: "num" },
    { label: "scale", type: "num" },
    { label: "norm", type: "num", help: "‖scale · θ‖₂" },
    ...(ortho ? [{ label: "r", type: "num" as const, help: "‖z(θ) − z0‖ / ‖z0 − z(0)‖; 1 = as good as θ = 0" }] : []),
    ...(random ? [{ label: "random r", type: "num" as const, help: "r of a random direction orthogonal to θ0 with the same norm" }] : []),
    { label: "KL(P_e‖P_0)", type: "num", help: `nats, ${meanOver}; ${reference}` },
    { label: "KL(P_0‖P_e)", type: "num", help: `nats, ${meanOver}; ${reference}` },
    { label: "greedy code", type: "num", help: "code score of the greedy continuation" },
    { label: "sample code", type: "num", help: "mean code score of the sampled continuations" },
    { label: "code share", type: "num", help: `share of the sampled continuations that are code (score ≥ ${CODE_THRESHOLD})` },
    { label: "top tokens, prompt 0", type: "text", cls: "tokens", help: "the most likely next tokens under P_e, with their probabilities" },
  ];
  const entryRows: Cell[][] = ev.entries.map((e: EvalEntry) => [
    text(e.id),
    word(e.kind),
    num(e.row ?? NaN),
    num(e.k ?? NaN),
    num(e.scale),
    num(e.norm),
    ...(ortho ? [num(e.r)] : []),
    ...(random ? [num(e.randomR)] : []),
    num(e.klToReference),
    num(e.klFromReference),
    num(e.greedyCodeScore, 3),
    num(e.sampleCodeScore, 3),
    num(e.sampleCodeShare, 3),
    topTokens(e),
  ]);

  // Generations table.
  const genColumns: Column[] = [
    { label: "entry", type: "text" },
    { label: "prompt", type: "num" },
    { label: "mode", type: "text" },
    { label: "code score", type: "num" },
    { label: "text", type: "text", cls: "gen" },
  ];
  const genRows: Cell[][] = generations.map((g) => [
    text(g.entry),
    num(g.prompt),
    word(g.mode === "sample" ? `sample ${g.sample ?? ""}`.trim() : g.mode),
    num(g.codeScore, 3),
    text(g.text),
  ]);

  const s = ev.settings;
  const header = facts([
    ["model", userText(ev.model)],
    ["vectors file", `${userText(ev.vectors.file)} (${ev.vectors.n} × ${ev.vectors.d})`],
    ["kind", escapeHtml(`${ev.vectors.kind}${ev.vectors.kind === "ortho" ? " (MELBO-ortho run: row 0 is θ0)" : ev.vectors.kind === "train" ? " (MELBO run)" : ""}`)],
    ["reference", escapeHtml(reference)],
    ["prompts", `<ol class="prompts" start="0">${ev.prompts.map((p) => `<li>${userText(p.text)} <span class="note">(${p.tokens} tokens)</span></li>`).join("")}</ol>`],
    [
      "settings",
      settingsGrid({
        rows: rowsInWords(s.rows),
        scales: s.scales.map((x) => fmt(x)).join(", "),
        sums: s.sums.join(", ") || "none",
        "steered at block": s.at,
        ...(s.target !== null && s.target !== undefined ? { "r measured at block": s.target } : {}),
        "max new tokens": s.maxNewTokens,
        temperature: s.temperature,
        samples: s.samples,
        seed: s.seed,
      }),
    ],
    ["|cos| of the rows", escapeHtml(cosine ? `${cosine.pairs} pairs, max ${fmt(cosine.maxAbs)}, mean ${fmt(cosine.meanAbs)}` : "not computed yet (the eval is not complete)")],
    ...(codeShares(vectors).counted > 0 ? [["answers in code", escapeHtml(codeSharesInWords(vectors))] as [string, string]] : []),
    ["entries", escapeHtml(`${ev.entries.length} (${vectors.length} vectors at ${scaleWords}); ${generations.length} continuations`)],
    ["time", escapeHtml(`${seconds(ev.seconds)}, melbo ${ev.melboVersion}`)],
  ]);

  const incomplete = ev.complete === false
    ? `<p class="warn">This eval is not complete (it is running, or was stopped): ${ev.entries.length} entries so far. <code>melbo eval --resume</code> continues it; run <code>melbo report</code> again afterwards.</p>`
    : "";
  const sections = [
    incomplete,
    `<section class="card">${header}</section>`,
    `<h2>Plots</h2><div class="plots">${plots.join("")}</div>`,
    tableSection({ id: "entries", caption: "Entries", columns: entryColumns, rows: entryRows, searchId: "search-entries", placeholder: "filter entries" }, tables),
    tableSection({ id: "generations", caption: "Continuations", columns: genColumns, rows: genRows, searchId: "search", placeholder: "filter continuations: entry, mode, text…" }, tables),
  ];
  return page({
    title: `melbo report: eval of ${ev.vectors.kind} vectors`,
    subtitle: `Folder ${userText(dir)} · ${escapeHtml(reference)}`,
    sections,
    data: { kind: "eval", dir, reference, prompts: ev.prompts.map((p) => p.text), plots: counts, tables },
  });
}

function topTokens(e: EvalEntry): Cell {
  const top = e.prompts[0]?.top ?? [];
  if (top.length === 0) return { html: `<span class="na">–</span>` };
  const shown = top.slice(0, 5).map((t) => `<span class="tok">“${userText(tokenText(t.text))}”</span> ${escapeHtml(fmt(t.p, 2))}`);
  return { html: shown.join(", ") };
}

// ---------------------------------------------------------------------------------------- runs

/** One faint line per traced vector (only rows that are in the log), coloured from first to last row; its end as a point. */
/**
 * One curve per traced vector. A trace point j is the value after j·every steps; `finals` (from
 * the log) adds each vector's value after its last step, so a curve ends where the log says.
 * `skipStart` drops the point before any step (an ortho vector's first row starts at θ0 itself,
 * where r = 0 before the first projection: a drop that says nothing and squashes the rest).
 */
function tracePlot(id: string, trace: TraceLine[], finals: Map<number, { steps: number; value: number }>, what: { title: string; yLabel: string; valueName: string; hline?: { y: number; label: string }; skipStart?: boolean }): { svg: string; counts: Record<string, number>; curves: number } {
  const byRow = new Map<number, TraceLine>();
  for (const t of trace) {
    const end = finals.get(t.index);
    if (end === undefined) continue; // the last line of a row wins (a resumed run)
    const points = t.values.map((y, i) => ({ x: i * t.every, y })).filter((p) => !(what.skipStart && p.x === 0) && p.x < end.steps);
    points.push({ x: end.steps, y: end.value });
    byRow.set(t.index, { index: t.index, every: t.every, values: points.map((p) => p.y), xs: points.map((p) => p.x) } as TraceLine & { xs: number[] });
  }
  const lines = [...byRow.values()].sort((a, b) => a.index - b.index) as (TraceLine & { xs: number[] })[];
  const first = lines[0]?.index ?? 0, last = lines[lines.length - 1]?.index ?? 0;
  const color = (row: number) => mix(COLORS[0]!, COLORS[1]!, last === first ? 0 : (row - first) / (last - first));
  const curves: Curve[] = lines.map((t) => ({
    points: t.values.map((y, i) => ({ x: t.xs[i]!, y })),
    tip: `row ${t.index}: ${what.valueName} from ${fmt(t.values[0] ?? NaN, 4)} at step ${t.xs[0]} to ${fmt(t.values[t.values.length - 1] ?? NaN, 4)} at step ${t.xs[t.xs.length - 1]}`,
    color: color(t.index),
  }));
  const ends: PointSeries = {
    name: "last traced step",
    color: "#333333",
    shape: "circle",
    points: lines
      .filter((t) => t.values.length > 0)
      .map((t) => ({ x: t.xs[t.xs.length - 1]!, y: t.values[t.values.length - 1]!, tip: `row ${t.index}: ${what.valueName} = ${fmt(t.values[t.values.length - 1]!, 4)} at step ${t.xs[t.xs.length - 1]}` })),
  };
  const every = [...new Set(lines.map((t) => t.every))];
  const svg = plot({
    id,
    title: what.title,
    subtitle: `${lines.length} vector${lines.length === 1 ? "" : "s"}, one line each · ${every.length === 1 && every[0] === 1 ? "recorded at every step" : `recorded every ${every.join(", ")} steps`}`,
    xLabel: "optimisation step",
    yLabel: what.yLabel,
    series: [ends],
    curves,
    curveLegend: lines.length > 1 ? [{ name: `row ${first}`, color: color(first) }, { name: `row ${last}`, color: color(last) }] : [],
    ...(what.hline ? { hlines: [what.hline] } : {}),
    xInteger: true,
    yZero: true,
  });
  return { svg, counts: count([ends]), curves: curves.length };
}

function mix(a: string, b: string, t: number): string {
  const pa = [1, 3, 5].map((i) => parseInt(a.slice(i, i + 2), 16)), pb = [1, 3, 5].map((i) => parseInt(b.slice(i, i + 2), 16));
  return "#" + pa.map((v, i) => Math.round(v + (pb[i]! - v) * t).toString(16).padStart(2, "0")).join("");
}

interface LogColumn {
  key: string;
  label: string;
  help?: string;
  digits?: number;
}

/** Log table: the known columns first, then any other fields found in the lines. */
function logTable(log: Record<string, unknown>[], known: LogColumn[]): TableSpec {
  const extra = [...new Set(log.flatMap((l) => Object.keys(l)))].filter((k) => !known.some((c) => c.key === k));
  const keys: LogColumn[] = [...known, ...extra.map((k) => ({ key: k, label: k }))];
  const isNum = (k: string) => log.every((l) => l[k] === undefined || l[k] === null || typeof l[k] === "number");
  const columns: Column[] = keys.map((k) => ({ label: k.label, type: isNum(k.key) ? "num" : "text", ...(k.help !== undefined ? { help: k.help } : {}) }));
  const rows = log.map((l) =>
    keys.map((k, i) => {
      const v = l[k.key];
      if (columns[i]!.type === "num") return num(typeof v === "number" ? v : NaN, k.digits ?? 5);
      return text(v === undefined ? "" : typeof v === "string" ? v : JSON.stringify(v));
    }),
  );
  return { id: "log", caption: "Log: one line per vector", columns, rows, searchId: "search", placeholder: "filter log lines" };
}

function runHeader(items: [string, string][], settings: Record<string, unknown>, state: Record<string, unknown>, model: unknown, version: string | undefined): string {
  const config = (model as { config?: Record<string, unknown> } | undefined)?.config;
  const modelShape = config
    ? `${config["numLayers"] ?? "?"} blocks, hidden ${config["hiddenSize"] ?? "?"}, ${config["numHeads"] ?? "?"} heads, vocabulary ${config["vocabSize"] ?? "?"}`
    : "";
  return facts([
    ...items,
    ...(modelShape ? ([["model shape", escapeHtml(modelShape)]] as [string, string][]) : []),
    ["settings", settingsGrid(settings)],
    ["state", settingsGrid(state)],
    ...(version ? ([["melbo", escapeHtml(version)]] as [string, string][]) : []),
  ]);
}

function orthoPage(src: Extract<ReportSource, { kind: "ortho" }>): string {
  const { run, metadata, trace, dir } = src;
  const log = [...run.log].sort((a, b) => a.index - b.index);
  const plots: string[] = [];
  const counts: PlotCounts = {};
  const tables: Record<string, ReturnType<typeof tableData>> = {};
  const settings = run.settings as Record<string, unknown>;

  const r: PointSeries[] = [{ name: "r", points: log.map((l) => ({ x: l.index, y: l.relLoss, tip: `row ${l.index}: r = ${fmt(l.relLoss, 4)}, loss ${fmt(l.loss, 4)}` })) }];
  plots.push(
    figure(
      plot({ id: "r", title: "Relative loss r by vector", subtitle: `r = ‖z(θ) − z0‖ / ‖z0 − z(0)‖ at block ${settings["target"] ?? "?"}`, xLabel: ROW_LABEL, yLabel: R_LABEL, series: r, hlines: [{ y: 1, label: "r = 1: as good as θ = 0" }], xInteger: true, yZero: true }),
      "Below the dashed line a vector reproduces θ0's effect better than no steering at all.",
    ),
  );
  counts["r"] = count(r);
  const norm: PointSeries[] = [{ name: "‖θ‖", points: log.map((l) => ({ x: l.index, y: l.norm, tip: `row ${l.index}: ‖θ‖ = ${fmt(l.norm, 4)}` })) }];
  const theta0Norm = Math.hypot(...run.vectors.subarray(0, run.d));
  plots.push(figure(plot({ id: "norm", title: "Norm of each vector", xLabel: ROW_LABEL, yLabel: "norm ‖θ‖₂", series: norm, hlines: [{ y: theta0Norm, label: `‖θ0‖ = ${fmt(theta0Norm)}` }], xInteger: true, yZero: true })));
  counts["norm"] = count(norm);
  const steps: PointSeries[] = [{ name: "steps", points: log.map((l) => ({ x: l.index, y: l.steps, tip: `row ${l.index}: ${l.steps} steps, ${fmt(l.seconds, 3)} s` })) }];
  plots.push(figure(plot({ id: "steps", title: "Optimisation steps per vector", subtitle: "fewer than --steps when --loss-tol stopped it early", xLabel: ROW_LABEL, yLabel: "steps", series: steps, xInteger: true, yZero: true })));
  counts["steps"] = count(steps);
  let traced = 0;
  if (trace) {
    const t = tracePlot("trace", trace, new Map(log.map((l) => [l.index, { steps: l.steps, value: l.relLoss }])), { title: "Loss curves: r during optimisation", yLabel: R_LABEL, valueName: "r", hline: { y: 1, label: "r = 1" }, skipStart: true });
    plots.push(figure(t.svg, "One faint line per vector (hover for its row); dots mark where each ends."));
    counts["trace"] = t.counts;
    traced = t.curves;
  }

  const relLoss = log.map((l) => l.relLoss);
  const state = run.state as unknown as Record<string, unknown>;
  const header = runHeader(
    [
      ["kind", escapeHtml("MELBO-ortho run (row 0 is θ0)")],
      ["model", userText(metadata["model"] ?? "(not recorded)")],
      ["prompt", metadata["prompt"] !== undefined ? userText(metadata["prompt"]) : escapeHtml(`${(settings["tokens"] as unknown[] | undefined)?.length ?? "?"} tokens (text not recorded)`)],
      ["θ0", userText(metadata["theta0"] ?? "(not recorded)")],
      ["vectors", escapeHtml(`${run.vectors.length / run.d} rows × ${run.d} (θ0 and ${log.length} vectors found)`)],
      [
        "summary",
        escapeHtml(
          `${relLoss.filter((x) => x < 1).length} of ${log.length} vectors beat θ = 0 (r < 1); ${relLoss.filter((x) => x <= 0.5).length} reach r ≤ 0.5; best r ${fmt(Math.min(...relLoss.filter(Number.isFinite)))}, median r ${fmt(median(relLoss))}; ${seconds(log.reduce((s, l) => s + l.seconds, 0))} in all`,
        ),
      ],
      ["trace", escapeHtml(trace ? `trace.jsonl: ${traced} vectors` : "no trace.jsonl in the folder")],
    ],
    { ...settings, tokens: `${(settings["tokens"] as unknown[] | undefined)?.length ?? "?"} tokens` },
    state,
    run.model,
    metadata["melbo.version"],
  );
  const lt = logTable(log as unknown as Record<string, unknown>[], [
    { key: "index", label: "row" },
    { key: "relLoss", label: "r", help: "‖z(θ) − z0‖ / ‖z0 − z(0)‖; 1 = as good as θ = 0" },
    { key: "loss", label: "loss", help: "‖z(θ) − z0‖₂" },
    { key: "norm", label: "norm", help: "‖θ‖₂" },
    { key: "steps", label: "steps" },
    { key: "seconds", label: "seconds", digits: 3 },
  ]);
  return page({
    title: "melbo report: MELBO-ortho run",
    subtitle: `Folder ${userText(dir)}`,
    sections: [`<section class="card">${header}</section>`, `<h2>Plots</h2><div class="plots">${plots.join("")}</div>`, tableSection(lt, tables)],
    data: { kind: "ortho", dir, plots: counts, tables, traced },
  });
}

function trainPage(src: Extract<ReportSource, { kind: "train" }>): string {
  const { run, metadata, trace, dir } = src;
  const log = [...run.log].sort((a, b) => a.index - b.index);
  const plots: string[] = [];
  const counts: PlotCounts = {};
  const tables: Record<string, ReturnType<typeof tableData>> = {};
  const settings = run.settings as Record<string, unknown>;

  const objective: PointSeries[] = [
    { name: "objective F (trained)", points: log.map((l) => ({ x: l.index, y: l.objective, tip: `row ${l.index}: F = ${fmt(l.objective, 4)} after ${l.steps} steps` })) },
    { name: "F at the start", points: log.map((l) => ({ x: l.index, y: l.startObjective, tip: `row ${l.index}: F = ${fmt(l.startObjective, 4)} at the random start (seed ${l.seed})` })) },
  ];
  plots.push(
    figure(
      plot({ id: "objective", title: "Objective F by vector: trained and at the start", subtitle: `blocks ${settings["source"] ?? "?"} → ${settings["target"] ?? "?"}, R = ${settings["radius"] ?? "?"}, p = ${settings["p"] ?? "?"}, q = ${settings["q"] ?? "?"}`, xLabel: ROW_LABEL, yLabel: "F (change of resid at the target)", series: objective, xInteger: true, yZero: true }),
      "How much each vector changes the residual stream at the target block, after training and at its random start.",
    ),
  );
  counts["objective"] = count(objective);
  const norm: PointSeries[] = [{ name: "‖θ‖", points: log.map((l) => ({ x: l.index, y: l.norm, tip: `row ${l.index}: ‖θ‖ = ${fmt(l.norm, 4)}` })) }];
  plots.push(figure(plot({ id: "norm", title: "Norm of each vector", subtitle: "every vector has norm R", xLabel: ROW_LABEL, yLabel: "norm ‖θ‖₂", series: norm, xInteger: true, yZero: true })));
  counts["norm"] = count(norm);
  let traced = 0;
  if (trace) {
    const t = tracePlot("trace", trace, new Map(log.map((l) => [l.index, { steps: l.steps, value: l.objective }])), { title: "Training curves: F during optimisation", yLabel: "objective F", valueName: "F" });
    plots.push(figure(t.svg, "One faint line per vector (hover for its row); dots mark where each ends."));
    counts["trace"] = t.counts;
    traced = t.curves;
  }

  let prompts: string[] | null = null;
  try {
    const p = JSON.parse(metadata["prompts"] ?? "null") as unknown;
    if (Array.isArray(p) && p.every((x) => typeof x === "string")) prompts = p;
  } catch {
    prompts = null;
  }
  const state = run.state as unknown as Record<string, unknown>;
  const gain = log.map((l) => l.objective / l.startObjective).filter(Number.isFinite);
  const header = runHeader(
    [
      ["kind", escapeHtml("MELBO run (training: row k = vector k)")],
      ["model", userText(metadata["model"] ?? "(not recorded)")],
      [
        "prompts",
        prompts
          ? `<ol class="prompts" start="0">${prompts.map((p) => `<li>${userText(p)}</li>`).join("")}</ol>`
          : escapeHtml(`${(settings["prompts"] as unknown[] | undefined)?.length ?? "?"} prompts (text not recorded)`),
      ],
      ["vectors", escapeHtml(`${run.vectors.length / run.d} rows × ${run.d}`)],
      ["summary", escapeHtml(`${log.length} vectors; F rose ${fmt(median(gain))}× from the start (median); ${seconds(log.reduce((s, l) => s + l.seconds, 0))} in all`)],
      ["trace", escapeHtml(trace ? `trace.jsonl: ${traced} vectors` : "no trace.jsonl in the folder")],
    ],
    { ...settings, prompts: `${(settings["prompts"] as unknown[] | undefined)?.length ?? "?"} prompts` },
    state,
    run.model,
    metadata["melbo.version"],
  );
  const lt = logTable(log as unknown as Record<string, unknown>[], [
    { key: "index", label: "row" },
    { key: "objective", label: "F", help: "objective at the final θ" },
    { key: "startObjective", label: "F at start" },
    { key: "norm", label: "norm" },
    { key: "steps", label: "steps" },
    { key: "seconds", label: "seconds", digits: 3 },
    { key: "seed", label: "seed" },
  ]);
  return page({
    title: "melbo report: MELBO run",
    subtitle: `Folder ${userText(dir)}`,
    sections: [`<section class="card">${header}</section>`, `<h2>Plots</h2><div class="plots">${plots.join("")}</div>`, tableSection(lt, tables)],
    data: { kind: "train", dir, plots: counts, tables, traced },
  });
}

/** The whole page for a folder read by loadReportSource. */
export function reportHtml(src: ReportSource): string {
  switch (src.kind) {
    case "eval":
      return evalPage(src.dir, src.eval, src.generations);
    case "ortho":
      return orthoPage(src);
    case "train":
      return trainPage(src);
  }
}


function codeSharesInWords(vectors: EvalEntry[]): string {
  const { counted, code } = codeShares(vectors);
  return `${code} of ${counted} vectors turn at least half of their sampled answers into code (code score ≥ ${CODE_THRESHOLD})`;
}
