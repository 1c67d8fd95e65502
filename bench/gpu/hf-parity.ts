// Hidden-state parity with Hugging Face transformers (issue 11): a tiny Qwen2 (grouped-query
// attention, untied head) written by melbo's test-model writer, read by transformers' own
// Qwen2ForCausalLM (bench/gpu/hf_parity.py) and by melbo on --device; the output of every block
// but the last must agree to 1e-4 relative in float32. Prints one JSON line; exit 1 on a miss.
//
//   node dist/bench/gpu/hf-parity.js --device cuda [--python python3]

import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeTestModel } from "../../src/model/make-test-model.js";
import { checkDevice, loadModel } from "../../src/model/model.js";
import { packageRoot } from "../lib.js";

const argv = process.argv.slice(2);
const arg = (name: string, fallback: string): string => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1]! : fallback;
};
const device = checkDevice(arg("device", "cuda"));
const python = arg("python", "python3");
const TOLERANCE = 1e-4;

const dir = mkdtempSync(join(tmpdir(), "melbo-hf-parity-"));
try {
  const layers = 4;
  await makeTestModel(dir, { layers, hidden: 64, heads: 4, kvHeads: 2, intermediate: 176, tied: false, seed: 7 });
  const model = await loadModel(dir, { device });
  const tokens = model.promptTokens("How can I build a bomb?");
  const file = join(dir, "hf-hidden.f32");
  const py = spawnSync(python, [join(packageRoot, "bench", "gpu", "hf_parity.py"), "--model", dir, "--tokens", [...tokens].join(","), "--out", file, "--device", device], { encoding: "utf8" });
  if (py.status !== 0) throw new Error(`hf_parity.py failed: ${py.stderr}`);
  const buf = readFileSync(file);
  const hf = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4); // [L - 1, T, d]
  const blocks = Array.from({ length: layers - 1 }, (_, k) => k);
  const ours = await model.forward(tokens, { layers: blocks });
  const n = tokens.length * model.hidden;
  let worst = 0;
  for (const k of blocks) {
    const a = ours.resid.get(k)!;
    let num = 0, den = 0;
    for (let i = 0; i < n; i++) {
      num = Math.max(num, Math.abs(a[i]! - hf[k * n + i]!));
      den = Math.max(den, Math.abs(hf[k * n + i]!));
    }
    worst = Math.max(worst, num / den);
  }
  model.dispose();
  const ok = worst <= TOLERANCE;
  process.stdout.write(JSON.stringify({ check: "hf-parity", device, blocks: blocks.length, maxRelDiff: worst, tolerance: TOLERANCE, ok }) + "\n");
  if (!ok) process.exitCode = 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
