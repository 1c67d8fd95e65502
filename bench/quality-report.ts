// Renders the quality benchmark (bench/quality.ts) as a RESULTS.md section and an SVG plot of
// the median r against the block size B, one line per projection (and the old block mode).

import { fmt, pct, table } from "./lib.js";
import { isLegacy, isStandard, isWideStart, type QualityResults, type QualityRow } from "./quality.js";

const label = (r: QualityRow) =>
  `${r.projection}${r.dtype === "bf16" ? " bf16" : ""}${isLegacy(r) ? " (old block mode)" : isWideStart(r) ? " (starts at ‖θ0‖)" : ""}`;

export function qualitySection(q: QualityResults, svgName: string): string {
  const m = q.machine;
  const out: string[] = [];
  out.push("## Block mode: quality per compute (`npm run bench -- quality`)", "");
  out.push(`Run of ${m.date.slice(0, 10)} ${m.date.slice(11, 16)} UTC on ${m.cpuModel}, ${m.threads} threads, CPU flags: ${m.cpuFlags.join(" ") || "(none found)"}; ` +
    `${fmt(q.totalSeconds / 60, 1)} min, other processes used ${pct(q.othersShare)} of the CPU meanwhile.`, "");
  out.push(`The embedded default model (models/default), the demo's θ0 (MELBO's first candidate, ‖θ0‖ = ${fmt(q.theta0Norm, 1)}), prompt "How can I build a bomb?", ` +
    `steer at block 8, match at block 16; ${q.count} vectors, ${q.steps} steps, lr 0.01, one search per row, side by side in one run. ` +
    "r = ‖z(θ) − z0‖ / ‖z0 − z(0)‖ (r = 1 is θ = 0; random orthogonal vectors of θ0's norm give 1.4–1.8). Useful vectors per hour = vectors below the threshold × 3600 / wall seconds. " +
    "Rows marked *old block mode* run the block mode melbo had before (every row starts at θ0, Gram–Schmidt in index order, no in-block gradient projection); " +
    "rows marked *starts at ‖θ0‖* run today's block mode with rows 2…B starting at ‖θ0‖ instead of 0.01‖θ0‖ (the default before 2026-12-02).", "");
  const byProjection = (p: string) => q.rows.filter((r) => r.projection === p);
  for (const projection of ["grad", "post"]) {
    const rows = byProjection(projection);
    const one = rows.find((r) => r.block === 1 && isStandard(r) && r.dtype === "f32");
    out.push(table(
      ["mode", "B", "vectors kept", "r < 1", "r ≤ 0.75", "median r", "best r", "wall s", "useful/h (r < 1)", "good/h (r ≤ 0.75)", "× B = 1 (r < 1)", "max |cos|"],
      rows.map((r) => [label(r), r.block, `${r.found}/${r.count}`, r.below1, r.below075, fmt(r.medianR, 3), fmt(r.bestR, 3), fmt(r.seconds, 0),
        fmt(r.usefulPerHour, 0), fmt(r.goodPerHour, 0), one ? `${fmt(r.usefulPerHour / one.usefulPerHour, 2)}×` : "", r.maxAbsCos.toExponential(1)]),
    ), "");
  }
  // Targets of the block-mode issue, per projection: B = 64 (f32) as good as B = 1, and the best
  // mode's useful vectors per hour at least 4× those of B = 1.
  const targets: (string | number)[][] = [];
  for (const projection of ["grad", "post"]) {
    const rows = byProjection(projection).filter(isStandard);
    const one = rows.find((r) => r.block === 1 && r.dtype === "f32");
    const largest = rows.filter((r) => r.dtype === "f32").sort((a, b) => b.block - a.block)[0];
    const best = [...rows].sort((a, b) => b.usefulPerHour - a.usefulPerHour)[0];
    if (!one || !largest || !best) continue;
    const dMedian = largest.medianR - one.medianR;
    targets.push([projection, `f32 B = ${largest.block}: median r within 0.02 of B = 1`, `${dMedian >= 0 ? "+" : ""}${fmt(dMedian, 3)}`, dMedian <= 0.02 ? "met" : "missed"]);
    // Where the count misses, the r of the rows that did not get below 1 says by how much.
    const atOrAbove = largest.rs.filter((x) => x >= 1).map((x) => fmt(x, 4));
    targets.push([projection, `f32 B = ${largest.block}: at least as many r < 1 as B = 1`, `${largest.below1} vs ${one.below1}`,
      largest.below1 >= one.below1 ? "met" : `missed by ${one.below1 - largest.below1} (r = ${atOrAbove.slice(0, 4).join(", ")}${atOrAbove.length > 4 ? ", …" : ""})`]);
    const ratio = best.usefulPerHour / one.usefulPerHour;
    targets.push([projection, `best mode (${best.dtype} B = ${best.block}): useful vectors per hour ≥ 4× f32 B = 1`, `${fmt(ratio, 2)}×`, ratio >= 4 ? "met" : `missed by ${pct(1 - ratio / 4)}`]);
  }
  if (targets.length) out.push(table(["projection", "target", "measured", "verdict"], targets), "");
  out.push(`![median r against B](${svgName})`, "");
  return out.join("\n");
}

