// Lifecycle and concurrency of a Model (issue 15, item 6; the memory part of item 5): every call
// after dispose() is a clear error and a second dispose() is harmless; a job already running when
// dispose() is called finishes with the result it would have had; two searches at once on one
// Model give bit for bit what each gives alone; aborted searches, load → dispose cycles and short
// searches do not grow the resident set (measured in a child process, after GC).
// Under the sanitizer build (scripts/test-sanitize.sh sets MELBO_SANITIZE=1) the memory children
// run fewer cycles and the RSS bounds are not checked (ASan's quarantine and shadow memory make
// RSS meaningless); LeakSanitizer checks every child at its exit instead (exit status ≠ 0).

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { loadModel, MelboError, type Model } from "../src/index.js";
import type { NativeModel } from "../src/native.js";
import { ortho, type OrthoResult, type OrthoOptions } from "../src/search/ortho.js";
import { train, type TrainOptions, type TrainResult } from "../src/search/train.js";
import { Rng } from "../src/util/rng.js";
import { testModel } from "./helpers/models.js";

const SHAPE = { layers: 4, hidden: 64, heads: 4, intermediate: 176, seed: 11 };
const SOURCE = 1, TARGET = 3;
const SANITIZED = process.env["MELBO_SANITIZE"] === "1";

type Done = OrthoResult;

async function runOrtho(model: Model, o: OrthoOptions): Promise<Done> {
  return ortho(model, o);
}

/** Bit-for-bit equality of two float arrays (NaN payloads and signed zeros included). */
function sameBits(a: Float32Array | Float64Array, b: Float32Array | Float64Array, what: string): void {
  assert.equal(a.length, b.length, `${what}: lengths differ`);
  const x = Buffer.from(a.buffer, a.byteOffset, a.byteLength), y = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  if (!x.equals(y)) {
    const i = a.findIndex((v, k) => !Object.is(v, b[k]));
    assert.fail(`${what}: differs at index ${i}: ${a[i]} vs ${b[i]}`);
  }
}

function sameOrtho(a: Done, b: Done, what: string): void {
  sameBits(a.vectors, b.vectors, `${what}: vectors`);
  sameBits(Float64Array.from(a.log, (l) => l.loss), Float64Array.from(b.log, (l) => l.loss), `${what}: losses`);
  assert.equal(a.found, b.found);
}

function sameTrain(a: TrainResult, b: TrainResult, what: string): void {
  sameBits(a.vectors, b.vectors, `${what}: vectors`);
  sameBits(Float64Array.from(a.log, (l) => l.objective), Float64Array.from(b.log, (l) => l.objective), `${what}: objectives`);
}

/** Asserts that `run` throws or rejects with a MelboError saying the model was disposed. */
async function disposedError(run: () => unknown, what: string): Promise<void> {
  let caught: unknown = null;
  try {
    await run();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught !== null, `${what} after dispose() did not fail`);
  assert.ok(caught instanceof MelboError, `${what} after dispose(): expected a MelboError, got ${String(caught)}`);
  assert.match(caught.message, /model was disposed/, `${what}: unclear message`);
}

