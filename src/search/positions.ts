// Target token positions I_i of MELBO's objective (docs/algorithm.md §3): every position, the last k
// of each prompt, or an explicit list. Prompts differ in length, so a choice is resolved per prompt.

import { MelboError } from "../errors.js";

export type Positions = { kind: "all" } | { kind: "last"; count: number } | { kind: "list"; indices: number[] };

/** "all", "last:K" or "i,j,…" (0-based token indices). */
export function parsePositions(text: string): Positions {
  const s = text.trim();
  if (s === "all") return { kind: "all" };
  const last = /^last:(\d+)$/.exec(s);
  if (last) {
    const count = Number(last[1]);
    if (count < 1) throw new MelboError(`positions "${text}": last:K needs K >= 1`);
    return { kind: "last", count };
  }
  const parts = s.split(",").map((p) => p.trim());
  if (parts.length === 0 || parts.some((p) => !/^\d+$/.test(p))) {
    throw new MelboError(`positions must be "all", "last:K" or a comma-separated list of token indices, got "${text}"`);
  }
  const indices = [...new Set(parts.map(Number))].sort((a, b) => a - b);
  return { kind: "list", indices };
}

/**
 * What the API accepts: a Positions object or its text ("last:4"). Checked here because JavaScript
 * callers may pass anything, and a wrong value should be named rather than crash later.
 */
export function toPositions(p: Positions | string | undefined): Positions {
  if (p === undefined) return { kind: "all" };
  if (typeof p === "string") return parsePositions(p);
  const q = p as { kind?: unknown; count?: unknown; indices?: unknown };
  if (q.kind === "all") return { kind: "all" };
  if (q.kind === "last" && Number.isInteger(q.count) && (q.count as number) >= 1) return { kind: "last", count: q.count as number };
  if (q.kind === "list" && Array.isArray(q.indices) && q.indices.length > 0 && q.indices.every((i) => Number.isInteger(i) && i >= 0)) {
    return { kind: "list", indices: [...new Set(q.indices as number[])].sort((a, b) => a - b) };
  }
  throw new MelboError(`positions must be "all", "last:K", a list of token indices or such an object, got ${JSON.stringify(p)}`);
}

export function formatPositions(p: Positions): string {
  switch (p.kind) {
    case "all":
      return "all";
    case "last":
      return `last:${p.count}`;
    case "list":
      return p.indices.join(",");
  }
}

/** The positions of `p` in a prompt of `seq` tokens; `prompt` (its index) names it in errors. */
export function resolvePositions(p: Positions, seq: number, prompt: number): Int32Array {
  switch (p.kind) {
    case "all":
      return Int32Array.from({ length: seq }, (_, i) => i);
    case "last":
      if (p.count > seq) throw new MelboError(`positions last:${p.count}: prompt ${prompt} has only ${seq} tokens`);
      return Int32Array.from({ length: p.count }, (_, i) => seq - p.count + i);
    case "list":
      for (const i of p.indices) {
        if (i >= seq) throw new MelboError(`target position ${i} is out of range: prompt ${prompt} has tokens 0..${seq - 1}`);
      }
      return Int32Array.from(p.indices);
  }
}
