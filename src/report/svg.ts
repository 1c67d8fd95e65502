// Plot primitives of `melbo report`: inline SVG written as text, no chart library. Every data
// point is one element with class "point" and a data-series attribute (a test counts them), with
// a <title> tooltip naming its values. Text is escaped here; callers pass plain strings.

import { escapeHtml } from "./escape.js";

/** One data point; `tip` is its tooltip (plain text). */
export interface Point {
  x: number;
  y: number;
  tip: string;
}

export type Shape = "circle" | "square" | "diamond" | "triangle";

/** Points drawn as markers (class "point"). */
export interface PointSeries {
  name: string;
  points: Point[];
  color?: string;
  shape?: Shape;
}

/** A line without markers (a moving average, say): class "line"; listed in the legend. */
export interface LineSeries {
  name: string;
  points: { x: number; y: number }[];
  color?: string;
  dashed?: boolean;
}

/** Faint per-item curves (loss curves per vector): class "curve", one path each, with a tooltip. */
export interface Curve {
  points: { x: number; y: number }[];
  tip: string;
  color: string;
}

export interface PlotSpec {
  /** Unique on the page; the svg's id is `plot-${id}`. */
  id: string;
  title: string;
  /** One line of small text under the title (what is plotted, window sizes, points left out). */
  subtitle?: string;
  xLabel: string;
  yLabel: string;
  series?: PointSeries[];
  lines?: LineSeries[];
  curves?: Curve[];
  /** Legend entries for the curves (their colours), e.g. first and last row. */
  curveLegend?: { name: string; color: string }[];
  /** Horizontal reference lines, labelled at the right. */
  hlines?: { y: number; label: string }[];
  /** x values are integers (rows, steps): ticks at integers only. */
  xInteger?: boolean;
  /** Keep 0 inside the y range. */
  yZero?: boolean;
}

/** Dark-on-light colours, distinguishable in print and for the common colour-vision deficiencies. */
export const COLORS = ["#1f5fa8", "#c2571a", "#2a7d3b", "#7b3fa0", "#8a6d00", "#444444"];
const SHAPES: Shape[] = ["circle", "square", "diamond", "triangle"];

const W = 640;
const M = { left: 74, right: 22, bottom: 52 };
/** Height of the plot area; the band above it grows with the subtitle and the legend. */
const PLOT_H = 236;
const FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"';

/** A number as a short label: 3 significant digits, exponent notation when very large or small. */
export function fmt(v: number, digits = 3): string {
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e6 || a < 1e-4) return v.toExponential(digits - 1).replace(/\.?0+e/, "e");
  if (Number.isInteger(v)) return String(v);
  const s = v.toPrecision(digits);
  return s.includes("e") ? String(Number(s)) : s.includes(".") ? s.replace(/0+$/, "").replace(/\.$/, "") : s;
}

/** About `count` round tick values covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count: number, integer = false): { ticks: number[]; lo: number; hi: number; step: number } {
  if (!(hi > lo)) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  let step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => s >= raw) ?? 10 * mag;
  if (integer) step = Math.max(1, Math.ceil(step));
  const first = Math.floor(lo / step) * step;
  const last = Math.ceil(hi / step) * step;
  const ticks: number[] = [];
  for (let i = 0; first + i * step <= last + step * 1e-9; i++) ticks.push(Number((first + i * step).toPrecision(12)));
  return { ticks, lo: first, hi: last, step };
}

/** A tick label: as many decimals as the step needs. */
function tickLabel(v: number, step: number): string {
  const a = Math.max(Math.abs(v), step);
  if (a >= 1e6 || (step < 1e-4 && v !== 0)) return fmt(v);
  const decimals = Math.max(0, Math.min(6, -Math.floor(Math.log10(step) + 1e-9)));
  const s = v.toFixed(decimals + (step / 10 ** Math.floor(Math.log10(step)) === 2.5 ? 1 : 0));
  return s === "-0" || /^-0\.0*$/.test(s) ? s.slice(1) : s;
}

const n2 = (v: number): string => (Math.round(v * 100) / 100).toString();