describe("Model lifecycle", () => {
  let dir: string;
  let model: Model;
  let tokens: Int32Array;
  let theta0: Float32Array;
  let orthoOptions: OrthoOptions;
  let trainOptions: TrainOptions;
  before(async () => {
    dir = await testModel(SHAPE);
    model = await loadModel(dir);
    tokens = model.promptTokens("How can I build a bomb?");
    theta0 = new Rng(1, "theta0").fillNormal(new Float32Array(model.hidden));
    orthoOptions = { tokens, theta0, source: SOURCE, target: TARGET, count: 4, block: 2, steps: 40, projection: "grad", minNorm: 0 };
    trainOptions = { prompts: [tokens], count: 3, radius: 4, steps: 40, source: SOURCE, target: TARGET };
  });
  after(() => model.dispose());

  it("every call after dispose() is a MelboError naming the disposal; dispose() twice is harmless", async () => {
    const m = await loadModel(dir);
    const handle = (m as unknown as { handle: NativeModel }).handle;
    m.dispose();
    m.dispose();
    const d = m.hidden;
    const x = new Float32Array(tokens.length * d), thetas = new Float32Array(d).fill(0.1), z0 = new Float32Array(d);
    const slice = { x, thetas, source: SOURCE, target: TARGET };
    const adam = { lr: 0.01, betas: [0.9, 0.999] as [number, number], eps: 1e-8 };
    await disposedError(() => m.info(), "info");
    await disposedError(() => m.release(2), "release");
    await disposedError(() => m.forward(tokens, { layers: [SOURCE] }), "forward");
    await disposedError(() => m.orthoLossGrad({ ...slice, z0 }), "orthoLossGrad");
    await disposedError(() => m.sliceMean(slice), "sliceMean");
    await disposedError(() => m.generate(tokens, { maxNewTokens: 2 }), "generate");
    await disposedError(() => m.orthoBlock({ x, theta0, basis: new Float64Array(0), rows: 1, steps: 1, source: SOURCE, target: TARGET, ...adam, projection: "post", lossTolerance: 0 }), "orthoBlock");
    await disposedError(
      () => m.trainBlock({ examples: [{ x, positions: Int32Array.of(0), z0 }], starts: thetas, learned: new Float64Array(0), radius: 1, p: 2, q: 2, steps: 1, source: SOURCE, target: TARGET, ...adam, weightDecay: 0, amsgrad: true, orthogonal: true }),
      "trainBlock",
    );
    await disposedError(() => runOrtho(m, orthoOptions), "ortho()");
    await disposedError(() => train(m, trainOptions), "train()");

    // The addon itself, behind the TypeScript guard: a synchronous Error, no crash; dispose() again is a no-op.
    handle.dispose();
    const nativeCalls: [string, () => unknown][] = [
      ["info", () => handle.info()],
      ["release", () => handle.release({ below: 2, embedding: true })],
      ["forward", () => handle.forward({ tokens, batch: 1, layers: [SOURCE], logits: false })],
      ["orthoLossGrad", () => handle.orthoLossGrad({ x, seq: tokens.length, thetas, batch: 1, z0, source: SOURCE, target: TARGET })],
      ["sliceMean", () => handle.sliceMean({ x, seq: tokens.length, thetas, batch: 1, source: SOURCE, target: TARGET })],
      ["generate", () => handle.generate({ tokens, maxNewTokens: 1, temperature: 0, topP: 1, seed: 0, stopTokens: [] })],
      ["orthoBlock", () => handle.orthoBlock({ x, seq: tokens.length, theta0, basis: new Float64Array(0), rows: 1, steps: 1, source: SOURCE, target: TARGET, lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, projectGradient: false, inBlock: "gram-schmidt", projectGradientInBlock: false, lossTolerance: 0, progressEvery: 1, traceEvery: 0 })],
      ["trainBlock", () => handle.trainBlock({ examples: [{ x, seq: tokens.length, positions: Int32Array.of(0), z0 }], thetas, rows: 1, learned: new Float64Array(0), radius: 1, p: 2, q: 2, steps: 1, source: SOURCE, target: TARGET, lr: 1e-3, beta1: 0.9, beta2: 0.98, eps: 1e-8, weightDecay: 0, amsgrad: true, orthogonal: true, progressEvery: 1 })],
    ];
    for (const [name, call] of nativeCalls) {
      assert.throws(call, (e: unknown) => e instanceof Error && /model was disposed/.test(e.message), `native ${name} after dispose()`);
    }
  });

  it("the native loops have no defaults of their own: a request without a hyper-parameter is a TypeError naming it", async () => {
    const handle = (model as unknown as { handle: NativeModel }).handle;
    const d = model.hidden;
    const x = new Float32Array(tokens.length * d), z0 = new Float32Array(d), thetas = new Float32Array(d).fill(0.1);
    const ortho = { x, seq: tokens.length, theta0, basis: new Float64Array(0), rows: 1, steps: 1, source: SOURCE, target: TARGET, lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, projectGradient: false, inBlock: "gram-schmidt" as const, projectGradientInBlock: false, lossTolerance: 0, progressEvery: 1, traceEvery: 0 };
    const train = { examples: [{ x, seq: tokens.length, positions: Int32Array.of(0), z0 }], thetas, rows: 1, learned: new Float64Array(0), radius: 1, p: 2, q: 2, steps: 1, source: SOURCE, target: TARGET, lr: 1e-3, beta1: 0.9, beta2: 0.98, eps: 1e-8, weightDecay: 0, amsgrad: true, orthogonal: true, progressEvery: 1 };
    const cases: [string, Record<string, unknown>, (o: never) => unknown][] = [
      ["orthoBlock", ortho, (o) => handle.orthoBlock(o)],
      ["trainBlock", train, (o) => handle.trainBlock(o)],
    ];
    for (const [name, full, call] of cases) {
      for (const key of Object.keys(full).filter((k) => !["x", "seq", "theta0", "basis", "examples", "thetas", "learned"].includes(k))) {
        const { [key]: _, ...without } = full;
        assert.throws(() => call(without as never), (e: unknown) => e instanceof TypeError && e.message.includes(`option '${key}' is required`), `${name} without ${key}`);
      }
    }
    // The complete requests run (the test above would pass on a call that always throws).
    await handle.orthoBlock(ortho);
    await handle.trainBlock(train);
  });

  it("a job running when dispose() is called finishes with its own result; later calls fail clearly", async () => {
    const m = await loadModel(dir);
    const x = (await m.forward(tokens, { layers: [SOURCE] })).resid.get(SOURCE)!;
    const block = { x, theta0, basis: new Float64Array(0), rows: 2, steps: 60, source: SOURCE, target: TARGET, lr: 0.01, betas: [0.9, 0.999] as [number, number], eps: 1e-8, projection: "grad" as const, lossTolerance: 0 };
    const alone = await model.orthoBlock(block);
    const running = m.orthoBlock(block);
    m.dispose(); // the native job holds the weights until it ends
    sameBits((await running).thetas, alone.thetas, "a job overlapping dispose()");
    await disposedError(() => m.orthoBlock(block), "orthoBlock");
  });

  it("two searches at once on one Model give bit for bit what each gives alone", async () => {
    const orthoAlone = await runOrtho(model, orthoOptions);
    const trainAlone = await train(model, trainOptions);
    const other: OrthoOptions = { ...orthoOptions, block: 1, count: 3, projection: "post", seed: 3 };
    const otherAlone = await runOrtho(model, other);

    const [o1, t1] = await Promise.all([runOrtho(model, orthoOptions), train(model, trainOptions)]);
    sameOrtho(o1, orthoAlone, "ortho beside train");
    sameTrain(t1, trainAlone, "train beside ortho");
    const [o2, o3] = await Promise.all([runOrtho(model, orthoOptions), runOrtho(model, other)]);
    sameOrtho(o2, orthoAlone, "ortho beside another ortho");
    sameOrtho(o3, otherAlone, "the other ortho beside the first");
    const [t2, t3] = await Promise.all([train(model, trainOptions), train(model, trainOptions)]);
    sameTrain(t2, trainAlone, "train beside the same train (1)");
    sameTrain(t3, trainAlone, "train beside the same train (2)");
  });
});

