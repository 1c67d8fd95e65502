// The committed demo chat model (models/chat, docs/demo-model.md): it loads through the same path
// as a Hugging Face Qwen2 checkpoint, answers held-out coding requests in code and held-out
// questions in prose (greedy), and the demo's code vector (MELBO's, models/chat/code-vector)
// turns held-out prose answers into code. Also the demo's settings file and its errors.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CHAT_MODEL_DIR } from "../src/cli/commands/demo.js";
import { FALLBACK_DEMO_SETTINGS, readDemoSettings } from "../src/cli/commands/demo-settings.js";
import { CODE_THRESHOLD, codeScore } from "../src/eval/code-score.js";
import { loadModel, type Model } from "../src/index.js";
import { readVectorRows } from "../src/io/vectors.js";
import { MelboError } from "../src/errors.js";

interface Example { kind: "code" | "prose"; question: string; answer: string }
const HELD_OUT: Example[] = readFileSync(join(CHAT_MODEL_DIR, "heldout.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Example);
/** Held-out requests per kind checked here (the model card's rates are over the whole split). */
const PER_KIND = 12;

describe("demo chat model (models/chat)", () => {
  let model: Model;
  before(async () => {
    model = await loadModel(CHAT_MODEL_DIR);
  });
  after(() => model?.dispose());

  const answer = async (question: string, steer?: { vectors: Float32Array; at: number; scales?: number[] }): Promise<string> => {
    const g = await model.generate(model.promptTokens(question), { maxNewTokens: 32, ...(steer ?? {}) });
    return model.codec.decode(g.tokens[0]!);
  };

  it("is a Qwen2 checkpoint of the documented size, with the ChatML template", async () => {
    assert.equal(model.config.numLayers, 8);
    assert.equal(model.hidden, 256);
    assert.equal(model.config.vocabSize, 2048);
    const prompt = model.codec.chat("Hi");
    assert.match(prompt, /^<\|im_start\|>system\nYou are a helpful assistant\.<\|im_end\|>\n<\|im_start\|>user\nHi<\|im_end\|>\n<\|im_start\|>assistant\n$/);
  });

  for (const kind of ["code", "prose"] as const) {
    it(`answers most held-out ${kind === "code" ? "coding requests in code" : "questions in prose"} (greedy, ${PER_KIND} requests)`, async () => {
      const examples = HELD_OUT.filter((e) => e.kind === kind).slice(0, PER_KIND);
      assert.equal(examples.length, PER_KIND);
      const right: string[] = [], wrong: string[] = [];
      for (const e of examples) {
        const text = await answer(e.question);
        ((codeScore(text) >= CODE_THRESHOLD) === (kind === "code") ? right : wrong).push(`${e.question} -> ${JSON.stringify(text)}`);
      }
      assert.ok(right.length >= Math.ceil(0.75 * PER_KIND), `${right.length}/${PER_KIND} right; wrong:\n${wrong.join("\n")}`);
    });
  }

  it("the demo's code vector, at 1.5×, turns held-out prose answers towards code", async () => {
    // The demo's θ0 (MELBO candidate 2 with the settings of melbo-demo.json, found on the bomb
    // prompt alone). When it was found it turned 5 of these 12 greedy answers into code at 1× and
    // 9 at 1.5× (30 and 40 of the first 60; docs/demo-model.md); the margin leaves room for other
    // CPUs' rounding.
    const { settings } = await readDemoSettings(CHAT_MODEL_DIR);
    const { data } = await readVectorRows(`${join(CHAT_MODEL_DIR, "code-vector.safetensors")}:0`, model.hidden);
    const questions = HELD_OUT.filter((e) => e.kind === "prose").slice(0, PER_KIND).map((e) => e.question);
    let plainCode = 0, steeredCode = 0;
    for (const q of questions) {
      if (codeScore(await answer(q)) >= CODE_THRESHOLD) plainCode++;
      if (codeScore(await answer(q, { vectors: data, at: settings.source, scales: [1.5] })) >= CODE_THRESHOLD) steeredCode++;
    }
    assert.ok(steeredCode >= 6, `steered: ${steeredCode}/${questions.length} answers in code`);
    assert.ok(steeredCode >= plainCode + 6, `steered ${steeredCode} vs unsteered ${plainCode} answers in code`);
  });
});

describe("demo settings (melbo-demo.json)", () => {
  it("the chat model's are complete; a model without the file gets the original work's", async () => {
    const chat = await readDemoSettings(CHAT_MODEL_DIR);
    assert.equal(chat.file, join(CHAT_MODEL_DIR, "melbo-demo.json"));
    assert.ok(chat.settings.source < chat.settings.target && chat.settings.target <= 8);
    assert.ok(chat.settings.answerTokens > 0, "the chat model's MELBO reads the start of the unsteered answer");
    assert.equal(FALLBACK_DEMO_SETTINGS.answerTokens, 0);
    const dir = await mkdtemp(join(tmpdir(), "melbo-demo-settings-"));
    assert.deepEqual(await readDemoSettings(dir), { settings: FALLBACK_DEMO_SETTINGS, file: null });
  });

  it("refuses bad files, naming the file and the field", async () => {
    const dir = await mkdtemp(join(tmpdir(), "melbo-demo-settings-"));
    const file = join(dir, "melbo-demo.json");
    const cases: [string, RegExp][] = [
      ["{", /is not valid JSON/],
      ["[1]", /must hold one JSON object/],
      ['{"radius": -1}', /field "radius" must be a positive number, found -1/],
      ['{"source": 1.5}', /field "source" must be a non-negative integer/],
      ['{"answerTokens": 2.5}', /field "answerTokens" must be a non-negative integer/],
      ['{"answerTokens": -1}', /field "answerTokens" must be a non-negative integer/],
      ['{"prompt": ""}', /field "prompt" must be a non-empty string/],
      ['{"radious": 3}', /unknown field "radious"/],
    ];
    for (const [text, message] of cases) {
      await writeFile(file, text);
      await assert.rejects(readDemoSettings(dir), (e: unknown) => e instanceof MelboError && message.test(e.message) && e.message.includes(file), text);
    }
  });
});
