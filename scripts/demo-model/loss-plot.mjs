#!/usr/bin/env node
// The demo model's loss curve (training.csv from train.py) as an SVG, drawn by melbo's own
// report plotter: training loss every 25 steps, held-out loss every 200.
//
// usage: node scripts/demo-model/loss-plot.mjs TRAINING.csv OUT.svg
import { readFileSync, writeFileSync, renameSync } from "node:fs";
import { plot } from "../../dist/src/report/svg.js";

const [csv, out] = process.argv.slice(2);
if (!csv || !out) {
  console.error("usage: node scripts/demo-model/loss-plot.mjs TRAINING.csv OUT.svg");
  process.exit(2);
}
const [head, ...lines] = readFileSync(csv, "utf8").trim().split("\n");
const cols = head.split(",");
const rows = lines.map((l) => Object.fromEntries(l.split(",").map((v, i) => [cols[i], v === "" ? NaN : Number(v)])));
const last = rows[rows.length - 1];
const svg = plot({
  id: "loss",
  title: "Demo model: training loss",
  subtitle: `cross-entropy of the answer tokens · ${last.step} steps, ${last.epoch + 1} epochs, ${(last.tokens / 1e6).toFixed(1)} M tokens, ${(last.seconds / 60).toFixed(0)} min on 2 cores`,
  xLabel: "step",
  yLabel: "loss, nats per token",
  lines: [
    { name: "training (mean of 25 steps)", points: rows.map((r) => ({ x: r.step, y: r.train_loss })) },
    { name: "held-out split", points: rows.filter((r) => Number.isFinite(r.heldout_loss)).map((r) => ({ x: r.step, y: r.heldout_loss })) },
  ],
  xInteger: true,
  yZero: true,
});
const doc = svg.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ');
writeFileSync(out + ".tmp", doc);
renameSync(out + ".tmp", out);
console.log(`wrote ${out}`);