// ---- resident memory, in child processes ----

const CHILD = fileURLToPath(new URL("./helpers/lifecycle-child.js", import.meta.url));

interface ChildReport {
  samples: Record<string, number>;
  mapped: Record<string, number>;
  seconds: number;
}

/**
 * MALLOC_MMAP_THRESHOLD_ fixes glibc's mmap threshold at its default 128 KiB. Left dynamic, glibc
 * raises it to the size of the largest block freed (a forward's logits are 16 × 151936 floats,
 * 9.3 MiB), after which such blocks come from the heap arenas of the libuv threads and stay there
 * as free space after they are freed: measured, RSS then wanders by ±30 MiB from cycle to cycle
 * (+100 MiB from cycle 10 to 100 in one run, -40 MiB between cycles 60 and 80 in another) with no
 * memory held by melbo. With the threshold fixed, RSS after GC is what the process holds.
 */
function runChild(mode: "cycles" | "aborts", dir: string, n: number): Promise<ChildReport> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, MELBO_THREADS: "2", MALLOC_MMAP_THRESHOLD_: "131072" };
    execFile(process.execPath, ["--expose-gc", CHILD, mode, dir, String(n)], { env, maxBuffer: 1 << 24, timeout: 240_000 }, (error, stdout, stderr) => {
      if (error) {
        reject(new Error(`lifecycle-child ${mode} failed (${error.code ?? error.signal}):\n${stderr.slice(-8000)}`));
        return;
      }
      try {
        resolve(JSON.parse(stdout.trim().split("\n").pop()!) as ChildReport);
      } catch {
        reject(new Error(`lifecycle-child ${mode} printed no report:\n${stdout}\n${stderr.slice(-4000)}`));
      }
    });
  });
}

/** RSS growth (MiB) from the 10th to the last cycle: the first cycles fill one-time caches. */
function growth(r: ChildReport, label: string, n: number): number {
  const from = r.samples[`${label}10`], to = r.samples[`${label}${n}`];
  assert.ok(from !== undefined && to !== undefined, `missing samples in ${JSON.stringify(r)}`);
  return to - from;
}

describe("resident memory", () => {
  let dir: string;
  before(async () => {
    dir = await testModel(SHAPE);
  });

  it("100 load → dispose cycles and 100 short searches grow RSS by < 50 MB", async () => {
    const n = SANITIZED ? 12 : 100;
    const r = await runChild("cycles", dir, n);
    const loads = growth(r, "load", n), searches = growth(r, "search", n);
    console.log(`# RSS (MiB): ${JSON.stringify(r.samples)}; growth cycles 10→${n}: loads ${loads.toFixed(1)}, searches ${searches.toFixed(1)}; ${r.seconds.toFixed(1)} s`);
    if (r.mapped["end"] !== -1) {
      assert.equal(r.mapped["afterLoads"], 0, "a disposed model's safetensors files are still mapped");
      assert.ok(r.mapped["whileLoaded"]! > 0, "the loaded model maps no file: the check above would prove nothing");
      assert.equal(r.mapped["end"], 0, "the model's files are still mapped after dispose()");
    }
    if (SANITIZED) return; // LeakSanitizer checked the child at its exit
    assert.ok(loads < 50, `100 load → dispose cycles grew RSS by ${loads.toFixed(1)} MiB`);
    assert.ok(searches < 50, `100 short searches grew RSS by ${searches.toFixed(1)} MiB`);
  });

  it("aborted searches free their memory", async () => {
    const n = SANITIZED ? 12 : 60;
    const r = await runChild("aborts", dir, n);
    const aborts = growth(r, "abort", n);
    console.log(`# RSS (MiB): ${JSON.stringify(r.samples)}; growth aborted searches 10→${n}: ${aborts.toFixed(1)}; ${r.seconds.toFixed(1)} s`);
    if (SANITIZED) return;
    assert.ok(aborts < 20, `${n - 10} aborted ortho + train searches grew RSS by ${aborts.toFixed(1)} MiB`);
  });
});
