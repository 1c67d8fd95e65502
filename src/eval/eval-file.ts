// The schema of OUT/eval.json and OUT/generations.jsonl, written by `melbo eval` (eval.ts) and
// read by `melbo report`. docs/eval.md describes every field for users; keep the two in step.
//
// Words used below:
// - an *entry* is one thing eval steers with: one row of the vectors file at one scale, the sum
//   or the mean of the first k rows, θ0 (ortho runs), or nothing (the unsteered model);
// - P_e is the next-token distribution at the first answer position (the token after the
//   prompt) when steered by entry e; P_0 is the reference: steered by θ0 for an ortho run, else
//   the unsteered model. KL(P_e ‖ P_0) = Σ P_e log(P_e / P_0), in nats.

import type { ModelFingerprint } from "../model/fingerprint.js";

export const EVAL_FORMAT = "melbo-eval/1";
/** The files of an eval folder. */
export const EVAL_FILE = "eval.json";
export const GENERATIONS_FILE = "generations.jsonl";

/** What the vectors file is: the run that wrote it, from its melbo.algorithm metadata. */
export type VectorsKind = "ortho" | "train" | "plain";

export type EntryKind = "unsteered" | "theta0" | "vector" | "sum" | "mean";

export interface TopToken {
  id: number;
  /** The token decoded on its own (may be a part of a word, or "" for special tokens). */
  text: string;
  p: number;
}

/** What one entry did to one prompt. */
export interface PromptResult {
  /** KL(P_e ‖ P_0), nats. 0 for the reference itself. */
  klToReference: number;
  /** KL(P_0 ‖ P_e), nats. */
  klFromReference: number;
  /** The 10 most likely next tokens under P_e. */
  top: TopToken[];
  /** Code score (code-score.ts) of the greedy continuation. */
  greedyCodeScore: number;
  /** Mean code score of the sampled continuations. */
  sampleCodeScore: number;
  /** Share of the sampled continuations that count as code (code score ≥ CODE_THRESHOLD). NaN without samples. */
  sampleCodeShare: number;
}

export interface EvalEntry {
  /** Unique within the file: "unsteered", "theta0", "row 12", "row 12 x-2", "sum 10", "mean 10". */
  id: string;
  kind: EntryKind;
  /** Row of the vectors file (kind "vector", and "theta0": row 0 of an ortho run). */
  row?: number;
  /** k of a sum or mean: rows first..first+k-1 of the evaluated rows (vector rows, θ0 excluded). */
  k?: number;
  /** The factor the vector was multiplied by before it was added (1 = as stored). */
  scale: number;
  /** ‖scale · θ‖₂ of what was added (0 for unsteered). */
  norm: number;
  /** r = ‖z(θ) − z0‖ / ‖z0 − z(0)‖ at the run's target block: ortho runs only (null otherwise). */
  r: number | null;
  /** r of a random direction orthogonal to θ0 with the same norm (ortho runs, scale-1 vectors; else null). */
  randomR: number | null;
  /** Means over the prompts of the PromptResult fields of the same names. */
  klToReference: number;
  klFromReference: number;
  greedyCodeScore: number;
  sampleCodeScore: number;
  /** Mean over the prompts of the share of sampled continuations that are code (absent in older eval files: read as NaN). */
  sampleCodeShare: number;
  /** One result per prompt, in the order of `prompts`. */
  prompts: PromptResult[];
}

export interface EvalSettings {
  /** Rows of the vectors file evaluated, in order. */
  rows: number[];
  scales: number[];
  /** k of the sums and means of the first k evaluated rows. */
  sums: number[];
  /** Block whose output the vectors are added to. */
  at: number;
  /** Block the ortho loss is measured at (r): ortho runs only. */
  target: number | null;
  maxNewTokens: number;
  temperature: number;
  /** Sampled continuations per entry and prompt (at `temperature`), besides the greedy one. */
  samples: number;
  seed: number;
  /** Entries generated at once (sized to memory when the eval started; kept on resume so results do not change). */
  batch: number;
  /** Token ids of each prompt (what `prompts` are, exactly). */
  promptTokens: number[][];
}

export interface EvalFile {
  format: typeof EVAL_FORMAT;
  melboVersion: string;
  /** false while the eval runs (or after it was killed): `melbo eval --resume` continues it. */
  complete: boolean;
  /** Model folder, as given. */
  model: string;
  /** The vectors file, its kind, its rows n and width d, and a sha256 of the evaluated vectors (checked on resume). */
  vectors: { file: string; kind: VectorsKind; n: number; d: number; checksum: string };
  /** What identifies the model (model/fingerprint.ts), checked on resume. */
  modelFingerprint: ModelFingerprint;
  /** "theta0" for an ortho run (P_0 = steered by θ0), else "unsteered". */
  reference: "theta0" | "unsteered";
  prompts: { text: string; tokens: number }[];
  settings: EvalSettings;
  /** Every entry, unsteered first, then θ0 (ortho), the vectors (row order, then scale), sums, means. */
  entries: EvalEntry[];
  /** Pairwise |cos| between the evaluated rows, θ0 included (ortho runs); histogram edges are decades 0, 1e-9, …, 0.1, 1. Null until complete. */
  cosine: null | { pairs: number; maxAbs: number; meanAbs: number; histogram: { edges: number[]; counts: number[] } };
  /** Wall-clock seconds of the evaluation (across resumes). */
  seconds: number;
}

/** One line of OUT/generations.jsonl: one continuation. */
export interface GenerationLine {
  /** EvalEntry.id */
  entry: string;
  /** Index into EvalFile.prompts. */
  prompt: number;
  /** "greedy", or "sample" with its number among the entry's samples. */
  mode: "greedy" | "sample";
  sample?: number;
  text: string;
  /** New tokens generated. */
  tokens: number;
  codeScore: number;
}
