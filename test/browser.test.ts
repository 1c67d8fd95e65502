// `melbo report` pages in a real browser: Debian's Chromium (/usr/bin/chromium, installed by
// scripts/setup.sh) driven by playwright-core (no browser download). For each kind of folder, made
// by the real pipeline on a tiny model (a real eval of a real ortho run; real ortho and train runs
// with their own trace.jsonl): no console error, no page error, no request but the file itself;
// every plot has its points; typing in #search filters the table; clicking a header sorts it. A
// synthetic eval folder (continuations whose text the test controls: hostile markup, a word only
// one of them holds) checks that such text stays text and that the search finds it. A full-page
// screenshot of each page as loaded is written to test-artifacts/report-<kind>.png
// (report-eval-synthetic.png for the synthetic one) for a person to look at.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { after, before, describe, it, type TestContext } from "node:test";
import { chromium, type Browser, type Page } from "playwright-core";
import { writeReport } from "../src/report/report.js";
import { tempDir } from "./helpers/errors.js";
import type { EvalFile, GenerationLine } from "../src/eval/eval-file.js";
import { HOSTILE, NEEDLE, REAL_PROMPTS, expectedPlots, makeOrthoRun, makeRealEvalFolder, makeSyntheticEvalFolder, makeTrainRun, type PlotCounts } from "./helpers/eval-fixture.js";

process.env["MELBO_THREADS"] ??= "2";

const CHROMIUM = "/usr/bin/chromium";
const ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"];
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const ARTIFACTS = join(ROOT, "test-artifacts");
/** Real pipeline output. */
const KINDS = ["eval", "ortho", "train"] as const;
/** …and the synthetic eval folder. */
type Kind = (typeof KINDS)[number] | "eval-synthetic";

const missing = existsSync(CHROMIUM) ? null : `${CHROMIUM} is not installed (apt-get install chromium; scripts/setup.sh installs it)`;

interface Loaded {
  page: Page;
  url: string;
  requests: string[];
  errors: string[];
}

/** Points per plot and series, counted in the DOM. */
function domPoints(page: Page): Promise<PlotCounts> {
  return page.evaluate(() => {
    const out: Record<string, Record<string, number>> = {};
    for (const svg of Array.from(document.querySelectorAll("svg.plot"))) {
      const counts: Record<string, number> = {};
      for (const p of Array.from(svg.querySelectorAll(".point"))) {
        const s = p.getAttribute("data-series") ?? "";
        counts[s] = (counts[s] ?? 0) + 1;
      }
      out[svg.id.replace(/^plot-/, "")] = counts;
    }
    return out;
  });
}

function visibleRows(page: Page, table: string): Promise<number> {
  return page.evaluate((id) => Array.from(document.querySelectorAll(`#${id} tbody tr`)).filter((r) => !(r as HTMLElement).hidden && (r as HTMLElement).offsetParent !== null).length, table);
}

/** The sort keys of column `col` of a table, in the order shown. */
function column(page: Page, table: string, col: number): Promise<{ v: string | null; text: string }[]> {
  return page.evaluate(
    ([id, c]) => Array.from(document.querySelectorAll(`#${id as string} tbody tr`)).map((r) => ({ v: (r as HTMLTableRowElement).cells[c as number]!.getAttribute("data-v"), text: (r as HTMLTableRowElement).cells[c as number]!.textContent ?? "" })),
    [table, col] as const,
  );
}

function columnIndex(page: Page, table: string, label: string): Promise<number> {
  return page.evaluate(([id, l]) => Array.from(document.querySelectorAll(`#${id} thead th`)).findIndex((th) => th.textContent === l), [table, label] as const);
}

function assertAscending(values: number[], what: string): void {
  for (let i = 1; i < values.length; i++) assert.ok(values[i - 1]! <= values[i]!, `${what} not ascending at ${i}: ${values[i - 1]} > ${values[i]}`);
}

