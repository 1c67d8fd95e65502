// Text ↔ token ids for a checkpoint directory: tokenizer.json through @huggingface/tokenizers,
// the chat prompt through the checkpoint's own Jinja chat_template (@huggingface/jinja), as
// transformers' apply_chat_template does. Special tokens written in text (e.g. <|im_start|>)
// map to their ids, so a rendered template encodes to the ids the model was trained on.

import { readFile, realpath, stat } from "node:fs/promises";
import { createRequire } from "node:module";
import { basename, join } from "node:path";
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from "node:worker_threads";
import { Template } from "@huggingface/jinja";
import { Tokenizer } from "@huggingface/tokenizers";
import { MelboError, describeError } from "../errors.js";
import { isJsonObject, readJsonObject } from "../util/json.js";
import { checkRegularFile } from "./config.js";

/** The system message of the original experiments (note the final period). */
export const DEFAULT_SYSTEM = "You are a helpful assistant.";

export interface ChatOptions {
  /** System message; default DEFAULT_SYSTEM; null = no system message (the template's own default applies). */
  system?: string | null;
  addGenerationPrompt?: boolean;
}

export interface PromptOptions {
  /** true: the prompt is encoded as it is, no template. */
  raw?: boolean;
  system?: string | null;
}

/** A token string of tokenizer_config.json: plain, or a serialized AddedToken {content}. */
function tokenString(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (isJsonObject(v) && typeof v["content"] === "string") return v["content"];
  return null;
}

function idList(v: unknown): number[] {
  const list = Array.isArray(v) ? v : [v];
  return list.filter((x): x is number => typeof x === "number" && Number.isSafeInteger(x) && x >= 0);
}

async function optionalJson(path: string): Promise<Record<string, unknown> | null> {
  if ((await checkRegularFile(path, basename(path), true)) === null) return null;
  try {
    return await readJsonObject(path, basename(path));
  } catch (e) {
    if (e instanceof MelboError && (e.cause as NodeJS.ErrnoException | undefined)?.code === "ENOENT") return null;
    throw e;
  }
}

/** A JSON file of the checkpoint that must be there, checked to be a regular file first. */
async function requiredJson(path: string): Promise<Record<string, unknown>> {
  await checkRegularFile(path, basename(path));
  return readJsonObject(path, basename(path));
}

// ---------------------------------------------------------------- rendering chat templates
//
// A chat template is a program from the checkpoint folder: `{% for i in range(10**8) %}` runs
// for minutes in @huggingface/jinja (~35 µs per loop iteration), and a list doubled in a loop
// exhausts memory. Templates are therefore rendered in a worker thread with a time and a memory
// limit; the calling thread waits for it synchronously (Atomics.wait), so chat() stays a plain
// function. Real templates render in milliseconds; the worker starts once per process (~50 ms).

/** Longest a chat template may take to render. */
export const TEMPLATE_RENDER_TIMEOUT_MS = 500;
/** Heap limit of the rendering worker. */
const TEMPLATE_WORKER_HEAP_MB = 256;
/** Longest the worker may take to start (once per process, on a busy machine). */
const TEMPLATE_WORKER_START_MS = 30000;

const WORKER_SOURCE = `
const { workerData } = require("node:worker_threads");
const { Template } = require(workerData.jinja);
const { port, signal } = workerData;
let cached = null;
port.on("message", ({ source, context }) => {
  let reply;
  try {
    if (cached === null || cached.source !== source) cached = { source, template: new Template(source) };
    const text = cached.template.render(context);
    reply = typeof text === "string" ? { text } : { error: "the template did not render to text" };
  } catch (e) {
    reply = { error: e instanceof Error ? e.message : String(e) };
  }
  port.postMessage(reply);
  Atomics.add(signal, 1, 1);
  Atomics.notify(signal, 1);
});
Atomics.store(signal, 0, 1);
Atomics.notify(signal, 0);
`;

type RenderReply = { text: string } | { error: string };

class TemplateWorker {
  private readonly signal = new Int32Array(new SharedArrayBuffer(8)); // [started, replies]
  private readonly port: MessagePort;
  private readonly worker: Worker;

