// `melbo report DIR`: the HTML of each kind of folder (eval, ortho run, train run) is one
// self-contained file (no external reference), every plot has one point per value, text from the
// files is escaped, damaged folders give errors that name the file (and the line), and the CLI
// writes DIR/report.html (exit 0) or refuses a folder that is not a run (exit 2).
// The folders are real pipeline output on a tiny model (a real eval of a real ortho run, real ortho
// and train runs with their own trace.jsonl); a synthetic eval folder is used only where a test
// needs continuations whose text it controls (hostile and code-fenced generations).
// The DOM itself (sorting, filtering, no requests) is tested in a real browser: browser.test.ts.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { cp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import type { EvalFile } from "../src/eval/eval-file.js";
import { writeVectors } from "../src/io/vectors.js";
import { escapeHtml, jsonForScript } from "../src/report/escape.js";
import { loadReportSource } from "../src/report/load.js";
import { averageWindow, movingAverage, reportHtml } from "../src/report/pages.js";
import { writeReport } from "../src/report/report.js";
import { fmt, niceTicks } from "../src/report/svg.js";
import { cli } from "./helpers/cli.js";
import { rejectsMelbo, tempDir } from "./helpers/errors.js";
import { CODE_TEXT, HOSTILE, REAL_PROMPTS, expectedPlots, makeOrthoRun, makeRealEvalFolder, makeSyntheticEvalFolder, makeTrainRun, type PlotCounts } from "./helpers/eval-fixture.js";

process.env["MELBO_THREADS"] ??= "2";

/** The JSON data block of a page (parsed), and the page without it. */
function splitData(html: string): { data: Record<string, unknown>; rest: string; raw: string } {
  const m = /<script type="application\/json" id="report-data">([^]*?)<\/script>/.exec(html);
  assert.ok(m, "the page has its JSON data block");
  assert.ok(!m[1]!.includes("<"), "no '<' inside the JSON block");
  return { data: JSON.parse(m[1]!) as Record<string, unknown>, rest: html.replace(m[0], ""), raw: m[1]! };
}

