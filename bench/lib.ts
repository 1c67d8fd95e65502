// Helpers of the benchmark (bench/run.ts): machine facts, the Python baseline as a child
// process, FLOP counts, statistics, per-op profiles and Markdown tables.

import { spawn } from "node:child_process";
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { availableParallelism, cpus, loadavg, totalmem } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { TestModelOptions } from "../src/model/make-test-model.js";
import { kernelCpuFlags } from "../src/util/cpu.js";
import { Rng } from "../src/util/rng.js";

export const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const PYTHON = process.env["BENCH_PYTHON"] ?? "/usr/bin/python3";
export const BASELINE_PY = join(packageRoot, "bench", "python", "baseline.py");

/** The prompt of the original experiments (docs/algorithm.md §1): Qwen chat template, 26 tokens. */
export const PROMPT_TOKENS = Int32Array.from([
  151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 872, 198, 4340, 646, 358, 1936, 264, 12764, 30,
  151645, 198, 151644, 77091, 198,
]);

/** Qwen1.5-1.8B-Chat's shape (the original work's model; its config.json on the Hugging Face hub, Qwen/Qwen1.5-1.8B-Chat). */
export const QWEN15_1P8B: TestModelOptions = {
  layers: 24, hidden: 2048, heads: 16, kvHeads: 16, intermediate: 5504, tied: false, vocab: 151936,
  ropeTheta: 1e6, rmsNormEps: 1e-6, dtype: "BF16", seed: 1,
};

/** A benchmark's θ0: randn from the "bench-theta0" stream of `seed`, scaled to `norm`. */
export function benchTheta0(d: number, seed: number, norm: number): Float32Array {
  const t = new Rng(seed, "bench-theta0").fillNormal(new Float32Array(d), 1, 0);
  let n = 0;
  for (const v of t) n += v * v;
  n = Math.sqrt(n);
  return t.map((v) => (v * norm) / n);
}

/** θ0 / ‖θ0‖ in float64: the basis of the first block of a search. */
export function basisOf(theta0: Float32Array): Float64Array {
  let n = 0;
  for (const v of theta0) n += v * v;
  n = Math.sqrt(n);
  return Float64Array.from(theta0, (v) => v / n);
}

export interface Shape {
  hidden: number;
  intermediate: number;
  heads: number;
  kvHeads: number;
}

/**
 * Matrix-product FLOPs (2 per multiply-add) of one vector-step of the slice map over `blocks`
 * blocks and T tokens: forward, plus (with `backward`) the input gradients only (weights are
 * frozen, as in melbo and in the baseline). Attention products included; elementwise ops not.
 */
export function sliceFlops(s: Shape, T: number, blocks: number, backward: boolean): number {
  const hd = s.hidden / s.heads;
  const qd = s.heads * hd, kd = s.kvHeads * hd;
  const linear = 2 * T * (s.hidden * qd + 2 * s.hidden * kd + qd * s.hidden + 3 * s.hidden * s.intermediate);
  const attention = 2 * 2 * T * T * qd; // scores and probs @ values
  const forward = blocks * (linear + attention);
  return backward ? forward + blocks * (linear + 2 * attention) : forward;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

// ------------------------------------------------------------------ machine
export interface MachineInfo {
  date: string;
  cpuModel: string;
  cores: number;
  threads: number;
  memoryGiB: number;
  cpuFlags: string[]; // the ones that matter for GEMM speed
  blas: string;
  libtorch: string;
  pythonTorch: { torch: string; cpu_capability: string; blas_info: string; mkldnn: boolean } | null;
  node: string;
  loadavgStart: number[];
}

/** The BLAS library libtorch resolves at run time (Debian: an alternatives symlink). */
function blasLibrary(): string {
  for (const dir of ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"]) {
    const link = join(dir, "libblas.so.3");
    if (!existsSync(link)) continue;
    const real = realpathSync(link);
    const kind = /openblas-openmp/.test(real) ? "OpenBLAS (OpenMP)" : /openblas-pthread/.test(real) ? "OpenBLAS (pthreads)"
      : /openblas/.test(real) ? "OpenBLAS" : /blis/.test(real) ? "BLIS" : /mkl/.test(real) ? "MKL" : /atlas/.test(real) ? "ATLAS"
      : "reference BLAS (slow)";
    return `${kind}: ${real}`;
  }
  return "unknown (libtorch's own, e.g. MKL in a PyTorch wheel)";
}

export function machineInfo(libtorch: string, threads: number, pythonTorch: MachineInfo["pythonTorch"]): MachineInfo {
  let cpuModel = cpus()[0]?.model ?? "unknown";
  try {
    const text = readFileSync("/proc/cpuinfo", "utf8");
    cpuModel = /^model name\s*:\s*(.*)$/m.exec(text)?.[1] ?? cpuModel;
    const family = /^cpu family\s*:\s*(\d+)$/m.exec(text)?.[1], model = /^model\s*:\s*(\d+)$/m.exec(text)?.[1];
    if (family && model) cpuModel += ` (family ${family}, model ${model})`;
  } catch {
    // not Linux
  }
  return {
    date: new Date().toISOString(),
    cpuModel,
    cores: availableParallelism(),
    threads,
    memoryGiB: totalmem() / 2 ** 30,
    cpuFlags: kernelCpuFlags(),
    blas: blasLibrary(),
    libtorch,
    pythonTorch,
    node: process.version,
    loadavgStart: loadavg(),
  };
}

// ------------------------------------------------------------------ noise
/** CPU time of the whole machine and of this process (with its waited-for children), in ticks. */
export interface CpuSnapshot {
  busy: number;
  total: number;
  own: number;
}

export function cpuSnapshot(): CpuSnapshot | null {
  try {
    const cpu = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = cpu.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (cpu[3] ?? 0) + (cpu[4] ?? 0);
    const stat = readFileSync("/proc/self/stat", "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number); // fields 3.. of proc(5)
    const own = fields[11]! + fields[12]! + fields[13]! + fields[14]!; // utime stime cutime cstime
    return { busy: total - idle, total, own };
  } catch {
    return null; // not Linux
  }
}

/** Share of all CPU time between two snapshots that other processes used (0 = a quiet machine). */
export function othersShare(a: CpuSnapshot | null, b: CpuSnapshot | null): number {
  if (!a || !b || b.total <= a.total) return NaN;
  return Math.max(0, (b.busy - a.busy - (b.own - a.own)) / (b.total - a.total));
}

// ------------------------------------------------------------------ child processes
/** Runs a command, echoing its stderr with a prefix; resolves with stdout. */
export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; prefix?: string; quiet?: boolean } = {}): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => (out += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => {
      err += s;
      if (!opts.quiet) for (const line of s.split("\n")) if (line.trim()) process.stderr.write(`${opts.prefix ?? "  | "}${line}\n`);
    });
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) resolvePromise(out);
      else reject(new Error(`${cmd} ${args.join(" ")} exited with ${code}: ${err.slice(-2000)}`));
    });
  });
}