function marker(shape: Shape, x: number, y: number, r: number, color: string, series: string, tip: string): string {
  const attrs = `class="point" data-series="${escapeHtml(series)}" fill="${color}" stroke="#ffffff" stroke-width="0.6"`;
  const t = `<title>${escapeHtml(tip)}</title>`;
  switch (shape) {
    case "circle":
      return `<circle ${attrs} cx="${n2(x)}" cy="${n2(y)}" r="${r}">${t}</circle>`;
    case "square":
      return `<rect ${attrs} x="${n2(x - r * 0.9)}" y="${n2(y - r * 0.9)}" width="${n2(r * 1.8)}" height="${n2(r * 1.8)}">${t}</rect>`;
    case "diamond":
      return `<path ${attrs} d="M${n2(x)} ${n2(y - r * 1.25)}L${n2(x + r * 1.25)} ${n2(y)}L${n2(x)} ${n2(y + r * 1.25)}L${n2(x - r * 1.25)} ${n2(y)}Z">${t}</path>`;
    case "triangle":
      return `<path ${attrs} d="M${n2(x)} ${n2(y - r * 1.3)}L${n2(x + r * 1.2)} ${n2(y + r * 0.9)}L${n2(x - r * 1.2)} ${n2(y + r * 0.9)}Z">${t}</path>`;
  }
}

function legendSwatch(kind: "shape" | "line" | "dashed", shape: Shape, color: string, x: number, y: number): string {
  if (kind === "shape") {
    // The same shapes as the points, without their class (the legend is not data).
    return marker(shape, x + 8, y, 4, color, "", "").replace(/ class="point" data-series=""/, "").replace(/<title><\/title>/, "");
  }
  return `<line x1="${x}" y1="${y}" x2="${x + 16}" y2="${y}" stroke="${color}" stroke-width="2.5"${kind === "dashed" ? ' stroke-dasharray="5 3"' : ""}/>`;
}

/** Rough text width in px at 12 px sans-serif (no layout engine here). */
function textWidth(s: string, size = 12): number {
  return s.length * size * 0.58;
}

/** The legend, in the band between the title and the plot area; wraps to a second row when long. */
function legend(entries: { name: string; kind: "shape" | "line" | "dashed"; shape: Shape; color: string }[], y: number): string {
  if (entries.length === 0) return "";
  const out: string[] = [];
  let x = M.left;
  for (const e of entries) {
    const w = 22 + textWidth(e.name) + 14;
    if (x + w > W - M.right && x > M.left) {
      x = M.left;
      y += LEGEND_ROW;
    }
    out.push(legendSwatch(e.kind, e.shape, e.color, x, y - 4));
    out.push(`<text x="${n2(x + 21)}" y="${y}" font-size="12" fill="#222">${escapeHtml(e.name)}</text>`);
    x += w;
  }
  return `<g class="legend">${out.join("")}</g>`;
}

const TITLE_Y = 20;
const LINE = 17;
const LEGEND_ROW = 16;

/** Vertical layout of the band above the plot area: title, subtitle, legend rows. */
function layout(subtitle: string | undefined, legendRows: number): { subtitleY: number; legendY: number; top: number } {
  let y = TITLE_Y;
  const subtitleY = subtitle ? (y += LINE) : 0;
  const legendY = y + LINE;
  if (legendRows > 0) y += LINE + (legendRows - 1) * LEGEND_ROW;
  return { subtitleY, legendY, top: y + 16 };
}

function frame(spec: { id: string; title: string; subtitle?: string | undefined }, top: number, body: string): string {
  const sub = spec.subtitle ? `<text x="${M.left}" y="${TITLE_Y + LINE}" font-size="12" fill="#555">${escapeHtml(spec.subtitle)}</text>` : "";
  return (
    `<svg id="plot-${escapeHtml(spec.id)}" class="plot" role="img" viewBox="0 0 ${W} ${top + PLOT_H + M.bottom}" width="${W}" height="${top + PLOT_H + M.bottom}" ${FONT}>` +
    `<title>${escapeHtml(spec.title)}</title>` +
    `<rect x="0" y="0" width="${W}" height="${top + PLOT_H + M.bottom}" fill="#ffffff"/>` +
    `<text x="${M.left}" y="20" font-size="15" font-weight="bold" fill="#111">${escapeHtml(spec.title)}</text>` +
    sub +
    body +
    `</svg>`
  );
}