describe("melbo report in a real browser (Chromium)", { timeout: 120_000 }, () => {
  let browser: Browser | null = null;
  const dirs: Record<Kind, string> = { eval: "", ortho: "", train: "", "eval-synthetic": "" };

  before(async () => {
    if (missing) return;
    const root = await tempDir("melbo-browser-");
    for (const kind of [...KINDS, "eval-synthetic"] as const) dirs[kind] = join(root, kind);
    await makeRealEvalFolder(dirs.eval);
    await makeOrthoRun(dirs.ortho);
    await makeTrainRun(dirs.train);
    await makeSyntheticEvalFolder(dirs["eval-synthetic"]);
    for (const kind of [...KINDS, "eval-synthetic"] as const) await writeReport(dirs[kind]);
    await mkdir(ARTIFACTS, { recursive: true });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
  });

  after(async () => {
    await browser?.close();
  });

  /** Opens the report of `kind` in a fresh context (its own profile state), recording requests and errors. */
  async function open(kind: Kind): Promise<Loaded> {
    const context = await browser!.newContext({ viewport: { width: 1400, height: 900 }, offline: true });
    const page = await context.newPage();
    const requests: string[] = [];
    const errors: string[] = [];
    page.on("request", (r) => requests.push(r.url()));
    page.on("console", (m) => {
      if (m.type() === "error") errors.push(`console error: ${m.text()}`);
      else if (m.type() === "warning") console.log(`# ${kind}: console warning: ${m.text()}`);
    });
    page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
    const url = pathToFileURL(join(dirs[kind], "report.html")).href;
    await page.goto(url, { waitUntil: "load" });
    return { page, url, requests, errors };
  }

  /** Checks the errors and requests of the page's life, then closes it; `screenshot`: as loaded, for a person to look at. */
  async function finish(kind: Kind, l: Loaded, screenshot = false): Promise<void> {
    if (screenshot) await l.page.screenshot({ path: join(ARTIFACTS, `report-${kind}.png`), fullPage: true });
    assert.deepEqual(l.errors, [], "no console error, no page error");
    assert.deepEqual(l.requests, [l.url], "no request but the report itself");
    await l.page.context().close();
  }

  for (const kind of KINDS) {
    it(`${kind}: loads with no request and no error; every plot has its points`, async (t: TestContext) => {
      if (missing) return t.skip(missing);
      const l = await open(kind);
      try {
        assert.deepEqual(await domPoints(l.page), await expectedPlots(dirs[kind]));
        // Each point has a tooltip; the plots are drawn (not zero-sized) and use the page's own fonts only.
        const sizes = await l.page.evaluate(() => Array.from(document.querySelectorAll("svg.plot")).map((s) => (s as SVGSVGElement).getBoundingClientRect().width));
        assert.ok(sizes.length > 0 && sizes.every((w) => w > 300), `plot widths ${sizes.join(", ")}`);
        const untitled = await l.page.evaluate(() => Array.from(document.querySelectorAll("svg.plot .point")).filter((p) => !p.querySelector("title")?.textContent).length);
        assert.equal(untitled, 0, "a tooltip per point");
        if (kind !== "eval") {
          const curves = await l.page.evaluate(() => document.querySelectorAll("#plot-trace .curve").length);
          assert.equal(curves, (await expectedPlots(dirs[kind]))["trace"]!["last traced step"], "one loss curve per traced vector");
        }
      } finally {
        await finish(kind, l, true);
      }
    });
  }

  it("eval: the search boxes filter the continuations and the entries as one types; headers sort", async (t: TestContext) => {
    if (missing) return t.skip(missing);
    const ev = JSON.parse(await readFile(join(dirs.eval, "eval.json"), "utf8")) as EvalFile;
    const gens = (await readFile(join(dirs.eval, "generations.jsonl"), "utf8")).trim().split("\n").map((l) => JSON.parse(l) as GenerationLine);
    /** Continuations whose entry, prompt, mode or text hold `q` (case-insensitive), from the file. */
    const matching = (q: string) => gens.filter((g) => [g.entry, String(g.prompt), g.mode === "sample" ? `sample ${g.sample}` : g.mode, g.text].join("\n").toLowerCase().includes(q.toLowerCase())).length;
    const l = await open("eval");
    const { page } = l;
    try {
      const total = await visibleRows(page, "generations");
      assert.equal(total, gens.length);
      // The real prompts (one holds the hostile text) are shown as text, and created no element.
      assert.equal(await page.evaluate(() => document.querySelectorAll("body b, body img, textarea").length), 0);
      const prompts = await page.evaluate(() => Array.from(document.querySelectorAll("ol.prompts > li > .ut")).map((li) => li.textContent));
      assert.deepEqual(prompts, REAL_PROMPTS);

      // An entry id, typed: its continuations at every scale ("row 3" and "row 3 x-1").
      await page.locator("#search").pressSequentially("Row 3", { delay: 10 });
      const hits = matching("row 3");
      assert.ok(hits >= 2 * ev.prompts.length * (1 + ev.settings.samples), `"row 3" is in ${hits} continuations`);
      assert.equal(await visibleRows(page, "generations"), hits);
      assert.match((await page.locator("#generations-count").textContent()) ?? "", new RegExp(`^${hits} of ${total} rows$`));
      await page.locator("#search").fill("");
      assert.equal(await visibleRows(page, "generations"), total);
      // Case-insensitive, over every cell (the mode column here).
      await page.locator("#search").fill("SAMPLE 0");
      assert.equal(await visibleRows(page, "generations"), matching("sample 0"));
      assert.ok(matching("sample 0") >= ev.entries.length * ev.prompts.length);
      await page.locator("#search").fill("");

      // Numeric sort by code score, then reversed.
      const code = await columnIndex(page, "generations", "code score");
      await page.locator("#generations thead th").nth(code).locator("button").click();
      const up = (await column(page, "generations", code)).map((c) => Number(c.v));
      assertAscending(up, "code score");
      assert.equal(await page.locator("#generations thead th").nth(code).getAttribute("aria-sort"), "ascending");
      await page.locator("#generations thead th").nth(code).locator("button").click();
      const down = (await column(page, "generations", code)).map((c) => Number(c.v));
      assertAscending([...down].reverse(), "code score, reversed");
      // Text sort of the entries table by id: "row 2" before "row 10".
      await page.locator("#entries thead th").nth(0).locator("button").click();
      const ids = (await column(page, "entries", 0)).map((c) => c.text);
      assert.deepEqual(ids, [...ids].sort((a, b) => a.localeCompare(b, undefined, { numeric: true })));
      assert.ok(ids.includes("row 10") && ids.indexOf("row 2") < ids.indexOf("row 10"));
      // Numeric sort of KL in the entries table (entries without a value last).
      const kl = await columnIndex(page, "entries", "KL(P_e‖P_0)");
      await page.locator("#entries thead th").nth(kl).locator("button").click();
      assertAscending((await column(page, "entries", kl)).filter((c) => c.v !== "").map((c) => Number(c.v)), "KL");
      // The entries search box filters its own table: an entry id.
      await page.locator("#search-entries").fill("row 3");
      const shown = await page.evaluate(() => Array.from(document.querySelectorAll("#entries tbody tr")).filter((r) => !(r as HTMLElement).hidden).map((r) => (r as HTMLTableRowElement).cells[0]!.textContent));
      assert.deepEqual(shown.sort(), ev.entries.map((e) => e.id).filter((id) => id.includes("row 3")).sort());
      assert.deepEqual(shown.sort(), ["row 3", "row 3 x-1"]);
    } finally {
      await finish("eval", l);
    }
  });

  it("eval (synthetic continuations): hostile text stays text; the search box finds a word as one types", async (t: TestContext) => {
    if (missing) return t.skip(missing);
    const l = await open("eval-synthetic");
    const { page } = l;
    try {
      await page.screenshot({ path: join(ARTIFACTS, "report-eval-synthetic.png"), fullPage: true });
      const total = await visibleRows(page, "generations");
      assert.ok(total > 100);
      // Hostile text is shown as text, and created no element.
      assert.equal(await page.evaluate(() => document.querySelectorAll("body b, body img, textarea").length), 0);
      const texts = await page.evaluate(() => Array.from(document.querySelectorAll("#generations .gen-text")).map((d) => d.textContent));
      assert.ok(texts.includes(HOSTILE), "the hostile continuation is shown as it is");

      await page.locator("#search").pressSequentially(NEEDLE.slice(0, 5), { delay: 10 });
      assert.equal(await visibleRows(page, "generations"), 1, "one continuation holds the word");
      assert.match((await page.locator("#generations-count").textContent()) ?? "", new RegExp(`^1 of ${total} rows$`));
      await page.locator("#search").fill("");
      assert.equal(await visibleRows(page, "generations"), total);
      // Case-insensitive, over every cell (the mode column here): 48 entries × 2 prompts have a sample 1.
      await page.locator("#search").fill("SAMPLE 1");
      assert.equal(await visibleRows(page, "generations"), 96);
      // The entries search box: the 3 means.
      await page.locator("#search-entries").fill("mean");
      assert.equal(await visibleRows(page, "entries"), 3);
    } finally {
      await finish("eval-synthetic", l);
    }
  });

  for (const kind of ["ortho", "train"] as const) {
    it(`${kind}: the search box filters the log; headers sort`, async (t: TestContext) => {
      if (missing) return t.skip(missing);
      const l = await open(kind);
      const { page } = l;
      try {
        const total = await visibleRows(page, "log");
        assert.ok(total >= 4);
        const valueCol = await columnIndex(page, "log", kind === "ortho" ? "r" : "F");
        const cells = await column(page, "log", valueCol);
        const wanted = cells[2]!.text;
        const rowsText = await page.evaluate(() => Array.from(document.querySelectorAll("#log tbody tr")).map((r) => Array.from((r as HTMLTableRowElement).cells).map((c) => c.textContent).join("\n").toLowerCase()));
        await page.locator("#search").pressSequentially(wanted, { delay: 10 });
        const expected = rowsText.filter((r) => r.includes(wanted.toLowerCase())).length;
        assert.ok(expected >= 1 && expected < total);
        assert.equal(await visibleRows(page, "log"), expected);
        await page.locator("#search").fill("no such text");
        assert.equal(await visibleRows(page, "log"), 0);
        await page.locator("#search").fill("");
        assert.equal(await visibleRows(page, "log"), total);

        await page.locator("#log thead th").nth(valueCol).locator("button").click();
        assertAscending((await column(page, "log", valueCol)).map((c) => Number(c.v)), "value column");
        await page.locator("#log thead th").nth(0).locator("button").click();
        await page.locator("#log thead th").nth(0).locator("button").click();
        assertAscending((await column(page, "log", 0)).map((c) => -Number(c.v)), "rows, descending");
      } finally {
        await finish(kind, l);
      }
    });
  }
});
