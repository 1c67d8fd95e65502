// "Looks like code": a score in [0, 1] for one generated text, the sum of four documented parts
// (docs/eval.md). It is a cheap, language-agnostic heuristic for sorting thousands of
// generations by how code-like they are (the original work's θ0 was a "write code" vector),
// not a classifier: prose about code scores low, a fenced Python function scores high.

import type { EvalEntry } from "./eval-file.js";

/** Words that open or structure code in the common languages (whole words, case-sensitive). */
const KEYWORDS = [
  "def", "return", "import", "from", "class", "function", "const", "let", "var", "if", "else", "elif", "for", "while",
  "print", "printf", "console", "public", "private", "static", "void", "int", "float", "double", "char", "bool",
  "struct", "include", "namespace", "std", "self", "this", "new", "null", "None", "True", "False", "true", "false",
  "try", "catch", "except", "async", "await", "lambda", "fn", "SELECT", "FROM", "WHERE", "echo",
] as const;
const KEYWORD = new RegExp(`\\b(?:${KEYWORDS.join("|")})\\b`, "g");
const SYMBOL = /[{}()[\];=<>+\-*/%&|^!:#.,_"'`\\]/g;

export interface CodeScoreParts {
  /** 0.35 when the text has a ``` fence. */
  fence: number;
  /** 0.25 × min(1, keywords / 4). */
  keywords: number;
  /** 0.2 × the share of non-empty lines after the first that start with 2+ spaces or a tab. */
  indentation: number;
  /** 0.2 × min(1, (share of code symbols among non-space characters) / 0.25). */
  symbols: number;
  total: number;
}

export function codeScoreParts(text: string): CodeScoreParts {
  const fence = text.includes("```") ? 0.35 : 0;
  const keywords = 0.25 * Math.min(1, (text.match(KEYWORD)?.length ?? 0) / 4);
  const lines = text.split("\n").slice(1).filter((l) => l.trim() !== "");
  const indented = lines.filter((l) => /^(?: {2,}|\t)/.test(l)).length;
  const indentation = lines.length === 0 ? 0 : 0.2 * (indented / lines.length);
  const visible = text.replace(/\s/g, "").length;
  const symbolShare = visible === 0 ? 0 : (text.match(SYMBOL)?.length ?? 0) / visible;
  const symbols = 0.2 * Math.min(1, symbolShare / 0.25);
  return { fence, keywords, indentation, symbols, total: fence + keywords + indentation + symbols };
}

/**
 * From this code score up a text counts as code: a fence (0.35) and a little more, or no fence
 * but code keywords, indentation and symbols together. Prose scores 0.1 to 0.3 (docs/eval.md).
 */
export const CODE_THRESHOLD = 0.5;

/** The code score of a text, in [0, 1] (codeScoreParts(text).total). */
export function codeScore(text: string): number {
  return codeScoreParts(text).total;
}

/** Whether a text counts as code: its code score is CODE_THRESHOLD or more. */
export function isCode(text: string): boolean {
  return codeScore(text) >= CODE_THRESHOLD;
}

/** Vectors with a code share (the eval sampled), and those whose sampled answers are code at least half the time. */
export function codeShares(vectors: EvalEntry[]): { counted: number; code: number } {
  const counted = vectors.filter((e) => Number.isFinite(e.sampleCodeShare));
  return { counted: counted.length, code: counted.filter((e) => e.sampleCodeShare >= 0.5).length };
}