  constructor() {
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { jinja: createRequire(import.meta.url).resolve("@huggingface/jinja"), port: port2, signal: this.signal },
      transferList: [port2],
      resourceLimits: { maxOldGenerationSizeMb: TEMPLATE_WORKER_HEAP_MB },
      stdout: true, // a template cannot write to the terminal, and the worker's output is not ours
      stderr: true,
    });
    this.worker.unref();
    this.port.unref();
  }

  /** The reply, or null when the template ran out of time or memory (the worker is then stopped). */
  render(source: string, context: Record<string, unknown>): RenderReply | null {
    // The worker starts in the background (loadTokenizer asks for it); only its first use waits.
    if (Atomics.load(this.signal, 0) === 0 && Atomics.wait(this.signal, 0, 0, TEMPLATE_WORKER_START_MS) === "timed-out") {
      this.stop();
      throw new Error(`the chat template worker did not start within ${TEMPLATE_WORKER_START_MS / 1000} s`);
    }
    const before = Atomics.load(this.signal, 1);
    this.port.postMessage({ source, context });
    Atomics.wait(this.signal, 1, before, TEMPLATE_RENDER_TIMEOUT_MS);
    const message = receiveMessageOnPort(this.port);
    if (message === undefined) {
      this.stop();
      return null;
    }
    return message.message as RenderReply;
  }

  stop(): void {
    void this.worker.terminate();
    this.port.close();
  }
}

let templateWorker: TemplateWorker | null = null;

/** Starts the rendering worker in the background, so that it is ready by the first chat prompt. */
function startTemplateWorker(): void {
  templateWorker ??= new TemplateWorker();
}

/** Renders a chat template with the time and memory limits above; throws the template's own error as an Error. */
function renderTemplate(source: string, context: Record<string, unknown>): string | null {
  startTemplateWorker();
  const reply = templateWorker!.render(source, context);
  if (reply === null) {
    templateWorker = null;
    return null;
  }
  if ("error" in reply) throw new Error(reply.error);
  return reply.text;
}

/** A chat template that parsed (its errors are reported when the tokenizer is loaded). */
export interface ChatTemplate {
  source: string;
  parsed: Template;
}

export class TextCodec {
  private readonly template: ChatTemplate | null;

  /** Use loadTokenizer(dir). */
  constructor(
    private readonly tokenizer: Tokenizer,
    template: ChatTemplate | null,
    private readonly templateFile: string,
    /** Strings the template may use: bos_token, eos_token, pad_token, unk_token. */
    private readonly specialStrings: Record<string, string>,
    /** Token ids that end generation, deduplicated, in order of preference. */
    readonly eosTokenIds: readonly number[],
    private readonly cleanUpSpaces: boolean,
    /** tokenizer.json, named in errors of encode/decode. */
    private readonly tokenizerFile?: string,
    /** vocab_size of the model's config.json: ids the tokenizer makes must be below it. */
    private readonly modelVocabSize?: number,
  ) {
    this.template = template;
  }

