// The shape of bench/RESULTS.json: written by run.ts, read by report.ts (which turns it into
// RESULTS.md). Its own module so that neither of the two imports the other.

import type { QualityResults } from "./quality.js";
import type { NativeModelInfo } from "../src/native.js";
import type { MachineInfo, OpStat, Shape } from "./lib.js";

export interface OrthoRow {
  label: string;
  dtype: string;
  activations: string;
  rows: number;
  stepSeconds: number; // median over calls of the per-step wall time
  callSeconds: number[]; // per-step time of each call
  vectorStepsPerSecond: number;
  gflops: number;
  losses: number[]; // first call's per-step mean loss
  others: number; // share of the machine's CPU time other processes used meanwhile
}
export interface PyRow {
  mode: "faithful" | "cached";
  dtype?: "f32" | "bf16"; // absent in older results: f32
  stepSeconds: number;
  times: number[];
  losses: number[];
  loadSeconds: number;
  vectorStepsPerSecond: number;
  gflops: number;
  others: number;
}
export interface Limit { dtype: string; M: number; K: number; N: number; gflops: number; best_gflops: number; median_s: number }
export interface Profile { label: string; stepMs: number; ops: OpStat[]; totalMs: number }
export interface MemoryRow { dtype: string; activations: string; rows: number; steps: number; maxRssMiB: number; rssAfterLoadMiB: number; rssAfterReleaseMiB: number; seconds: number }
export interface LossRow { dtype: string; activations: string; count: number; steps: number; seconds: number; losses: number[]; relLosses: number[] }

export interface Results {
  machine?: MachineInfo;
  device?: string; // where melbo's models ran (absent in older results: the CPU)
  quick: boolean;
  shape: Shape;
  limits: Limit[];
  checkpoint?: { dir: string; gib: number; writeSeconds: number | null };
  python: PyRow[];
  xParity?: { maxAbsDiff: number; maxAbs: number };
  lossParity?: { steps: number; maxRelDiff: number };
  ortho: OrthoRow[];
  profiles: Profile[];
  generation?: {
    vectors: number; tokens: number; seconds: number; tokensPerSecond: number; calls: number[];
    promptSeconds: number; forwardPerToken: number; samplingPerToken: number;
  };
  memory: MemoryRow[];
  lossCompare: LossRow[];
  loadavgEnd?: number[];
  othersWholeRun?: number;
  totalSeconds?: number;
  quality?: QualityResults;
  kernels: NativeModelInfo[]; // the kernel each product takes, per weight dtype
  notes: string[];
}
