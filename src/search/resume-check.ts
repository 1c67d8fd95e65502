// What a resumed run must share with the run saved in its folder, beyond the settings each search
// compares itself: the model and the prompt tokens. Differences are named in words (the prompt
// as text, the model's config field or weights), never as token ids alone.

import { MelboError } from "../errors.js";
import { modelDifference, type ModelFingerprint } from "../model/fingerprint.js";
import type { Model } from "../model/model.js";

/** Throws "cannot resume: the model differs: …" unless `now` is the model the run was saved with (runs saved before melbo recorded the model are not checked). */
export function checkSameModel(saved: ModelFingerprint | undefined, now: ModelFingerprint, folder: string): void {
  if (saved === undefined) return;
  const diff = modelDifference(saved, now);
  if (diff) throw new MelboError(`cannot resume: ${diff}`, { file: folder });
}

/** The prompts as text, from the first token where they differ (with a few tokens before it for context). */
function quoteFrom(model: Model, tokens: readonly number[], from: number): string {
  const start = Math.max(0, from - 4);
  const text = model.codec.decode(tokens.slice(start));
  return JSON.stringify((start > 0 ? "…" : "") + text);
}

/** Null when the token lists are equal, else "the prompt differs: saved "…", now "…"". */
export function promptDifference(model: Model, saved: readonly number[], now: readonly number[], what = "the prompt"): string | null {
  let i = 0;
  while (i < saved.length && i < now.length && saved[i] === now[i]) i++;
  if (i === saved.length && i === now.length) return null;
  return `${what} differs: saved ${quoteFrom(model, saved, i)}, now ${quoteFrom(model, now, i)}`;
}

/** The first setting (other than `skip`) whose saved value differs from `now`'s, as JSON; null when they agree. */
export function settingDifference<S extends object>(now: S, saved: Partial<S>, skip: keyof S): { key: keyof S & string; saved: string; now: string } | null {
  for (const key of Object.keys(now) as (keyof S & string)[]) {
    if (key === skip) continue;
    const a = JSON.stringify(saved[key]), b = JSON.stringify(now[key]);
    if (a !== b) return { key, saved: a ?? "unset", now: b ?? "unset" };
  }
  return null;
}
