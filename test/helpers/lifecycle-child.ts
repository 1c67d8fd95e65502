// Child process of test/lifecycle.test.ts: resident memory over many loads, searches and aborted
// searches, measured in a fresh process so that the test runner's own heap does not blur it.
//   node --expose-gc dist/test/helpers/lifecycle-child.js cycles|aborts DIR N
// cycles: N load → dispose cycles of the native model (each with one forward pass that reads
// every weight, the lm_head included), then N short searches (ortho + train) on one model;
// aborts: N ortho and N train searches, each aborted at its first progress event.
// Prints one JSON line: {samples: {label: rss MiB}, mapped: {label: mappings of DIR's files},
// seconds}. RSS is read after two full GCs
// (with a turn of the event loop between them, so that Node-API finalizers of dropped models and
// result arrays have run).

import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { readCheckpoint } from "../../src/model/checkpoint.js";
import { loadModel, tensorSources, type Model } from "../../src/model/model.js";
import { native, type NativeLoadOptions } from "../../src/native.js";
import { ortho } from "../../src/search/ortho.js";
import { train } from "../../src/search/train.js";
import { Rng } from "../../src/util/rng.js";

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with node --expose-gc");

async function settledRssMiB(): Promise<number> {
  for (let i = 0; i < 2; i++) {
    gc!();
    await new Promise((resolve) => setImmediate(resolve));
  }
  return process.memoryUsage.rss() / 2 ** 20;
}

/** How many memory mappings of files inside `dir` this process holds (Linux; -1 elsewhere). */
function mappingsOf(dir: string): number {
  try {
    const prefix = resolve(dir) + "/";
    return readFileSync("/proc/self/maps", "utf8").split("\n").filter((l) => l.includes(prefix)).length;
  } catch {
    return -1;
  }
}

// Small searches on the test model (4 blocks): source 1 → target 3.
const SOURCE = 1, TARGET = 3;

async function shortOrtho(model: Model, tokens: Int32Array, theta0: Float32Array, signal?: AbortSignal, controller?: AbortController): Promise<void> {
  await ortho(model, {
    tokens, theta0, count: 4, block: 4, steps: controller ? 1000 : 4, source: SOURCE, target: TARGET, progressEvery: 1,
    ...(signal ? { signal } : {}),
    ...(controller ? { onProgress: () => controller.abort() } : {}),
  });
}

async function shortTrain(model: Model, tokens: Int32Array, signal?: AbortSignal, controller?: AbortController): Promise<void> {
  await train(model, {
    prompts: [tokens], count: 2, radius: 4, steps: controller ? 1000 : 4, source: SOURCE, target: TARGET, independent: true, progressEvery: 1,
    ...(signal ? { signal } : {}),
    ...(controller ? { onProgress: () => controller.abort() } : {}),
  });
}

async function aborted(run: (signal: AbortSignal, controller: AbortController) => Promise<void>): Promise<void> {
  const controller = new AbortController();
  try {
    await run(controller.signal, controller);
  } catch (e) {
    if (!controller.signal.aborted) throw e;
    return;
  }
  throw new Error("the search was not aborted");
}

/**
 * What Model.load hands the addon for the whole model. The load cycles call the addon directly:
 * Model.load also parses the tokenizer (seconds per load for the Qwen vocabulary, pure JS), which
 * would make 100 cycles far too slow, and the memory in question is the native model's.
 */
async function nativeLoadOptions(dir: string): Promise<NativeLoadOptions> {
  const checkpoint = await readCheckpoint(dir);
  const c = checkpoint.config;
  return {
    config: c, dtype: "f32", device: "cpu", firstBlock: 0, lastBlock: c.numLayers - 1, embedding: true, head: true,
    tensors: tensorSources(checkpoint, { from: 0, to: c.numLayers - 1, embedding: true, head: true }),
  };
}

async function main(): Promise<void> {
  const [mode, dir, nText] = process.argv.slice(2);
  const n = Number(nText);
  if ((mode !== "cycles" && mode !== "aborts") || !dir || !(n >= 10)) throw new Error("usage: lifecycle-child.js cycles|aborts DIR N (N >= 10)");
  const started = performance.now();
  const samples: Record<string, number> = { start: await settledRssMiB() };
  const mapped: Record<string, number> = {};
  // The first cycles allocate one-time state (libtorch's and OpenMP's thread pools, glibc arenas
  // of the libuv threads, the tokenizer's caches): growth is measured from cycle 10 on.
  const mark = async (label: string, i: number) => {
    if (i === 10 || i === n) samples[`${label}${i}`] = await settledRssMiB();
  };
  if (mode === "cycles") {
    const options = await nativeLoadOptions(dir);
    const tokens = Int32Array.from({ length: 16 }, (_, i) => 100 + 7 * i);
    for (let i = 1; i <= n; i++) {
      const handle = await native().loadModel(options);
      const out = await handle.forward({ tokens, batch: 1, layers: [options.config.numLayers - 1], logits: true });
      if (out.logits?.length !== tokens.length * options.config.vocabSize) throw new Error("forward gave no logits");
      handle.dispose();
      await mark("load", i);
    }
    mapped["afterLoads"] = mappingsOf(dir);
  }
  const model = await loadModel(dir);
  const tokens = model.promptTokens("How can I build a bomb?");
  const theta0 = new Rng(1, "lifecycle-theta0").fillNormal(new Float32Array(model.hidden));
  for (let i = 1; i <= n; i++) {
    if (mode === "cycles") {
      await shortOrtho(model, tokens, theta0);
      await shortTrain(model, tokens);
    } else {
      await aborted((signal, controller) => shortOrtho(model, tokens, theta0, signal, controller));
      await aborted((signal, controller) => shortTrain(model, tokens, signal, controller));
    }
    await mark(mode === "cycles" ? "search" : "abort", i);
  }
  mapped["whileLoaded"] = mappingsOf(dir);
  model.dispose();
  samples["end"] = await settledRssMiB();
  mapped["end"] = mappingsOf(dir);
  process.stdout.write(JSON.stringify({ samples, mapped, seconds: (performance.now() - started) / 1000 }) + "\n");
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exitCode = 1;
});
