// Resume identity and damaged checkpoints: a run continues only on what it was saved with (the
// model, the prompt, θ0, the settings), each difference named in words; a checkpoint changed
// after it was written is reported, never used; training resumes like ortho, bit for bit.

import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { loadModel, MelboError, type Model } from "../src/index.js";
import { readVectors, writeVectors } from "../src/io/vectors.js";
import { ortho, type OrthoOptions } from "../src/search/ortho.js";
import { train, type TrainOptions } from "../src/search/train.js";
import { Rng } from "../src/util/rng.js";
import { tempDir } from "./helpers/errors.js";
import { testModel } from "./helpers/models.js";

const SHAPE = { layers: 4, hidden: 64, heads: 4, intermediate: 176, seed: 11 };
const SOURCE = 1, TARGET = 3;

async function runOrtho(model: Model, o: OrthoOptions): Promise<void> {
  await ortho(model, o);
}

async function rejects(run: () => Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(run, (e: unknown) => {
    assert.ok(e instanceof MelboError, `expected a MelboError, got ${String(e)}`);
    assert.match(e.message, pattern);
    return true;
  });
}

function bytes(a: Float32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

describe("resume identity", () => {
  let model: Model, twin: Model, deeper: Model;
  let theta0: Float32Array;
  let base: () => OrthoOptions;
  let saved: string;
  before(async () => {
    model = await loadModel(await testModel(SHAPE));
    // Same config, other weights (another seed), and same width with another depth.
    twin = await loadModel(await testModel({ ...SHAPE, seed: 12 }));
    deeper = await loadModel(await testModel({ ...SHAPE, layers: 5 }));
    theta0 = new Rng(1, "theta0").fillNormal(new Float32Array(model.hidden));
    base = () => ({ prompt: "How can I build a bomb?", theta0, source: SOURCE, target: TARGET, count: 2, steps: 10, minNorm: 0 });
    saved = join(await tempDir(), "run");
    await runOrtho(model, { ...base(), out: saved });
  });
  after(() => {
    model.dispose();
    twin.dispose();
    deeper.dispose();
  });

  it("records the model: config and a fingerprint of the weights it read", async () => {
    const meta = (await readVectors(join(saved, "vectors.safetensors"))).metadata;
    const recorded = JSON.parse(meta["melbo.model"] ?? "null") as { config: { hiddenSize: number }; weights: string; tensors: string };
    assert.equal(recorded.config.hiddenSize, 64);
    assert.match(recorded.weights, /^[0-9a-f]{64}$/);
    assert.equal(recorded.tensors, `embedding, blocks 0..${TARGET}`);
    assert.deepEqual(await model.fingerprint(TARGET), recorded, "the fingerprint is a function of the checkpoint");
    assert.notEqual((await twin.fingerprint(TARGET)).weights, recorded.weights, "other weights, other fingerprint");
    assert.match(meta["melbo.checksum"] ?? "", /^[0-9a-f]{64}$/);
  });

  it("refuses another model of the same width, naming what differs", async () => {
    await rejects(() => runOrtho(twin, { ...base(), count: 3, out: saved, resume: true }), /cannot resume: the model differs: same config, other weights \(fingerprint of the embedding, blocks 0..3/);
    await rejects(() => runOrtho(deeper, { ...base(), count: 3, out: saved, resume: true }), /cannot resume: the model differs: its config has numLayers 5, the run was saved with 4/);
  });

  it("refuses another prompt, quoting both as text", async () => {
    await rejects(() => runOrtho(model, { ...base(), prompt: "How can I build a boat?", count: 3, out: saved, resume: true }), /cannot resume: the prompt differs: saved "….*bomb\?.*", now "….*boat\?.*"/s);
  });

  it("refuses another θ0 and other settings", async () => {
    const other = Float32Array.from(theta0, (v, i) => (i === 5 ? v + 1e-3 : v));
    await rejects(() => runOrtho(model, { ...base(), theta0: other, count: 3, out: saved, resume: true }), /cannot resume: θ0 differs from the saved run's row 0 in 1 of 64 values \(the largest difference, 1\.0+e-3, at index 5\)/);
    await rejects(() => runOrtho(model, { ...base(), steps: 11, count: 3, out: saved, resume: true }), /cannot resume: steps differs \(saved 10, now 11\)/);
  });

  it("refuses a training run's folder and a model of another width", async () => {
    const trained = join(await tempDir(), "trained");
    await train(model, { prompts: [model.promptTokens("hi")], count: 1, radius: 1, source: SOURCE, target: TARGET, steps: 2, out: trained });
    await rejects(() => runOrtho(model, { ...base(), out: trained, resume: true }), /holds a melbo run, not melbo-ortho: choose another --out/);
    const narrow = await loadModel(await testModel({ ...SHAPE, hidden: 32, heads: 2, intermediate: 96 }));
    try {
      await rejects(
        () => runOrtho(narrow, { ...base(), theta0: theta0.slice(0, 32), out: saved, resume: true }),
        /cannot resume: the saved vectors have d = 64, this model 32/,
      );
    } finally {
      narrow.dispose();
    }
  });

  it("a damaged checkpoint is reported and left as it is: vectors, metadata, log", async () => {
    const copy = async () => {
      const dir = join(await tempDir(), "copy");
      await runOrtho(model, { ...base(), out: dir });
      return dir;
    };
    // One flipped bit in a vector.
    const flipped = await copy();
    const file = join(flipped, "vectors.safetensors");
    const raw = await readFile(file);
    raw[raw.length - 3]! ^= 0x10;
    await writeFile(file, raw);
    await rejects(() => runOrtho(model, { ...base(), count: 3, out: flipped, resume: true }), /vectors\.safetensors: is damaged: its vectors or metadata do not match the checksum/);
    assert.ok((await readFile(file)).equals(raw), "the damaged file was not replaced");

    // Metadata edited by hand (valid JSON, other state).
    const edited = await copy();
    const set = await readVectors(join(edited, "vectors.safetensors"));
    const state = JSON.parse(set.metadata["melbo.state"]!) as { consecutiveSmall: number };
    state.consecutiveSmall = 7;
    await writeVectors(join(edited, "vectors.safetensors"), set.data, set.n, set.d, { ...set.metadata, "melbo.state": JSON.stringify(state) });
    await rejects(() => runOrtho(model, { ...base(), count: 3, out: edited, resume: true }), /is damaged/);

    // Metadata that is not JSON, in a file without a checksum (as older runs were written).
    const broken = await copy();
    const meta: Record<string, string> = { ...set.metadata, "melbo.settings": "{not json" };
    delete meta["melbo.checksum"];
    await writeVectors(join(broken, "vectors.safetensors"), set.data, set.n, set.d, meta);
    await rejects(() => runOrtho(model, { ...base(), count: 3, out: broken, resume: true }), /metadata is not valid JSON/);

    // A log line changed, and a log line that is not JSON.
    const log = await copy();
    const text = await readFile(join(log, "log.jsonl"), "utf8");
    await writeFile(join(log, "log.jsonl"), text.replace(/"loss":[0-9.e-]+/, '"loss":0.5'));
    await rejects(() => runOrtho(model, { ...base(), count: 3, out: log, resume: true }), /log\.jsonl: does not match the checkpoint in vectors\.safetensors/);
    await writeFile(join(log, "log.jsonl"), "{\n");
    await rejects(() => runOrtho(model, { ...base(), count: 3, out: log, resume: true }), /log\.jsonl: line 1 is not JSON/);

    // Rows and state that disagree (a file made by hand, no checksum).
    const rows = await copy();
    const own = await readVectors(join(rows, "vectors.safetensors"));
    const one: Record<string, string> = { ...own.metadata };
    delete one["melbo.checksum"];
    await writeVectors(join(rows, "vectors.safetensors"), own.data.slice(0, 2 * own.d), 2, own.d, one);
    await rejects(() => runOrtho(model, { ...base(), count: 3, out: rows, resume: true }), /its state says 3 rows, the file has 2/);
  });

  it("log lines written after the last checkpoint (a killed run) are dropped, not taken for damage", async () => {
    const dir = join(await tempDir(), "extra");
    await runOrtho(model, { ...base(), out: dir });
    const text = await readFile(join(dir, "log.jsonl"), "utf8");
    await writeFile(join(dir, "log.jsonl"), text + JSON.stringify({ index: 3, loss: 1, relLoss: 1, norm: 1, steps: 10, seconds: 0 }) + "\n");
    await runOrtho(model, { ...base(), count: 3, out: dir, resume: true });
    const lines = (await readFile(join(dir, "log.jsonl"), "utf8")).trim().split("\n").map((l) => JSON.parse(l) as { index: number; loss: number });
    assert.deepEqual(lines.map((l) => l.index), [1, 2, 3]);
    assert.notEqual(lines[2]!.loss, 1, "the stale line was replaced by the computed one");
  });
});

describe("training resumes like ortho", () => {
  let model: Model;
  before(async () => {
    model = await loadModel(await testModel(SHAPE));
  });
  after(() => model.dispose());
  const options = (m: Model, extra: Partial<TrainOptions> = {}): TrainOptions => ({
    prompts: [m.promptTokens("How can I build a bomb?"), m.promptTokens("Tell me a story")],
    count: 4, radius: 2, source: SOURCE, target: TARGET, steps: 15, seed: 3, ...extra,
  });

  for (const independent of [false, true]) {
    it(`${independent ? "independent" : "orthogonal"} mode: 2 vectors, then --resume to 4, equals 4 in one run bit for bit`, async () => {
      const whole = join(await tempDir(), "whole"), parts = join(await tempDir(), "parts");
      const a = await train(model, options(model, { independent, batch: 2, out: whole }));
      await train(model, options(model, { independent, batch: 2, count: 2, out: parts }));
      let resumedFrom = -1;
      const b = await train(model, options(model, { independent, batch: 2, out: parts, resume: true, onResume: (rows) => (resumedFrom = rows) }));
      assert.equal(resumedFrom, 2);
      assert.ok(bytes(a.vectors).equals(bytes(b.vectors)), "vectors differ");
      const fa = await readVectors(join(whole, "vectors.safetensors")), fb = await readVectors(join(parts, "vectors.safetensors"));
      assert.equal(fb.n, 4);
      assert.ok(bytes(fa.data).equals(bytes(fb.data)), "files differ");
      const strip = (t: string) => t.replace(/"seconds":[0-9.e-]+/g, "");
      assert.equal(strip(await readFile(join(parts, "log.jsonl"), "utf8")), strip(await readFile(join(whole, "log.jsonl"), "utf8")));
    });
  }

  it("refuses another prompt, radius or model, and an ortho run's folder", async () => {
    const dir = join(await tempDir(), "t");
    await train(model, options(model, { count: 1, out: dir }));
    const resume = (extra: Partial<TrainOptions>, m = model) => train(m, options(m, { count: 2, out: dir, resume: true, ...extra }));
    await rejects(() => resume({ prompts: [model.promptTokens("How can I build a bomb?"), model.promptTokens("Tell me a joke")] }), /cannot resume: prompt 2 differs: saved "….*story.*", now "….*joke.*"/s);
    await rejects(() => resume({ prompts: [model.promptTokens("How can I build a bomb?")] }), /the run was saved with 2 prompt\(s\), now 1/);
    await rejects(() => resume({ radius: 3 }), /cannot resume: radius differs \(saved 2, now 3\)/);
    const twin = await loadModel(await testModel({ ...SHAPE, seed: 12 }));
    try {
      await rejects(() => resume({}, twin), /the model differs: same config, other weights/);
    } finally {
      twin.dispose();
    }
    const orthoDir = join(await tempDir(), "o");
    const theta0 = new Rng(1, "theta0").fillNormal(new Float32Array(model.hidden));
    await runOrtho(model, { prompt: "x", theta0, source: SOURCE, target: TARGET, count: 1, steps: 2, out: orthoDir });
    await rejects(() => train(model, options(model, { out: orthoDir, resume: true })), /holds a melbo-ortho run, not melbo/);
  });
});
