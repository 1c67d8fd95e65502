#!/usr/bin/env node
// Screenshot of a `melbo report` page in Debian's chromium (playwright-core, no browser download):
//   node scripts/screenshot-report.mjs REPORT.html OUT.png [WIDTH]
// Used for docs/report.png (the README's picture of the demo's report).
import { chromium } from "playwright-core";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [page, out, width = "1400"] = process.argv.slice(2);
if (!page || !out) {
  process.stderr.write("usage: node scripts/screenshot-report.mjs REPORT.html OUT.png [WIDTH]\n");
  process.exit(2);
}
const profile = await mkdtemp(join(tmpdir(), "melbo-shot-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  viewport: { width: Number(width), height: 1500 },
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync"],
});
try {
  const tab = await context.newPage();
  await tab.goto(pathToFileURL(resolve(page)).href);
  await tab.screenshot({ path: out, fullPage: false, clip: { x: 0, y: 0, width: Number(width), height: 1500 } });
  process.stdout.write(`wrote ${out}\n`);
} finally {
  await context.close();
  await rm(profile, { recursive: true, force: true });
}
