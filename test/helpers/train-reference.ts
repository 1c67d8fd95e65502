// Runs the independent MELBO training reference (test/reference/melbo_train_reference.py: the
// Python Qwen2 reference and torch.optim.AdamW itself). Like python-reference.ts, it fails
// loudly when torch is missing under /usr/bin/python3 (or MELBO_REFERENCE_PYTHON).

import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { readSafetensorsTensor, writeSafetensors, type TensorToWrite } from "../../src/model/safetensors.js";
import { PYTHON, REFERENCE_SCRIPT, checkPythonTorch } from "./python-reference.js";

const SCRIPT = join(dirname(REFERENCE_SCRIPT), "melbo_train_reference.py");

export interface ReferenceTrainInput {
  prompts: { tokens: Int32Array; positions: Int32Array }[];
  starts: Float32Array; // [V * d]
  learned?: Float32Array; // [m * d], with orthogonal
  d: number;
  source: number;
  target: number;
  radius: number;
  p: number;
  q: number;
  steps: number;
  orthogonal?: boolean;
  float64?: boolean;
}

export interface ReferenceTrainOutput {
  thetas: Float32Array; // [V * d]
  trace: Float32Array; // [steps * V]
  objectives: Float32Array; // [V]
}

export async function referenceTrain(modelDir: string, o: ReferenceTrainInput): Promise<ReferenceTrainOutput> {
  await checkPythonTorch();
  const tmp = await mkdtemp(join(tmpdir(), "melbo-trainref-"));
  try {
    const inputs: TensorToWrite[] = [{ name: "start", dtype: "F32", shape: [o.starts.length / o.d, o.d], data: o.starts }];
    o.prompts.forEach((p, i) => {
      inputs.push({ name: `tokens.${i}`, dtype: "I32", shape: [p.tokens.length], data: p.tokens });
      inputs.push({ name: `positions.${i}`, dtype: "I32", shape: [p.positions.length], data: p.positions });
    });
    if (o.learned && o.learned.length > 0) inputs.push({ name: "learned", dtype: "F32", shape: [o.learned.length / o.d, o.d], data: o.learned });
    const inPath = join(tmp, "in.safetensors");
    const outPath = join(tmp, "out.safetensors");
    await writeSafetensors(inPath, inputs);
    const args = [
      SCRIPT, "--model", modelDir, "--inputs", inPath, "--out", outPath,
      "--source", String(o.source), "--target", String(o.target), "--radius", String(o.radius),
      "--p", String(o.p), "--q", String(o.q), "--steps", String(o.steps),
      ...(o.orthogonal ? ["--orthogonal"] : []), ...(o.float64 ? ["--float64"] : []),
    ];
    await new Promise<void>((resolve, reject) => {
      execFile(PYTHON, args, { timeout: 300_000, maxBuffer: 16 << 20 }, (err, _stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve()));
    });
    const read = async (name: string) => {
      const t = await readSafetensorsTensor(outPath, name);
      if (!(t.data instanceof Float32Array)) throw new Error(`reference output ${name} is ${t.dtype}, expected F32`);
      return t.data;
    };
    return { thetas: await read("thetas"), trace: await read("trace"), objectives: await read("objectives") };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}
