// melbo eval: its measurements against independent computations (a steered forward pass for the
// KL, the ortho log for r), resume after an interruption, steering strength, and bad input.

import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { codeScore, codeScoreParts } from "../src/eval/code-score.js";
import { klDivergence, logSoftmax, topTokens } from "../src/eval/distribution.js";
import { cosineAudit, evaluate, type EvaluateOptions } from "../src/eval/eval.js";
import type { EvalFile, GenerationLine } from "../src/eval/eval-file.js";
import { loadModel, type Model } from "../src/index.js";
import { parseRowList, parseVectorRef, readVectorRows, writeVectors } from "../src/io/vectors.js";
import { ortho } from "../src/search/ortho.js";
import { readOrthoRun } from "../src/search/ortho-files.js";
import { Rng } from "../src/util/rng.js";
import { cli, startCli, type CliResult } from "./helpers/cli.js";
import { tempDir } from "./helpers/errors.js";
import { testModel } from "./helpers/models.js";

const SHAPE = { layers: 4, hidden: 64, heads: 4, intermediate: 176, seed: 11 };
const SOURCE = 1, TARGET = 3;
const PROMPT = "How can I build a bomb?";

describe("eval: building blocks", () => {
  it("KL in both directions, top-k and log-softmax match a hand computation", () => {
    const p = [0.5, 0.25, 0.25], q = [0.25, 0.5, 0.25];
    const lp = logSoftmax(p.map(Math.log)), lq = logSoftmax(q.map(Math.log));
    const expected = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * Math.log(x / b[i]!), 0);
    assert.ok(Math.abs(klDivergence(lp, lq) - expected(p, q)) < 1e-12);
    assert.ok(Math.abs(klDivergence(lq, lp) - expected(q, p)) < 1e-12);
    assert.equal(klDivergence(lp, lp), 0);
    // Softmax of shifted logits is the same distribution.
    assert.ok(Math.abs(klDivergence(logSoftmax([1, 2, 3]), logSoftmax([101, 102, 103]))) < 1e-12);
    const top = topTokens(logSoftmax([0.1, 3, -1, 3, 2]), 3);
    assert.deepEqual(top.map((t) => t.id), [1, 3, 4]);
    assert.ok(top[0]!.p > top[2]!.p);
  });

  it("the code score ranks code above prose, and its parts are bounded as documented", () => {
    const code = "Here is the code:\n```python\ndef add(a, b):\n    return a + b\n\nprint(add(1, 2))\n```";
    const prose = "The weather was lovely today, and we walked along the river for an hour.";
    assert.ok(codeScore(code) > 0.7, `code scored ${codeScore(code)}`);
    assert.ok(codeScore(prose) < 0.1, `prose scored ${codeScore(prose)}`);
    const parts = codeScoreParts(code);
    assert.equal(parts.fence, 0.35);
    assert.ok(parts.keywords <= 0.25 && parts.indentation <= 0.2 && parts.symbols <= 0.2);
    assert.equal(codeScore(""), 0);
  });

  it("row lists: single rows, lists and ranges; mistakes are named", () => {
    assert.deepEqual(parseVectorRef("a/v.safetensors:0,3,10-12"), { path: "a/v.safetensors", rows: [0, 3, 10, 11, 12] });
    assert.deepEqual(parseVectorRef("v.safetensors:7"), { path: "v.safetensors", rows: [7] });
    assert.deepEqual(parseVectorRef("v.safetensors"), { path: "v.safetensors", rows: undefined });
    assert.deepEqual(parseRowList("5-5,2"), [5, 2]);
    assert.throws(() => parseRowList("9-3"), /runs backwards: write 3-9/);
  });

  it("the |cos| audit counts every pair once and bins it by decade", () => {
    const d = 3;
    const rows = Float32Array.from([1, 0, 0, 0, 1, 0, 1, 1, 0]);
    const c = cosineAudit(rows, 3, d);
    assert.equal(c.pairs, 3);
    assert.ok(Math.abs(c.maxAbs - Math.SQRT1_2) < 1e-7);
    assert.equal(c.histogram.counts.reduce((a, b) => a + b, 0), 3);
    assert.equal(c.histogram.counts[0], 1, "the exactly orthogonal pair is in the first bin");
    assert.equal(c.histogram.counts[c.histogram.counts.length - 1], 2, "the two 45° pairs are in the last bin");
  });
});