  /** Ids of `text` as it is: no template, no BOS/EOS added; special-token strings map to their ids. */
  encode(text: string): Int32Array {
    let encoded: { ids: unknown[]; tokens: unknown[] };
    try {
      encoded = this.tokenizer.encode(text, { add_special_tokens: false });
    } catch (e) {
      // A tokenizer.json the library accepted can still fail on its first input (a bad pattern, a broken model).
      throw new MelboError(`the tokenizer failed to encode the prompt: ${describeError(e)}`, { file: this.tokenizerFile, cause: e });
    }
    const { ids, tokens } = encoded;
    const out = new Int32Array(ids.length);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      // Qwen's BPE has no unknown token (byte-level), so this only fires on a broken tokenizer.json.
      if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0 || id > 2147483647) {
        throw new MelboError(`tokenizer has no valid id for token ${JSON.stringify(tokens[i])} (found ${JSON.stringify(id)})`, { file: this.tokenizerFile });
      }
      if (this.modelVocabSize !== undefined && id >= this.modelVocabSize) {
        throw new MelboError(
          `token ${JSON.stringify(tokens[i])} has id ${id}, outside the model's vocabulary (vocab_size ${this.modelVocabSize} in config.json)`,
          { file: this.tokenizerFile },
        );
      }
      out[i] = id;
    }
    return out;
  }

  /**
   * Text of `ids`. Ids the tokenizer does not know (a model's vocab is padded past the
   * tokenizer's: Qwen 151936 rows for 151669 tokens) are skipped, as Hugging Face's tokenizers do.
   */
  decode(ids: ArrayLike<number>, options: { skipSpecialTokens?: boolean } = {}): string {
    const known: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (this.tokenizer.id_to_token(id) !== undefined) known.push(id);
    }
    if (known.length === 0) return ""; // the library throws on an empty list
    try {
      return this.tokenizer.decode(known, {
        skip_special_tokens: options.skipSpecialTokens ?? false,
        clean_up_tokenization_spaces: this.cleanUpSpaces,
      });
    } catch (e) {
      throw new MelboError(`the tokenizer failed to decode: ${describeError(e)}`, { file: this.tokenizerFile, cause: e });
    }
  }

  /** Id of one token string (e.g. "<|im_end|>"), or undefined. */
  tokenId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  /** The chat prompt for one user message, rendered by the checkpoint's chat template. */
  chat(prompt: string, options: ChatOptions = {}): string {
    if (this.template === null) {
      throw new MelboError(
        "no chat_template (needed to build a chat prompt; use raw mode to tokenize the prompt as it is)",
        { file: this.templateFile },
      );
    }
    const system = options.system === undefined ? DEFAULT_SYSTEM : options.system;
    const messages = system === null
      ? [{ role: "user", content: prompt }]
      : [{ role: "system", content: system }, { role: "user", content: prompt }];
    let text: string | null;
    try {
      text = renderTemplate(this.template.source, {
        ...this.specialStrings,
        messages,
        add_generation_prompt: options.addGenerationPrompt ?? true,
      });
    } catch (e) {
      throw new MelboError(`chat_template failed to render: ${describeError(e)}`, { file: this.templateFile, cause: e });
    }
    if (text === null) {
      throw new MelboError(
        `chat_template did not finish rendering within ${TEMPLATE_RENDER_TIMEOUT_MS / 1000} s and ${TEMPLATE_WORKER_HEAP_MB} MB (real templates take milliseconds)`,
        { file: this.templateFile },
      );
    }
    if (text.length === 0) {
      throw new MelboError("chat_template rendered an empty prompt (it does not write the messages)", { file: this.templateFile });
    }
    return text;
  }

  /** Model input ids for a prompt: the chat template applied (default) or the raw text. */
  promptTokens(prompt: string, options: PromptOptions = {}): Int32Array {
    if (options.raw === true) return this.encode(prompt);
    return this.encode(this.chat(prompt, options.system === undefined ? {} : { system: options.system }));
  }
}

/** Where the chat template comes from: tokenizer_config.json, or chat_template.jinja (newer transformers). */
async function loadTemplate(dir: string, config: Record<string, unknown>, configFile: string): Promise<{ template: ChatTemplate | null; file: string }> {
  let source: string | null = null;
  let file = configFile;
  const raw = config["chat_template"];
  if (typeof raw === "string") source = raw;
  else if (Array.isArray(raw)) {
    // Several named templates: transformers uses the one named "default".
    if (!raw.every((t) => isJsonObject(t) && typeof t["name"] === "string" && typeof t["template"] === "string")) {
      throw new MelboError(`chat_template must be a string or a list of {"name", "template"} strings`, { file });
    }
    const named = raw.find((t) => isJsonObject(t) && t["name"] === "default");
    if (isJsonObject(named) && typeof named["template"] === "string") source = named["template"];
  } else if (raw === undefined || raw === null) {
    const jinjaFile = join(dir, "chat_template.jinja");
    try {
      if ((await checkRegularFile(jinjaFile, "chat_template.jinja", true)) === null) return { template: null, file };
      source = await readFile(jinjaFile, "utf8");
      file = jinjaFile;
    } catch (e) {
      if (e instanceof MelboError) throw e;
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") {
        throw new MelboError(`cannot read chat_template.jinja: ${describeError(e)}`, { file: jinjaFile, cause: e });
      }
      source = null;
    }
  } else {
    throw new MelboError(`chat_template must be a string or a list of {"name", "template"} strings, found ${JSON.stringify(raw).slice(0, 80)}`, { file });
  }
  if (source === null) return { template: null, file };
  try {
    return { template: { source, parsed: new Template(source) }, file };
  } catch (e) {
    throw new MelboError(`chat_template does not parse: ${describeError(e)}`, { file, cause: e });
  }
}

