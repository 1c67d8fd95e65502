// Runs the independent Python/torch Qwen2 reference (test/reference/qwen2_reference.py) for the
// parity tests. Inputs and outputs cross through temporary .safetensors files written and read
// with melbo's own safetensors code (the script parses them by hand, so both sides are checked).
//
// The reference needs Debian's python3-torch, which imports only under /usr/bin/python3 (another
// interpreter with torch and numpy can be named in MELBO_REFERENCE_PYTHON). When it is missing,
// checkPythonTorch() throws: parity tests must fail loudly, never skip silently.

import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { readSafetensorsTensor, writeSafetensors, type TensorToWrite } from "../../src/model/safetensors.js";

export const PYTHON = process.env["MELBO_REFERENCE_PYTHON"] || "/usr/bin/python3";

/** The script lives in the source tree; this module may run from dist/test/helpers or test/helpers. */
function findScript(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, "test", "reference", "qwen2_reference.py");
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error("test/reference/qwen2_reference.py not found above " + fileURLToPath(import.meta.url));
}

export const REFERENCE_SCRIPT = findScript();

function run(args: string[], timeoutMs = 600_000): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile(PYTHON, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      // execFile's message already holds the command and its stderr.
      if (err) reject(new Error(err.message.includes(stderr) ? err.message : `${err.message}\n${stderr}`));
      else resolvePromise(stdout);
    });
  });
}

let torchChecked: Promise<string> | undefined;

/** Resolves to the torch version; rejects with a message saying what to install. */
export function checkPythonTorch(): Promise<string> {
  torchChecked ??= run(["-c", "import torch, numpy; print(torch.__version__)"], 60_000).then(
    (out) => out.trim(),
    (e: unknown) => {
      throw new Error(
        `the Python parity reference needs torch and numpy under ${PYTHON} ` +
          `(Debian: apt-get install python3-torch python3-numpy; or set MELBO_REFERENCE_PYTHON): ${e instanceof Error ? e.message : String(e)}`,
      );
    },
  );
  return torchChecked;
}

export interface ReferenceOptions {
  /** Compute in float64 instead of float32 (outputs are float32 either way). */
  float64?: boolean;
  /** Torch threads; default: the script's default (all cores). */
  threads?: number;
}

/** Writes inputs, runs one task, reads the named outputs back. */
async function runTask(
  modelDir: string,
  task: "hidden" | "slice",
  inputs: TensorToWrite[],
  flags: string[],
  outputs: string[],
  opts: ReferenceOptions,
): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
  await checkPythonTorch();
  const tmp = await mkdtemp(join(tmpdir(), "melbo-pyref-"));
  try {
    const inPath = join(tmp, "in.safetensors");
    const outPath = join(tmp, "out.safetensors");
    await writeSafetensors(inPath, inputs);
    const args = [REFERENCE_SCRIPT, "--model", modelDir, "--inputs", inPath, "--out", outPath, "--task", task, ...flags];
    if (opts.float64) args.push("--float64");
    if (opts.threads !== undefined) args.push("--threads", String(opts.threads));
    await run(args);
    const result = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const name of outputs) {
      const t = await readSafetensorsTensor(outPath, name);
      if (!(t.data instanceof Float32Array)) throw new Error(`reference output ${name} is ${t.dtype}, expected F32`);
      result.set(name, { shape: t.shape, data: t.data });
    }
    return result;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

export interface ReferenceHidden {
  /** resid[k] = output of block k, [B*seq*d] row-major (B = 1 without steering). */
  resid: Float32Array[];
  /** [B*seq*vocab] */
  logits: Float32Array;
  vocab: number;
}

/**
 * Reference forward of one prompt. With `steer`, theta is added to resid(at) at every position,
 * so resid[at] includes theta (docs/algorithm.md §1: resid(s) += θ). theta may hold B vectors
 * ([B*d], with `rows: B`): the prompt then runs B times, row b steered by theta_b.
 */
export async function referenceHidden(
  modelDir: string,
  numLayers: number,
  tokens: Int32Array,
  opts: ReferenceOptions & { steer?: { theta: Float32Array; at: number; rows?: number } } = {},
): Promise<ReferenceHidden> {
  const inputs: TensorToWrite[] = [{ name: "tokens", dtype: "I32", shape: [tokens.length], data: tokens }];
  const flags: string[] = [];
  if (opts.steer) {
    const { theta, at, rows } = opts.steer;
    if (rows !== undefined && theta.length % rows !== 0) throw new Error(`theta length ${theta.length} is not a multiple of rows ${rows}`);
    const shape = rows === undefined ? [theta.length] : [rows, theta.length / rows];
    inputs.push({ name: "theta", dtype: "F32", shape, data: theta });
    flags.push("--source", String(at));
  }
  const names = [...Array.from({ length: numLayers }, (_, k) => `resid.${k}`), "logits"];
  const out = await runTask(modelDir, "hidden", inputs, flags, names, opts);
  const logits = out.get("logits")!;
  return {
    resid: names.slice(0, numLayers).map((n) => out.get(n)!.data),
    logits: logits.data,
    vocab: logits.shape[logits.shape.length - 1]!,
  };
}

export interface ReferenceSlice {
  /** [B] = ||mean_pos f_{s->t}(x + theta_b) - z0||_2 */
  loss: Float32Array;
  /** [B*d] = d loss_b / d theta_b */
  grad: Float32Array;
  /** [B*seq*d] = f_{s->t}(x + theta_b) */
  residT: Float32Array;
}

/** Reference slice map f_{s->t} on x + theta_b for each row b, with the MELBO-ortho loss and its gradient. */
export async function referenceSlice(
  modelDir: string,
  args: { x: Float32Array; thetas: Float32Array; z0: Float32Array; source: number; target: number },
  opts: ReferenceOptions = {},
): Promise<ReferenceSlice> {
  const d = args.z0.length;
  if (args.x.length % d !== 0 || args.thetas.length % d !== 0) throw new Error("x and thetas must be multiples of d");
  const inputs: TensorToWrite[] = [
    { name: "x", dtype: "F32", shape: [args.x.length / d, d], data: args.x },
    { name: "theta", dtype: "F32", shape: [args.thetas.length / d, d], data: args.thetas },
    { name: "z0", dtype: "F32", shape: [d], data: args.z0 },
  ];
  const flags = ["--source", String(args.source), "--target", String(args.target)];
  const out = await runTask(modelDir, "slice", inputs, flags, ["loss", "grad", "resid_t"], opts);
  return { loss: out.get("loss")!.data, grad: out.get("grad")!.data, residT: out.get("resid_t")!.data };
}