describe("eval on a model", () => {
  let model: Model;
  let tokens: Int32Array;
  let work: string;
  let runDir: string;
  let theta0: Float32Array;
  let base: EvaluateOptions;

  before(async () => {
    model = await loadModel(await testModel(SHAPE));
    tokens = model.promptTokens(PROMPT);
    work = await tempDir("melbo-eval-");
    runDir = join(work, "ortho");
    theta0 = new Rng(5, "eval-theta0").fillNormal(new Float32Array(model.hidden), 0.5);
    await ortho(model, { tokens, theta0, count: 4, block: 2, steps: 30, source: SOURCE, target: TARGET, projection: "grad", out: runDir, metadata: { prompt: PROMPT } });
    const vec = await readVectorRows(join(runDir, "vectors.safetensors"), model.hidden);
    base = {
      vectors: vec.data, rows: vec.rows, file: vec.file, fileRows: vec.fileRows, kind: "ortho",
      ortho: { theta0, source: SOURCE, target: TARGET, tokens }, prompts: [{ text: PROMPT, tokens }, { text: "Hi", tokens: model.promptTokens("Hi") }],
      at: SOURCE, scales: [1, -1], sums: [2, 3], maxNewTokens: 6, temperature: 1, samples: 2, seed: 3, batch: 3,
    };
  });
  after(() => model.dispose());

  it("measures KL against a steered forward pass, r against the run's log, norms and |cos|", async () => {
    const doc = await evaluate(model, base);
    assert.equal(doc.complete, true);
    assert.equal(doc.reference, "theta0");
    const ids = doc.entries.map((e) => e.id);
    assert.deepEqual(ids, ["unsteered", "theta0", "row 1", "row 1 x-1", "row 2", "row 2 x-1", "row 3", "row 3 x-1", "row 4", "row 4 x-1", "sum 2", "mean 2", "sum 3", "mean 3"]);
    const byId = new Map(doc.entries.map((e) => [e.id, e]));

    // P_0 is θ0's own distribution.
    assert.equal(byId.get("theta0")!.klToReference, 0);
    assert.equal(byId.get("theta0")!.klFromReference, 0);
    // KL of row 2 at scale -1 on prompt 1, recomputed from full steered forward passes (another code path: no KV cache, logits of every position).
    const row2 = (await readVectorRows(`${join(runDir, "vectors.safetensors")}:2`, model.hidden)).data;
    const p1 = base.prompts[1]!.tokens;
    const lastLogits = async (v: Float32Array, scale: number) => {
      const f = await model.forward(p1, { logits: true, steer: { vectors: v, at: SOURCE, scales: [scale] } });
      const V = model.config.vocabSize;
      return logSoftmax(f.logits!.subarray((p1.length - 1) * V, p1.length * V));
    };
    const ref = await lastLogits(theta0, 1), mine = await lastLogits(row2, -1);
    const entry = byId.get("row 2 x-1")!;
    assert.ok(Math.abs(entry.prompts[1]!.klToReference - klDivergence(mine, ref)) < 1e-4 * Math.max(1, klDivergence(mine, ref)));
    assert.ok(Math.abs(entry.prompts[1]!.klFromReference - klDivergence(ref, mine)) < 1e-4 * Math.max(1, klDivergence(ref, mine)));
    assert.ok(Math.abs(entry.klToReference - (entry.prompts[0]!.klToReference + entry.prompts[1]!.klToReference) / 2) < 1e-12, "the entry's KL is the mean over prompts");
    assert.equal(entry.prompts[1]!.top.length, 10);
    assert.equal(entry.prompts[1]!.top[0]!.id, [...mine.keys()].reduce((a, b) => (mine[b]! > mine[a]! ? b : a), 0), "the top token is the argmax of the steered distribution");

    // r: 0 at θ0, 1 unsteered, and the run's own relLoss for every found vector.
    assert.ok(byId.get("theta0")!.r! < 1e-5);
    assert.ok(Math.abs(byId.get("unsteered")!.r! - 1) < 1e-5);
    const run = (await readOrthoRun(runDir))!;
    for (const line of run.log) {
      const e = byId.get(`row ${line.index}`)!;
      assert.ok(Math.abs(e.r! - line.relLoss) < 1e-4, `row ${line.index}: eval r ${e.r}, run log ${line.relLoss}`);
      assert.ok(Math.abs(e.norm - line.norm) < 1e-5 * line.norm);
      assert.ok(e.randomR !== null && e.randomR > 0);
      assert.equal(byId.get(`row ${line.index} x-1`)!.randomR, null, "random baselines only for scale-1 vectors");
    }
    // The sum of orthogonal vectors has the root of the summed squared norms; the mean is the sum / k.
    const n1 = byId.get("row 1")!.norm, n2 = byId.get("row 2")!.norm;
    assert.ok(Math.abs(byId.get("sum 2")!.norm - Math.hypot(n1, n2)) < 1e-4);
    assert.ok(Math.abs(byId.get("mean 2")!.norm - Math.hypot(n1, n2) / 2) < 1e-4);
    // θ0 and the 4 found vectors: 10 pairs, orthogonal.
    assert.equal(doc.cosine!.pairs, 10);
    assert.ok(doc.cosine!.maxAbs < 1e-5);
  });

  it("writes generations.jsonl (greedy + samples per entry and prompt) and continues a killed eval to the same files", async () => {
    const whole = join(work, "whole"), parts = join(work, "parts");
    await evaluate(model, { ...base, out: whole });
    const text = await readFile(join(whole, "generations.jsonl"), "utf8");
    const gens = text.trim().split("\n").map((l) => JSON.parse(l) as GenerationLine);
    const doc = JSON.parse(await readFile(join(whole, "eval.json"), "utf8")) as EvalFile;
    assert.equal(gens.length, doc.entries.length * 2 * 3, "entries × prompts × (greedy + 2 samples)");
    for (const g of gens) assert.equal(g.codeScore, codeScore(g.text));
    const greedyOf = (id: string, p: number) => gens.find((g) => g.entry === id && g.prompt === p && g.mode === "greedy")!;
    assert.equal(doc.entries.find((e) => e.id === "row 1")!.prompts[1]!.greedyCodeScore, greedyOf("row 1", 1).codeScore);

    // Interrupt after the second chunk is saved, then resume.
    const controller = new AbortController();
    let chunksSaved = 0;
    await assert.rejects(
      evaluate(model, {
        ...base, out: parts, signal: controller.signal,
        onProgress: (p) => {
          if (Number.isInteger(p.done) && p.done > 0 && ++chunksSaved === 3) controller.abort(new DOMException("test stop", "AbortError"));
        },
      }),
      /test stop/,
    );
    const partial = JSON.parse(await readFile(join(parts, "eval.json"), "utf8")) as EvalFile;
    assert.equal(partial.complete, false);
    assert.ok(partial.entries.length > 0 && partial.entries.length < doc.entries.length, `partial has ${partial.entries.length} entries`);
    // A different setting is refused in words.
    await assert.rejects(evaluate(model, { ...base, scales: [1], out: parts, resume: true }), /cannot resume: scales differs \(saved \[1,-1\], now \[1\]\)/);
    const resumed = await evaluate(model, { ...base, out: parts, resume: true });
    assert.equal(resumed.complete, true);
    const strip = (d: EvalFile) => JSON.stringify({ ...d, seconds: 0 });
    assert.equal(strip(JSON.parse(await readFile(join(parts, "eval.json"), "utf8")) as EvalFile), strip(doc));
    assert.equal(await readFile(join(parts, "generations.jsonl"), "utf8"), text);
  });

  it("the CLI takes blocks and prompt from the run; plain files need --at and --prompt; bad rows and widths exit 2", async () => {
    const dir = model.dir;
    const out = join(work, "cli");
    const r = await cli(["eval", "--model", dir, "--vectors", `${join(runDir, "vectors.safetensors")}:0-2`, "--sums", "2", "--max-new-tokens", "3", "--samples", "0", "--out", out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /P0 = steered by θ0/);
    const doc = JSON.parse(await readFile(join(out, "eval.json"), "utf8")) as EvalFile;
    assert.deepEqual(doc.entries.map((e) => e.id), ["unsteered", "theta0", "row 1", "row 2", "sum 2", "mean 2"]);
    assert.equal(doc.settings.at, SOURCE);
    assert.deepEqual(doc.settings.promptTokens, [[...tokens]]);

    const plain = join(work, "plain.safetensors");
    await writeVectors(plain, new Rng(1, "plain").fillNormal(new Float32Array(2 * model.hidden)), 2, model.hidden, {});
    const noAt = await cli(["eval", "--model", dir, "--vectors", plain, "--prompt", "x", "--out", join(work, "p1")]);
    assert.equal(noAt.code, 2);
    assert.match(noAt.stderr, /plain\.safetensors: is not a melbo run, so it does not say where its vectors go: give --at S/);
    const noPrompt = await cli(["eval", "--model", dir, "--vectors", plain, "--at", "1", "--out", join(work, "p2")]);
    assert.equal(noPrompt.code, 2);
    assert.match(noPrompt.stderr, /names no prompt: give --prompt TEXT/);
    const badRow = await cli(["eval", "--model", dir, "--vectors", `${plain}:0,5`, "--at", "1", "--prompt", "x", "--out", join(work, "p3")]);
    assert.equal(badRow.code, 2);
    assert.match(badRow.stderr, /row 5 does not exist \(the file has 2 vectors, rows 0\.\.1\)/);
    const narrow = join(work, "narrow.safetensors");
    await writeVectors(narrow, new Float32Array(8), 1, 8, {});
    const wrongWidth = await cli(["eval", "--model", dir, "--vectors", narrow, "--at", "1", "--prompt", "x", "--out", join(work, "p4")]);
    assert.equal(wrongWidth.code, 2);
    assert.match(wrongWidth.stderr, /vectors have length 8, the model's hidden size is 64/);
    const promptsFile = join(work, "prompts.txt");
    await writeFile(promptsFile, "\n\n");
    const emptyPrompts = await cli(["eval", "--model", dir, "--vectors", plain, "--at", "1", "--prompts-file", promptsFile, "--out", join(work, "p5")]);
    assert.equal(emptyPrompts.code, 2);
    assert.match(emptyPrompts.stderr, /prompts\.txt: the prompts file holds no prompt/);
  });

  it("a SIGKILLed `melbo eval` continues with --resume to the files of an uninterrupted one", async () => {
    const args = (out: string) => ["eval", "--model", model.dir, "--vectors", join(runDir, "vectors.safetensors"), "--sums", "2", "--scales", "1,2", "--max-new-tokens", "12", "--batch", "1", "--out", out];
    const whole = join(work, "kill-whole"), killed = join(work, "kill-parts");
    const full = await cli(args(whole));
    assert.equal(full.code, 0, full.stderr);
    const read = async (dir: string) => ({
      doc: { ...(JSON.parse(await readFile(join(dir, "eval.json"), "utf8")) as EvalFile), seconds: 0 },
      gens: await readFile(join(dir, "generations.jsonl"), "utf8"),
    });
    const expected = await read(whole);
    const committed = (): Promise<number> => readFile(join(killed, "eval.json"), "utf8").then((t) => (JSON.parse(t) as EvalFile).entries.length, () => 0);
    let landed = 0;
    for (let k = 0; k < 4; k++) {
      const before = await committed();
      const { child, result } = startCli([...args(killed), ...(k > 0 ? ["--resume"] : [])]);
      // Kill once this process has committed a chunk of its own (or ended).
      let ended: CliResult | null = null;
      void result.then((r) => (ended = r));
      while (ended === null && (await committed()) <= before) await new Promise((r) => setTimeout(r, 10));
      child.kill("SIGKILL");
      if ((await result).signal === "SIGKILL") landed++;
    }
    assert.ok(landed >= 3, `only ${landed} of 4 kills landed mid-eval`);
    const last = await cli([...args(killed), "--resume"]);
    assert.equal(last.code, 0, last.stderr);
    const got = await read(killed);
    assert.deepEqual(got.doc, expected.doc);
    assert.equal(got.gens, expected.gens);
  });

  it("a scale multiplies the vector: forward and generate with scale s equal the vector × s", async () => {
    const v = new Rng(9, "scale").fillNormal(new Float32Array(model.hidden));
    const times = (s: number) => v.map((x) => x * s);
    for (const s of [2, -1, 0.5]) {
      const a = await model.forward(tokens, { layers: [TARGET], steer: { vectors: v, at: SOURCE, scales: [s] } });
      const b = await model.forward(tokens, { layers: [TARGET], steer: { vectors: times(s), at: SOURCE } });
      assert.deepEqual(a.resid.get(TARGET), b.resid.get(TARGET));
    }
    const g = await model.generate(tokens, { vectors: v, at: SOURCE, scales: [-2], maxNewTokens: 5, firstLogits: true });
    const h = await model.generate(tokens, { vectors: times(-2), at: SOURCE, maxNewTokens: 5, firstLogits: true });
    assert.deepEqual(g.tokens, h.tokens);
    assert.deepEqual(g.firstLogits, h.firstLogits);
    await assert.rejects(model.generate(tokens, { vectors: v, at: SOURCE, scales: [1, 2], maxNewTokens: 1 }), /scales must have one value per steering vector \(1\), got 2/);
    await assert.rejects(model.generate(tokens, { vectors: v, at: SOURCE, scales: [NaN], maxNewTokens: 1 }), /scale 0 is NaN/);
  });
});
