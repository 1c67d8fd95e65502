// JSON-lines files (log.jsonl, trace.jsonl, generations.jsonl): one reader for all of them, so
// that a damaged line is reported the same way everywhere, with its number and the file.

import { readFile } from "node:fs/promises";
import { MelboError, describeError } from "../errors.js";

export interface JsonLine {
  /** 1-based line number in the file. */
  line: number;
  /** The line as written (without its newline). */
  text: string;
  value: unknown;
}

/** The non-blank lines of `text`, parsed; a line that is not JSON is "line N is not JSON: the WHAT is damaged…". */
export function parseJsonLines(text: string, file: string, what: string, advice = ""): JsonLine[] {
  const out: JsonLine[] = [];
  for (const [i, line] of text.split("\n").entries()) {
    if (line.trim() === "") continue;
    try {
      out.push({ line: i + 1, text: line, value: JSON.parse(line) as unknown });
    } catch {
      throw new MelboError(`line ${i + 1} is not JSON: the ${what} is damaged${advice}`, { file });
    }
  }
  return out;
}

/** The text of `file`, or "" when it does not exist (an optional file: a run without a trace). */
export async function readOptionalText(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return "";
    throw new MelboError(`cannot read the ${what}: ${describeError(e)}`, { file });
  }
}