/** Loads tokenizer.json + tokenizer_config.json (+ generation_config.json / config.json for EOS ids). */
/**
 * Tokenizers built in this process, by tokenizer.json's identity (path, inode, size, mtime) and
 * the text of tokenizer_config.json: building Qwen's (a 7 MB vocabulary and merges) takes seconds,
 * and a process often loads one checkpoint several times (the blocks of a search, tests). A
 * Tokenizer is not changed by encoding or decoding, so one can serve every load of its files.
 */
const tokenizers = new Map<string, Tokenizer>();
const MAX_CACHED_TOKENIZERS = 4;

async function buildTokenizer(tokFile: string, cfg: Record<string, unknown>): Promise<Tokenizer> {
  await checkRegularFile(tokFile, basename(tokFile));
  const st = await stat(tokFile);
  const key = `${await realpath(tokFile)}|${st.ino}|${st.size}|${st.mtimeMs}|${JSON.stringify(cfg)}`;
  const cached = tokenizers.get(key);
  if (cached !== undefined) return cached;
  const tokJson = await requiredJson(tokFile);
  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(tokJson, cfg);
  } catch (e) {
    throw new MelboError(`cannot build the tokenizer: ${describeError(e)}`, { file: tokFile, cause: e });
  }
  if (tokenizers.size >= MAX_CACHED_TOKENIZERS) tokenizers.delete(tokenizers.keys().next().value!);
  tokenizers.set(key, tokenizer);
  return tokenizer;
}

export async function loadTokenizer(dir: string): Promise<TextCodec> {
  const tokFile = join(dir, "tokenizer.json");
  const cfgFile = join(dir, "tokenizer_config.json");
  await checkRegularFile(tokFile, basename(tokFile)); // the first file named when both are missing
  const cfg = await requiredJson(cfgFile);
  const tokenizer = await buildTokenizer(tokFile, cfg);

  const { template, file: templateFile } = await loadTemplate(dir, cfg, cfgFile);
  if (template !== null) startTemplateWorker();

  const specialStrings: Record<string, string> = {};
  for (const key of ["bos_token", "eos_token", "pad_token", "unk_token"]) {
    const s = tokenString(cfg[key]);
    if (s !== null) specialStrings[key] = s;
  }

  // Generation stops at generation_config's eos ids (what transformers' generate uses), else
  // config.json's; the tokenizer's eos_token is added so a chat model stops at <|im_end|>.
  const eos: number[] = [];
  const gen = await optionalJson(join(dir, "generation_config.json"));
  const modelCfg = await optionalJson(join(dir, "config.json"));
  if (gen !== null && gen["eos_token_id"] !== undefined) eos.push(...idList(gen["eos_token_id"]));
  else if (modelCfg !== null) eos.push(...idList(modelCfg["eos_token_id"]));
  const eosString = specialStrings["eos_token"];
  if (eosString !== undefined) {
    const id = tokenizer.token_to_id(eosString);
    if (id === undefined) throw new MelboError(`eos_token ${JSON.stringify(eosString)} is not in the vocabulary`, { file: cfgFile });
    eos.push(id);
  }
  const cleanUp = cfg["clean_up_tokenization_spaces"] === true; // Qwen: false; the library's default would be true
  const vocab = modelCfg?.["vocab_size"];
  const modelVocabSize = typeof vocab === "number" && Number.isSafeInteger(vocab) && vocab > 0 ? vocab : undefined;
  return new TextCodec(tokenizer, template, templateFile, specialStrings, [...new Set(eos)], cleanUp, tokFile, modelVocabSize);
}
