// The CPU features that decide melbo's kernels (native/skinny.cpp: AVX2+FMA; oneDNN bf16:
// AVX-512 BW/VL/DQ), read from /proc/cpuinfo. One reader for `melbo info`, the benchmark and
// the tests.

import { readFileSync } from "node:fs";

/** The kernel-relevant flags this CPU has, in a fixed order (empty where /proc/cpuinfo is missing). */
export const KERNEL_FLAGS = ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16", "amx_bf16", "amx_tile"] as const;

export function kernelCpuFlags(): string[] {
  let text: string;
  try {
    text = readFileSync("/proc/cpuinfo", "utf8");
  } catch {
    return []; // not Linux
  }
  const all = new Set((/^flags\s*:\s*(.*)$/m.exec(text)?.[1] ?? "").split(/\s+/));
  return KERNEL_FLAGS.filter((f) => all.has(f));
}
