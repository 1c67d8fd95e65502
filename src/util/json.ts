// JSON files at the boundary: read, parse, and check the top level is an object, with errors
// that name the file. Field-level validation is the caller's job.

import { readFile } from "node:fs/promises";
import { MelboError, describeError } from "../errors.js";

export function isJsonObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Reads a JSON file that must hold an object; `what` names it in messages ("missing config.json"). */
export async function readJsonObject(path: string, what: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new MelboError(`missing ${what}`, { file: path, cause: e });
    throw new MelboError(`cannot read ${what}: ${describeError(e)}`, { file: path, cause: e });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new MelboError(`invalid JSON: ${describeError(e)}`, { file: path, cause: e });
  }
  if (!isJsonObject(parsed)) throw new MelboError(`${what} must be a JSON object`, { file: path });
  return parsed;
}
