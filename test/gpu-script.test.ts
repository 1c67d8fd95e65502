// bench/gpu/run.sh, the GPU check in one script, proven here by its CPU dry run: the same steps
// (tests, parity, melbo's throughput rows, the faithful and batched PyTorch loops, the report)
// on the CPU build with a tiny model. On the GPU machine only the device and the shapes differ.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { tempDir } from "./helpers/errors.js";

const packageRoot = fileURLToPath(new URL("../..", import.meta.url)); // dist/test → the checkout

interface GpuResults {
  dryRun: boolean;
  steps: { step: string; rc: number }[];
  melbo: { dtype: string; rows: number; vectorStepsPerSecond: number | null }[];
  baselines: { mode: string; dtype: string; rows: number; vectorStepsPerSecond: number }[];
  targets: Record<string, unknown>;
}

function run(command: string, args: string[], env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: packageRoot, env: { ...process.env, ...env } });
    let output = "";
    child.stdout.on("data", (b: Buffer) => (output += b.toString()));
    child.stderr.on("data", (b: Buffer) => (output += b.toString()));
    child.on("close", (code) => resolve({ code, output }));
  });
}

describe("bench/gpu/run.sh --cpu-dry-run", () => {
  it("runs every step of the GPU check on the CPU build and writes the report", async () => {
    const out = await tempDir("melbo-gpu-out-");
    const work = await tempDir("melbo-gpu-work-");
    const r = await run("bash", ["bench/gpu/run.sh", "--cpu-dry-run"], { GPU_OUT: out, BENCH_DIR: work });
    assert.equal(r.code, 0, r.output.slice(-3000));
    const results = JSON.parse(await readFile(join(out, "RESULTS-gpu.json"), "utf8")) as GpuResults;
    assert.equal(results.dryRun, true);
    const failed = results.steps.filter((s) => s.rc !== 0).map((s) => s.step);
    assert.deepEqual(failed, [], `failed steps: ${failed.join(", ")}\n${r.output.slice(-3000)}`);
    for (const step of ["tests", "melbo-throughput", "torch-faithful-f32", "torch-batched-bf16-16"]) {
      assert.ok(results.steps.some((s) => s.step === step), `step ${step} did not run`);
    }
    // Every (dtype, B) row of melbo measured, and both PyTorch loops, in both dtypes.
    assert.deepEqual(results.melbo.map((m) => `${m.dtype}/${m.rows}`), ["f32/1", "f32/4", "f32/16", "bf16/1", "bf16/4", "bf16/16"]);
    assert.ok(results.melbo.every((m) => m.vectorStepsPerSecond !== null && m.vectorStepsPerSecond > 0));
    for (const dtype of ["f32", "bf16"]) {
      assert.ok(results.baselines.some((b) => b.mode === "faithful" && b.dtype === dtype && b.vectorStepsPerSecond > 0), `faithful ${dtype}`);
      assert.ok(results.baselines.some((b) => b.mode === "batched" && b.dtype === dtype && b.rows === 16 && b.vectorStepsPerSecond > 0), `batched ${dtype}`);
    }
    const md = await readFile(join(out, "RESULTS-gpu.md"), "utf8");
    assert.match(md, /^## GPU \(bench\/gpu\/run\.sh --cpu-dry-run/);
    assert.match(md, /≥ 5000 vector-steps\/s/);
    assert.match(md, /\(dry run\)/);
  });
});
