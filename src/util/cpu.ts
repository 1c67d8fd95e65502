// The CPU features that decide melbo's kernels (native/skinny.cpp: AVX2+FMA; oneDNN bf16:
// AVX-512 BW/VL/DQ; native/skinny_bf16.cpp: AVX-512 F/BW/BF16), read from /proc/cpuinfo. One
// reader, and one statement of which flags enable which kernel, for `melbo info`, the benchmark
// and the tests.

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

/** Which kernels the native side enables from these flags (it decides by the same rules). */
export interface KernelSupport {
  /** AVX2+FMA few-row kernels, f32 activations (skinnyAvailable, native/skinny.cpp). */
  skinny: boolean;
  /** bf16 matrix products in bf16 (oneDNN): bf16 weights then keep bf16 activations (cpuHasFastBf16, native/qwen2.cpp). */
  fastBf16: boolean;
  /** AVX-512 BF16 few-row kernels, bf16 activations (skinnyBf16Available, native/skinny_bf16.cpp). */
  bf16Kernels: boolean;
}

export function kernelSupport(flags: readonly string[] = kernelCpuFlags(), arch: string = process.arch): KernelSupport {
  const has = (...want: string[]) => want.every((f) => flags.includes(f));
  const x86 = arch === "x64" || arch === "ia32";
  return {
    skinny: arch === "x64" && has("avx2", "fma"),
    fastBf16: !x86 || has("avx512bw", "avx512vl", "avx512dq"),
    bf16Kernels: arch === "x64" && has("avx512f", "avx512bw", "avx512_bf16"),
  };
}