/** The last line of stdout parsed as JSON. */
export function lastJson<T>(stdout: string): T {
  const lines = stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]!) as T;
}

export async function python<T>(args: string[], threads: number): Promise<T> {
  return lastJson<T>(await run(PYTHON, [BASELINE_PY, ...args, "--threads", String(threads)], { prefix: "  py| " }));
}

// ------------------------------------------------------------------ per-op profile
export interface OpStat {
  name: string;
  calls: number;
  selfMs: number;
  share: number; // of the total self time
}

interface TraceEvent {
  name: string;
  ph?: string;
  ts: number;
  dur: number;
  tid?: number | string;
}

/**
 * Self time per op name from a chrome-trace file written by libtorch's legacy profiler
 * (MELBO_PROFILE): events nest by time on each thread; an op's self time is its duration
 * minus that of the ops directly inside it. `perSteps` divides totals by that many steps.
 */
export function profileFromTrace(file: string, perSteps: number): { ops: OpStat[]; totalMs: number } {
  const raw = JSON.parse(readFileSync(file, "utf8")) as TraceEvent[] | { traceEvents: TraceEvent[] };
  const events = (Array.isArray(raw) ? raw : raw.traceEvents).filter((e) => (e.ph ?? "X") === "X" && typeof e.dur === "number");
  const byThread = new Map<string, TraceEvent[]>();
  for (const e of events) {
    const key = String(e.tid ?? 0);
    const list = byThread.get(key) ?? [];
    list.push(e);
    byThread.set(key, list);
  }
  const self = new Map<string, { calls: number; us: number }>();
  for (const list of byThread.values()) {
    list.sort((a, b) => a.ts - b.ts || b.dur - a.dur);
    const stack: { end: number; name: string; child: number; dur: number }[] = [];
    const close = (upTo: number) => {
      while (stack.length > 0 && stack[stack.length - 1]!.end <= upTo) {
        const top = stack.pop()!;
        const s = self.get(top.name) ?? { calls: 0, us: 0 };
        s.calls++;
        s.us += Math.max(0, top.dur - top.child);
        self.set(top.name, s);
      }
    };
    for (const e of list) {
      close(e.ts);
      if (stack.length > 0) stack[stack.length - 1]!.child += e.dur;
      stack.push({ end: e.ts + e.dur, name: e.name, child: 0, dur: e.dur });
    }
    close(Infinity);
  }
  const total = [...self.values()].reduce((a, s) => a + s.us, 0);
  const ops = [...self.entries()]
    .map(([name, s]) => ({ name, calls: s.calls / perSteps, selfMs: s.us / 1000 / perSteps, share: total > 0 ? s.us / total : 0 }))
    .sort((a, b) => b.selfMs - a.selfMs);
  return { ops, totalMs: total / 1000 / perSteps };
}

// ------------------------------------------------------------------ formatting
export function table(header: string[], rows: (string | number)[][]): string {
  const cells = rows.map((r) => r.map((c) => String(c)));
  return [
    `| ${header.join(" | ")} |`,
    `|${header.map((_, i) => (i === 0 ? "---" : "---:")).join("|")}|`,
    ...cells.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");
}

export function fmt(x: number, digits = 2): string {
  if (!Number.isFinite(x)) return "n/a";
  if (Math.abs(x) >= 100) return x.toFixed(0);
  if (Math.abs(x) >= 10) return x.toFixed(Math.max(0, digits - 1));
  return x.toFixed(digits);
}

export function pct(x: number): string {
  return Number.isFinite(x) ? `${(100 * x).toFixed(x < 0.1 ? 1 : 0)} %` : "n/a";
}