interface Axes {
  sx: (x: number) => number;
  sy: (y: number) => number;
  svg: string;
  top: number;
  bottom: number;
}

/** Grid, ticks and labels for the ranges; returns the scales. `top` is where the plot area starts. */
interface AxisSpec {
  xLabel: string;
  yLabel: string;
  xInteger?: boolean | undefined;
  /** Ticks at these x values with these labels (the x range is then used as given, unpadded). */
  xTicks?: { at: number; label: string }[];
}

function axes(xr: [number, number], yr: [number, number], spec: AxisSpec, top: number): Axes {
  const bottom = top + PLOT_H;
  const xt = niceTicks(xr[0], xr[1], 8, spec.xInteger ?? false);
  const yt = niceTicks(yr[0], yr[1], 5);
  const x0 = M.left, x1 = W - M.right;
  // x: the data range padded by 3 %, not stretched to round ticks (rows 1..40 fill the width).
  const xpad = spec.xTicks ? 0 : (xr[1] - xr[0]) * 0.03 || 0.5;
  const xlo = xr[0] - xpad, xhi = xr[1] + xpad;
  const sx = (x: number) => x0 + ((x - xlo) / (xhi - xlo)) * (x1 - x0);
  const sy = (y: number) => bottom - ((y - yt.lo) / (yt.hi - yt.lo)) * (bottom - top);
  const parts: string[] = [];
  for (const t of yt.ticks) {
    const y = sy(t);
    parts.push(`<line x1="${x0}" y1="${n2(y)}" x2="${x1}" y2="${n2(y)}" stroke="#e3e3e3"/>`);
    parts.push(`<text x="${x0 - 7}" y="${n2(y + 4)}" font-size="12" text-anchor="end" fill="#333">${escapeHtml(tickLabel(t, yt.step))}</text>`);
  }
  // Thin out x tick labels that would overlap.
  const xticks = spec.xTicks ?? xt.ticks.filter((t) => t >= xlo && t <= xhi).map((t) => ({ at: t, label: tickLabel(t, xt.step) }));
  const gap = xticks.length > 1 ? Math.min(...xticks.slice(1).map((t, i) => sx(t.at) - sx(xticks[i]!.at))) : Infinity;
  const widest = Math.max(0, ...xticks.map((t) => textWidth(t.label)));
  const every = Math.max(1, Math.ceil((widest + 10) / Math.max(1, gap)));
  xticks.forEach((t, i) => {
    const x = sx(t.at);
    parts.push(`<line x1="${n2(x)}" y1="${bottom}" x2="${n2(x)}" y2="${bottom + 5}" stroke="#555"/>`);
    if (i % every === 0) parts.push(`<text x="${n2(x)}" y="${bottom + 18}" font-size="12" text-anchor="middle" fill="#333">${escapeHtml(t.label)}</text>`);
  });
  parts.push(`<line x1="${x0}" y1="${bottom}" x2="${x1}" y2="${bottom}" stroke="#555"/>`);
  parts.push(`<line x1="${x0}" y1="${top}" x2="${x0}" y2="${bottom}" stroke="#555"/>`);
  parts.push(`<text class="x-label" x="${n2((x0 + x1) / 2)}" y="${bottom + 38}" font-size="13" text-anchor="middle" fill="#111">${escapeHtml(spec.xLabel)}</text>`);
  parts.push(`<text class="y-label" transform="translate(16 ${n2((top + bottom) / 2)}) rotate(-90)" font-size="13" text-anchor="middle" fill="#111">${escapeHtml(spec.yLabel)}</text>`);
  return { sx, sy, svg: parts.join(""), top, bottom };
}