/** A small line chart: median r (y) against B on a log axis (x), one line per mode. */
export function qualitySvg(q: QualityResults): string {
  const W = 560, H = 320, left = 60, right = 150, top = 20, bottom = 45;
  const series = new Map<string, QualityRow[]>();
  for (const r of q.rows) series.set(label(r), [...(series.get(label(r)) ?? []), r]);
  const blocks = [...new Set(q.rows.map((r) => r.block))].sort((a, b) => a - b);
  const rs = q.rows.map((r) => r.medianR);
  const lo = Math.floor(Math.min(...rs) * 20) / 20, hi = Math.ceil(Math.max(...rs, 1) * 20) / 20;
  const x = (b: number) => left + ((Math.log2(b) - Math.log2(blocks[0]!)) / Math.max(1e-9, Math.log2(blocks.at(-1)!) - Math.log2(blocks[0]!))) * (W - left - right);
  const y = (r: number) => top + ((hi - r) / (hi - lo)) * (H - top - bottom);
  const colors = ["#1f77b4", "#2ca02c", "#7f7f7f", "#9467bd", "#d62728", "#ff7f0e", "#8c564b", "#e377c2"];
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  for (let r = lo; r <= hi + 1e-9; r += 0.05) {
    parts.push(`<line x1="${left}" x2="${W - right}" y1="${y(r)}" y2="${y(r)}" stroke="#ddd"/><text x="${left - 6}" y="${y(r) + 4}" text-anchor="end">${r.toFixed(2)}</text>`);
  }
  for (const b of blocks) parts.push(`<text x="${x(b)}" y="${H - bottom + 16}" text-anchor="middle">${b}</text>`);
  parts.push(`<text x="${(left + W - right) / 2}" y="${H - 8}" text-anchor="middle">block size B (${q.count} vectors, ${q.steps} steps)</text>`);
  parts.push(`<text transform="translate(14 ${(top + H - bottom) / 2}) rotate(-90)" text-anchor="middle">median r (lower is better)</text>`);
  [...series.entries()].forEach(([name, rows], i) => {
    const sorted = [...rows].sort((a, b) => a.block - b.block);
    const color = colors[i % colors.length]!;
    const dash = name.includes("(") ? ' stroke-dasharray="5 4"' : "";
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2"${dash} points="${sorted.map((r) => `${x(r.block)},${y(r.medianR)}`).join(" ")}"/>`);
    for (const r of sorted) parts.push(`<circle cx="${x(r.block)}" cy="${y(r.medianR)}" r="3" fill="${color}"/>`);
    parts.push(`<line x1="${W - right + 12}" x2="${W - right + 32}" y1="${top + 10 + i * 18}" y2="${top + 10 + i * 18}" stroke="${color}" stroke-width="2"${dash}/>`);
    parts.push(`<text x="${W - right + 36}" y="${top + 14 + i * 18}">${name}</text>`);
  });
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}
