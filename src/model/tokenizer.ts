// Text ↔ token ids for a checkpoint directory: tokenizer.json through @huggingface/tokenizers,
// the chat prompt through the checkpoint's own Jinja chat_template (@huggingface/jinja), as
// transformers' apply_chat_template does. Special tokens written in text (e.g. <|im_start|>)
// map to their ids, so a rendered template encodes to the ids the model was trained on.

import { readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { Template } from "@huggingface/jinja";
import { Tokenizer } from "@huggingface/tokenizers";
import { MelboError, describeError } from "../errors.js";
import { isJsonObject, readJsonObject } from "../util/json.js";

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
  try {
    return await readJsonObject(path, basename(path));
  } catch (e) {
    if (e instanceof MelboError && (e.cause as NodeJS.ErrnoException | undefined)?.code === "ENOENT") return null;
    throw e;
  }
}

export class TextCodec {
  private template: Template | null;

  /** Use loadTokenizer(dir). */
  constructor(
    private readonly tokenizer: Tokenizer,
    template: Template | null,
    private readonly templateFile: string,
    /** Strings the template may use: bos_token, eos_token, pad_token, unk_token. */
    private readonly specialStrings: Record<string, string>,
    /** Token ids that end generation, deduplicated, in order of preference. */
    readonly eosTokenIds: readonly number[],
    private readonly cleanUpSpaces: boolean,
  ) {
    this.template = template;
  }

  /** Ids of `text` as it is: no template, no BOS/EOS added; special-token strings map to their ids. */
  encode(text: string): Int32Array {
    const { ids, tokens } = this.tokenizer.encode(text, { add_special_tokens: false });
    const out = new Int32Array(ids.length);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      // Qwen's BPE has no unknown token (byte-level), so this only fires on a broken tokenizer.json.
      if (typeof id !== "number") throw new MelboError(`tokenizer has no id for token ${JSON.stringify(tokens[i])}`);
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
    return this.tokenizer.decode(known, {
      skip_special_tokens: options.skipSpecialTokens ?? false,
      clean_up_tokenization_spaces: this.cleanUpSpaces,
    });
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
    try {
      return this.template.render({
        ...this.specialStrings,
        messages,
        add_generation_prompt: options.addGenerationPrompt ?? true,
      });
    } catch (e) {
      throw new MelboError(`chat_template failed to render: ${describeError(e)}`, { file: this.templateFile, cause: e });
    }
  }

  /** Model input ids for a prompt: the chat template applied (default) or the raw text. */
  promptTokens(prompt: string, options: PromptOptions = {}): Int32Array {
    if (options.raw === true) return this.encode(prompt);
    return this.encode(this.chat(prompt, options.system === undefined ? {} : { system: options.system }));
  }
}

/** Where the chat template comes from: tokenizer_config.json, or chat_template.jinja (newer transformers). */
async function loadTemplate(dir: string, config: Record<string, unknown>, configFile: string): Promise<{ template: Template | null; file: string }> {
  let source: string | null = null;
  let file = configFile;
  const raw = config["chat_template"];
  if (typeof raw === "string") source = raw;
  else if (Array.isArray(raw)) {
    // Several named templates: transformers uses the one named "default".
    const named = raw.find((t) => isJsonObject(t) && t["name"] === "default");
    if (isJsonObject(named) && typeof named["template"] === "string") source = named["template"];
  } else if (raw === undefined || raw === null) {
    const jinjaFile = join(dir, "chat_template.jinja");
    try {
      source = await readFile(jinjaFile, "utf8");
      file = jinjaFile;
    } catch {
      source = null;
    }
  }
  if (source === null) return { template: null, file };
  try {
    return { template: new Template(source), file };
  } catch (e) {
    throw new MelboError(`chat_template does not parse: ${describeError(e)}`, { file, cause: e });
  }
}

/** Loads tokenizer.json + tokenizer_config.json (+ generation_config.json / config.json for EOS ids). */
export async function loadTokenizer(dir: string): Promise<TextCodec> {
  const tokFile = join(dir, "tokenizer.json");
  const cfgFile = join(dir, "tokenizer_config.json");
  const tokJson = await readJsonObject(tokFile, "tokenizer.json");
  const cfg = await readJsonObject(cfgFile, "tokenizer_config.json");

  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(tokJson, cfg);
  } catch (e) {
    throw new MelboError(`cannot build the tokenizer: ${describeError(e)}`, { file: tokFile, cause: e });
  }

  const { template, file: templateFile } = await loadTemplate(dir, cfg, cfgFile);

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
  return new TextCodec(tokenizer, template, templateFile, specialStrings, [...new Set(eos)], cleanUp);
}