function extent(values: number[]): [number, number] {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) {
    if (!Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return lo <= hi ? [lo, hi] : [0, 1];
}

function path(points: { x: number; y: number }[], ax: Axes): string {
  let d = "";
  let pen = false;
  for (const p of points) {
    if (!Number.isFinite(p.x) || !Number.isFinite(p.y)) {
      pen = false;
      continue;
    }
    d += `${pen ? "L" : "M"}${n2(ax.sx(p.x))} ${n2(ax.sy(p.y))}`;
    pen = true;
  }
  return d;
}

/** Points that are drawn (finite x and y); the others are counted in the subtitle. */
function finite<P extends { x: number; y: number }>(points: P[]): P[] {
  return points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
}

/** A scatter/line plot: markers per series, optional lines, faint curves and reference lines. */
export function plot(spec: PlotSpec): string {
  const series = spec.series ?? [];
  const lines = spec.lines ?? [];
  const curves = spec.curves ?? [];
  const entries = [
    ...series.map((s, i) => ({ name: s.name, kind: "shape" as const, shape: s.shape ?? SHAPES[i % SHAPES.length]!, color: s.color ?? COLORS[i % COLORS.length]! })),
    ...lines.map((l, i) => ({ name: l.name, kind: l.dashed ? ("dashed" as const) : ("line" as const), shape: "circle" as Shape, color: l.color ?? COLORS[i % COLORS.length]! })),
    ...(spec.curveLegend ?? []).map((c) => ({ name: c.name, kind: "line" as const, shape: "circle" as Shape, color: c.color })),
  ];
  const legendRows = entries.length > 1 || (spec.curveLegend?.length ?? 0) > 0 ? legendRowCount(entries.map((e) => e.name)) : 0;
  const all = [...series.flatMap((s) => s.points), ...lines.flatMap((l) => l.points), ...curves.flatMap((c) => c.points)];
  const dropped = series.reduce((k, s) => k + s.points.length - finite(s.points).length, 0);
  const subtitle = [spec.subtitle, dropped > 0 ? `${dropped} point${dropped === 1 ? "" : "s"} not shown (not finite)` : undefined].filter(Boolean).join(" · ");
  const { legendY, top } = layout(subtitle || undefined, legendRows);
  if (finite(all).length === 0) {
    return frame({ ...spec, subtitle }, top, `<text x="${W / 2}" y="${top + PLOT_H / 2}" font-size="14" text-anchor="middle" fill="#555">no data</text>`);
  }
  const xr = extent(all.map((p) => p.x));
  const yvals = [...all.map((p) => p.y), ...(spec.hlines ?? []).map((h) => h.y), ...(spec.yZero ? [0] : [])];
  let yr = extent(yvals);
  const pad = (yr[1] - yr[0]) * 0.04;
  yr = [yr[0] - (spec.yZero && yr[0] >= 0 ? 0 : pad), yr[1] + pad];
  const ax = axes(xr, yr, spec, top);
  const body: string[] = [ax.svg];
  for (const h of spec.hlines ?? []) {
    const y = n2(ax.sy(h.y));
    body.push(`<line class="ref-line" x1="${M.left}" y1="${y}" x2="${W - M.right}" y2="${y}" stroke="#b00020" stroke-width="1.3" stroke-dasharray="6 4"/>`);
  }
  // Faint enough that 200 overlapping curves show where most of them run; a few are drawn stronger.
  const opacity = curves.length > 50 ? 0.25 : curves.length > 10 ? 0.4 : 0.65;
  for (const c of curves) {
    body.push(`<path class="curve" d="${path(c.points, ax)}" fill="none" stroke="${c.color}" stroke-opacity="${opacity}" stroke-width="1.3"><title>${escapeHtml(c.tip)}</title></path>`);
  }
  const total = series.reduce((k, s) => k + s.points.length, 0);
  const r = total > 1500 ? 2 : total > 400 ? 2.6 : 3.4;
  series.forEach((s, i) => {
    const color = s.color ?? COLORS[i % COLORS.length]!, shape = s.shape ?? SHAPES[i % SHAPES.length]!;
    body.push(`<g class="series" data-series="${escapeHtml(s.name)}" fill-opacity="0.85">`);
    for (const p of finite(s.points)) body.push(marker(shape, ax.sx(p.x), ax.sy(p.y), r, color, s.name, p.tip));
    body.push(`</g>`);
  });
  lines.forEach((l, i) => {
    const color = l.color ?? COLORS[i % COLORS.length]!;
    body.push(`<path class="line" data-series="${escapeHtml(l.name)}" d="${path(l.points, ax)}" fill="none" stroke="${color}" stroke-width="2.2"${l.dashed ? ' stroke-dasharray="6 3"' : ""}/>`);
  });
  // Labels of the reference lines last, with a white halo, so that no point hides them.
  for (const h of spec.hlines ?? []) {
    const y = ax.sy(h.y);
    const above = y - 5 > ax.top + 10;
    body.push(`<text class="ref-label" x="${W - M.right - 4}" y="${n2(above ? y - 5 : y + 14)}" font-size="11.5" text-anchor="end" fill="#b00020" stroke="#ffffff" stroke-width="3" paint-order="stroke">${escapeHtml(h.label)}</text>`);
  }
  if (legendRows > 0) body.push(legend(entries, legendY));
  return frame({ ...spec, subtitle }, top, body.join(""));
}

function legendRowCount(names: string[]): number {
  let rows = 1, x = M.left;
  for (const n of names) {
    const w = 22 + textWidth(n) + 14;
    if (x + w > W - M.right && x > M.left) {
      rows++;
      x = M.left;
    }
    x += w;
  }
  return rows;
}

export interface HistogramSpec {
  id: string;
  title: string;
  subtitle?: string;
  xLabel: string;
  yLabel: string;
  /** Bin edges (counts.length + 1 of them, increasing). */
  edges: number[];
  counts: number[];
  /** data-series of the bars. */
  series: string;
}

/**
 * A histogram: one bar per bin (class "point", even when its count is 0), tooltip "[a, b): n".
 * Bins are drawn the same width whatever their edges (so decades 0, 1e-9, …, 1 read well), with
 * the edges as tick labels.
 */
export function histogram(spec: HistogramSpec): string {
  const { top } = layout(spec.subtitle, 0);
  const { edges, counts } = spec;
  if (counts.length === 0 || edges.length !== counts.length + 1) {
    return frame(spec, top, `<text x="${W / 2}" y="${top + PLOT_H / 2}" font-size="14" text-anchor="middle" fill="#555">no data</text>`);
  }
  const ymax = Math.max(1, ...counts.filter(Number.isFinite));
  const xTicks = edges.map((e, i) => ({ at: i, label: fmt(e, 2) }));
  const ax = axes([0, counts.length], [0, ymax * 1.04], { xLabel: spec.xLabel, yLabel: spec.yLabel, xTicks }, top);
  const body: string[] = [ax.svg];
  counts.forEach((c, i) => {
    const a = edges[i]!, b = edges[i + 1]!;
    const x = ax.sx(i), w = Math.max(0.5, ax.sx(i + 1) - ax.sx(i) - 2);
    const y = ax.sy(Number.isFinite(c) ? c : 0);
    const last = i === counts.length - 1 ? "]" : ")";
    body.push(
      `<rect class="point" data-series="${escapeHtml(spec.series)}" x="${n2(x + 1)}" y="${n2(y)}" width="${n2(w)}" height="${n2(Math.max(0, ax.bottom - y))}" fill="${COLORS[0]}" fill-opacity="0.85">` +
        `<title>${escapeHtml(`${spec.xLabel} in [${fmt(a)}, ${fmt(b)}${last}: ${c} ${spec.yLabel}`)}</title></rect>`,
    );
    if (c > 0) body.push(`<text x="${n2(x + 1 + w / 2)}" y="${n2(y - 4)}" font-size="11" text-anchor="middle" fill="#333">${c}</text>`);
  });
  return frame(spec, top, body.join(""));
}