/** Asserts that nothing in the page is fetched from anywhere: no URL, no src/href, no @import or url(). */
function assertSelfContained(html: string): void {
  const { rest } = splitData(html);
  // Text from the files (escaped, in <span class="ut">) may contain anything, "//" included: it is not markup.
  const markup = rest.replace(/<span class="ut">[^<]*<\/span>/g, "");
  for (const bad of [/https?:/i, /\/\//, /\bsrc\s*=/i, /\bhref\s*=/i, /url\s*\(/i, /@import/i, /<link\b/i, /<iframe\b/i, /<object\b/i, /<embed\b/i, /<img\b/i, /<image\b/i, /<use\b/i, /xlink:/i, /\bfetch\s*\(/, /XMLHttpRequest/, /\bimport\s*\(/]) {
    const m = bad.exec(markup);
    assert.equal(m, null, `external reference ${String(bad)}: …${m ? markup.slice(Math.max(0, m.index - 60), m.index + 60) : ""}…`);
  }
  const scripts = html.match(/<script\b[^>]*>/g) ?? [];
  assert.deepEqual(scripts, ['<script type="application/json" id="report-data">', "<script>"], "one data block and one inline script, nothing with src");
  assert.match(html, /<meta http-equiv="Content-Security-Policy" content="default-src 'none';/);
}

/** Points per plot and series, counted in the HTML: elements with class "point" inside each <svg id="plot-…">. */
function countPoints(html: string): PlotCounts {
  const out: PlotCounts = {};
  for (const m of html.matchAll(/<svg id="plot-([^"]+)"[^]*?<\/svg>/g)) {
    const counts: Record<string, number> = {};
    for (const p of m[0].matchAll(/class="point" data-series="([^"]*)"/g)) counts[p[1]!] = (counts[p[1]!] ?? 0) + 1;
    out[m[1]!] = counts;
  }
  return out;
}

describe("melbo report: the HTML", () => {
  let root = "";
  /** eval: a real eval folder; synthetic: the synthetic one (hostile and code-fenced continuations). */
  const dirs = { eval: "", ortho: "", train: "", synthetic: "" };
  const html = { eval: "", ortho: "", train: "", synthetic: "" };

  /** A copy of a folder (without the report.html written in `before`). */
  const copy = async (from: string, name: string) => {
    const to = join(root, name);
    await cp(from, to, { recursive: true });
    await rm(join(to, "report.html"), { force: true });
    return to;
  };

  before(async () => {
    root = await tempDir("melbo-report-");
    for (const kind of ["eval", "ortho", "train", "synthetic"] as const) dirs[kind] = join(root, kind);
    const real = await makeRealEvalFolder(dirs.eval);
    const runs = [real.run, await makeOrthoRun(dirs.ortho), await makeTrainRun(dirs.train)];
    // The searches wrote their own trace.jsonl, with a curve for every vector they logged.
    for (const r of runs) assert.ok(r.rows > 0 && r.traced === r.rows, `${r.dir}: ${r.traced} of ${r.rows} vectors traced`);
    await makeSyntheticEvalFolder(dirs.synthetic);
    for (const kind of ["eval", "ortho", "train", "synthetic"] as const) {
      const r = await writeReport(dirs[kind]);
      assert.equal(r.kind, kind === "synthetic" ? "eval" : kind);
      assert.equal(r.path, join(dirs[kind], "report.html"));
      html[kind] = await readFile(r.path, "utf8");
    }
  });

  for (const kind of ["eval", "ortho", "train"] as const) {
    it(`${kind}: one self-contained file, no external reference`, () => {
      assert.match(html[kind], /^<!DOCTYPE html>\n<html lang="en">/);
      assertSelfContained(html[kind]);
      assert.equal(splitData(html[kind]).data["kind"], kind);
    });

    it(`${kind}: every plot has one point per value of the files`, async () => {
      const expected = await expectedPlots(dirs[kind]);
      assert.deepEqual(countPoints(html[kind]), expected);
      // The page's own data says the same (the browser test reads the DOM).
      assert.deepEqual(splitData(html[kind]).data["plots"], expected);
      for (const m of html[kind].matchAll(/<svg id="plot-[^]*?<\/svg>/g)) {
        const svg = m[0];
        assert.match(svg, /class="x-label"[^>]*>[^<]+</, "an x axis label");
        assert.match(svg, /class="y-label"[^>]*>[^<]+</, "a y axis label");
        const points = svg.match(/<(circle|rect|path) class="point"[^>]*>/g) ?? [];
        const tips = svg.match(/class="point"[^>]*><title>[^<]+<\/title>/g) ?? [];
        assert.equal(tips.length, points.length, "a tooltip per point");
      }
    });
  }

  it("eval: the header names the reference, the kind, the model, the prompts and the settings", async () => {
    const h = html.eval;
    const ev = JSON.parse(await readFile(join(dirs.eval, "eval.json"), "utf8")) as EvalFile;
    assert.match(h, /<dt>reference<\/dt><dd>P_0 = steered by θ0<\/dd>/);
    assert.ok(h.includes(`<dt>model</dt><dd><span class="ut">${escapeHtml(ev.model)}</span></dd>`), "the model folder");
    assert.ok(h.includes(`<dt>vectors file</dt><dd><span class="ut">${escapeHtml(ev.vectors.file)}</span> (${ev.vectors.n} × ${ev.vectors.d})</dd>`), "the vectors file");
    assert.match(h, /<dt>kind<\/dt><dd>ortho /);
    assert.ok(h.includes(`steered at block</span> <span class="ut">${ev.settings.at}<`), "the block steered at");
    assert.ok(h.includes(`r measured at block</span> <span class="ut">${ev.settings.target}<`), "the block r is measured at");
    assert.deepEqual(ev.prompts.map((p) => p.text), REAL_PROMPTS);
    for (const p of ev.prompts) assert.ok(h.includes(`<li><span class="ut">${escapeHtml(p.text)}</span> <span class="note">(${p.tokens} tokens)</span></li>`), `prompt ${JSON.stringify(p.text)}`);
    // A folder whose reference is the unsteered model says so.
    const plain = await copy(dirs.eval, "eval-plain");
    await writeFile(join(plain, "eval.json"), JSON.stringify({ ...ev, reference: "unsteered", vectors: { ...ev.vectors, kind: "train" } }));
    const page = reportHtml(await loadReportSource(plain));
    assert.match(page, /<dt>reference<\/dt><dd>P_0 = unsteered<\/dd>/);
  });

  it("eval: the tables hold every entry and every continuation, with sort keys", async () => {
    const ev = JSON.parse(await readFile(join(dirs.eval, "eval.json"), "utf8")) as EvalFile;
    const gens = (await readFile(join(dirs.eval, "generations.jsonl"), "utf8")).trim().split("\n");
    const body = (id: string) => new RegExp(`<table id="${id}"[^]*?<tbody>([^]*?)</tbody>`).exec(html.eval)![1]!;
    assert.equal(body("entries").match(/<tr>/g)?.length, ev.entries.length);
    assert.equal(body("generations").match(/<tr>/g)?.length, gens.length);
    assert.match(html.eval, /<input type="search" id="search" data-filter="generations"/);
    assert.match(html.eval, /<input type="search" id="search-entries" data-filter="entries"/);
    // Numeric columns carry their value for sorting: the prompt and the code score of every continuation, in the file's order.
    const lines = gens.map((g) => JSON.parse(g) as { prompt: number; codeScore: number });
    const rows = body("generations").split("</tr>").filter((r) => r.includes("<tr>"));
    assert.equal(rows.length, lines.length);
    rows.forEach((r, i) => {
      const sortKeys = [...r.matchAll(/<td class="num" data-v="([^"]*)">([^<]*)<\/td>/g)].map((m) => [m[1], m[2]]);
      const g = lines[i]!;
      assert.deepEqual(sortKeys, [[String(g.prompt), String(g.prompt)], [String(g.codeScore), fmt(g.codeScore, 3)]], `continuation ${i}`);
    });
    const data = splitData(html.eval).data as { tables: Record<string, { columns: { label: string; type: string }[] }> };
    assert.deepEqual(data.tables["generations"]!.columns.map((c) => c.type), ["text", "num", "text", "num", "text"]);
  });

  it("escapes text from the files: </script>, <!--, markup and quotes stay text", async () => {
    // Real folders: the hostile text is in a prompt (eval), the run's prompt (ortho), a prompt's text (train);
    // the synthetic eval folder: in a continuation.
    for (const kind of ["eval", "ortho", "train", "synthetic"] as const) {
      const h = html[kind];
      assert.ok(!h.includes(HOSTILE), `${kind}: the hostile text appears raw`);
      assert.ok(h.includes(escapeHtml(HOSTILE)), `${kind}: the hostile text appears escaped`);
      assert.equal(h.match(/<\/script>/g)?.length, 2, `${kind}: only the page's own two </script>`);
      assert.ok(!h.includes("<!--"), `${kind}: no comment opened`);
      assert.ok(!/<b>|<img|<\/textarea>|<\/body>[^]*<\/body>/.test(h), `${kind}: no markup from the files`);
    }
    // The code-fenced continuation is shown as it is (escaped, newlines kept for pre-wrap).
    assert.ok(html.synthetic.includes(escapeHtml(CODE_TEXT)));
    // Every real continuation (whatever tokens the model made) is shown, escaped.
    const gens = (await readFile(join(dirs.eval, "generations.jsonl"), "utf8")).trim().split("\n").map((l) => JSON.parse(l) as { text: string });
    for (const g of gens) assert.ok(html.eval.includes(`<div class="gen-text"><span class="ut">${escapeHtml(g.text)}</span></div>`), `continuation ${JSON.stringify(g.text)}`);
    // The data block round-trips the prompts exactly.
    const ev = JSON.parse(await readFile(join(dirs.eval, "eval.json"), "utf8")) as EvalFile;
    assert.deepEqual(splitData(html.eval).data["prompts"], ev.prompts.map((p) => p.text));
    assert.ok(ev.prompts.some((p) => p.text.includes(HOSTILE)));
    // Control characters are shown as symbols, never written raw.
    assert.equal(escapeHtml("a\u0000b\u001bc\u007f"), "a\u2400b\u241bc\u2421");
    assert.equal(jsonForScript({ t: "</script><!--\u2028" }), '{"t":"\\u003c/script>\\u003c!--\\u2028"}');
  });

  it("an eval that is not complete yet is reported, with a warning and without the |cos| plot", async () => {
    const dir = await copy(dirs.eval, "eval-partial");
    const ev = JSON.parse(await readFile(join(dir, "eval.json"), "utf8")) as EvalFile;
    ev.complete = false;
    ev.cosine = null;
    // A KL that JSON could only write as null (NaN) is left out of the plot, and said so.
    const plotted = ev.entries.filter((e) => e.kind === "vector" && e.scale === 1).length;
    const second = ev.entries.findIndex((e) => e.id === "row 2");
    (ev.entries[second] as unknown as Record<string, unknown>)["klToReference"] = null;
    await writeFile(join(dir, "eval.json"), JSON.stringify(ev));
    const page = reportHtml(await loadReportSource(dir));
    assert.match(page, /<p class="warn">This eval is not complete/);
    const counts = countPoints(page);
    assert.equal(counts["cos"], undefined);
    assert.equal(counts["kl"]!["KL(P_e ‖ P_0)"], plotted - 1);
    assert.equal(counts["kl"]!["KL(P_0 ‖ P_e)"], plotted);
    assert.deepEqual(counts, { ...(await expectedPlots(dir)) });
    assert.match(page, /1 point not shown \(not finite\)/);
  });

  it("damaged or wrong folders give errors that name the file and the line", async () => {
    // eval.json that is not JSON.
    let d = await copy(dirs.eval, "bad-json");
    await writeFile(join(d, "eval.json"), '{"format": "melbo-eval/1", ');
    await rejectsMelbo(() => loadReportSource(d), join(d, "eval.json"), "is not valid JSON");
    // Another format.
    d = await copy(dirs.eval, "bad-format");
    await writeFile(join(d, "eval.json"), JSON.stringify({ format: "melbo-eval/99" }));
    await rejectsMelbo(() => loadReportSource(d), join(d, "eval.json"), '"melbo-eval/99"', "melbo-eval/1");
    // A field of the wrong type.
    d = await copy(dirs.eval, "bad-field");
    const ev = JSON.parse(await readFile(join(d, "eval.json"), "utf8")) as Record<string, unknown>;
    ((ev["entries"] as Record<string, unknown>[])[3]!)["klToReference"] = "big";
    await writeFile(join(d, "eval.json"), JSON.stringify(ev));
    await rejectsMelbo(() => loadReportSource(d), join(d, "eval.json"), "entries[3].klToReference should be a number", '"big"');
    // A bad line of generations.jsonl: its number.
    d = await copy(dirs.eval, "bad-generations");
    const lines = (await readFile(join(d, "generations.jsonl"), "utf8")).split("\n");
    lines[2] = '{"entry": "row 1", "prompt": 0, ';
    await writeFile(join(d, "generations.jsonl"), lines.join("\n"));
    await rejectsMelbo(() => loadReportSource(d), join(d, "generations.jsonl"), "line 3 is not JSON");
    lines[2] = JSON.stringify({ entry: "row 999", prompt: 0, mode: "greedy", text: "", tokens: 0, codeScore: 0 });
    await writeFile(join(d, "generations.jsonl"), lines.join("\n"));
    await rejectsMelbo(() => loadReportSource(d), join(d, "generations.jsonl"), 'line 3: entry "row 999" is not an entry');
    // eval.json without generations.jsonl.
    d = await copy(dirs.eval, "no-generations");
    await rm(join(d, "generations.jsonl"));
    await rejectsMelbo(() => loadReportSource(d), d, "no generations.jsonl");
    // A bad line of trace.jsonl.
    d = await copy(dirs.ortho, "bad-trace");
    await writeFile(join(d, "trace.jsonl"), '{"index": 1, "every": 1, "relLoss": [1, 0.9]}\n{"index": 2, "every": 1, "relLoss": [1, "x"]}\n');
    await rejectsMelbo(() => loadReportSource(d), join(d, "trace.jsonl"), "line 2: relLoss[1] should be a number");
    await writeFile(join(d, "trace.jsonl"), '{"index": 1, "every": 1, "relLoss": [1, 0.9]}\nnot json\n');
    await rejectsMelbo(() => loadReportSource(d), join(d, "trace.jsonl"), "line 2 is not JSON");
    // A damaged log of a run (the run files' own check).
    d = await copy(dirs.train, "bad-log");
    await writeFile(join(d, "log.jsonl"), (await readFile(join(d, "log.jsonl"), "utf8")) + "{oops\n");
    await rejectsMelbo(() => loadReportSource(d), join(d, "log.jsonl"), "is not JSON");
    // A vectors file that is not a melbo run.
    d = join(root, "plain-vectors");
    await mkdir(d);
    await writeVectors(join(d, "vectors.safetensors"), new Float32Array(8), 2, 4, {});
    await rejectsMelbo(() => loadReportSource(d), join(d, "vectors.safetensors"), "no melbo.algorithm metadata");
    // Neither kind; not there; not a folder.
    d = join(root, "empty");
    await mkdir(d);
    await rejectsMelbo(() => loadReportSource(d), d, "is not a melbo run folder", "eval.json", "vectors.safetensors");
    await rejectsMelbo(() => loadReportSource(join(root, "missing")), join(root, "missing"), "no such folder");
    await rejectsMelbo(() => loadReportSource(join(dirs.eval, "eval.json")), join(dirs.eval, "eval.json"), "is not a folder");
  });

  it("the CLI writes DIR/report.html and prints its path (exit 0); exit 2 for a folder that is not a run", async () => {
    const d = await copy(dirs.eval, "cli-eval");
    const ok = await cli(["report", d]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, join(d, "report.html") + "\n");
    assertSelfContained(await readFile(join(d, "report.html"), "utf8"));
    // Again: a report melbo wrote is replaced without --force.
    assert.equal((await cli(["report", d])).code, 0);
    // --out elsewhere.
    const out = join(root, "elsewhere.html");
    const r2 = await cli(["report", dirs.ortho, "--out", out]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(r2.stdout.trim(), out);
    assert.ok(existsSync(out));
    // --out onto a file that is not a report: refused, unless --force.
    const other = join(root, "notes.txt");
    await writeFile(other, "my notes");
    const refused = await cli(["report", dirs.train, "--out", other]);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /notes\.txt: exists and is not a report melbo wrote/);
    assert.equal(await readFile(other, "utf8"), "my notes");
    assert.equal((await cli(["report", dirs.train, "--out", other, "--force"])).code, 0);
    // Not a run: exit 2, the folder named.
    const empty = join(root, "cli-empty");
    await mkdir(empty);
    const bad = await cli(["report", empty]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, new RegExp(`melbo report: ${empty.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: is not a melbo run folder`));
    assert.ok(!existsSync(join(empty, "report.html")));
    // No folder, two folders: usage errors.
    const none = await cli(["report"]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /give the folder to report on/);
    assert.match(none.stderr, /usage: melbo report DIR \| BATCH\.json \[options\]/);
    assert.equal((await cli(["report", d, empty])).code, 2);
    const help = await cli(["report", "--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--out FILE\.html +the HTML file to write \(default: DIR\/report\.html\)/);
  });

  it("plot helpers: moving average, its window, round ticks", () => {
    assert.equal(averageWindow(1000), 50);
    assert.equal(averageWindow(250), 50);
    assert.equal(averageWindow(40), 8);
    assert.equal(averageWindow(3), 2);
    const ma = movingAverage([{ x: 3, y: 3 }, { x: 1, y: 1 }, { x: 2, y: NaN }, { x: 4, y: 5 }], 2);
    assert.deepEqual(ma, [{ x: 1, y: 1 }, { x: 3, y: 2 }, { x: 4, y: 4 }]);
    assert.deepEqual(niceTicks(0, 1, 5).ticks, [0, 0.2, 0.4, 0.6, 0.8, 1]);
    assert.deepEqual(niceTicks(1, 40, 8, true).ticks, [0, 5, 10, 15, 20, 25, 30, 35, 40]);
  });
});
