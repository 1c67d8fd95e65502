// Child process of bench/run.ts: the peak memory of an ortho run, as a user would start it.
//   node dist/bench/memory-child.js DIR f32|bf16 ROWS STEPS
// Loads blocks 0..16 of the checkpoint in DIR, runs MELBO-ortho (one block of ROWS vectors,
// STEPS steps) with releaseEarlyBlocks (blocks 0..8 and the embedding are freed once resid(8)
// is computed, keeping 9..16), and prints the peak resident set size as JSON.

import { loadModel } from "../src/model/model.js";
import { ortho } from "../src/search/ortho.js";
import { Rng } from "../src/util/rng.js";
import { PROMPT_TOKENS } from "./lib.js";

const rssMiB = () => process.memoryUsage.rss() / 2 ** 20;

async function main(): Promise<void> {
  const [dir, dtype, rowsText, stepsText] = process.argv.slice(2);
  if (!dir || (dtype !== "f32" && dtype !== "bf16")) throw new Error("usage: memory-child.js DIR f32|bf16 ROWS STEPS");
  const rows = Number(rowsText ?? "16"), steps = Number(stepsText ?? "2");
  const t0 = performance.now();
  const model = await loadModel(dir, { dtype, blocks: { from: 0, to: 16 } });
  const rssAfterLoadMiB = rssMiB();
  const theta0 = new Rng(1, "bench-theta0").fillNormal(new Float32Array(model.hidden), 1, 0);
  let rssAfterReleaseMiB = 0;
  for await (const e of ortho(model, { tokens: PROMPT_TOKENS, theta0, count: rows, block: rows, steps, releaseEarlyBlocks: true, progressEvery: 1 })) {
    if (e.type === "start") rssAfterReleaseMiB = rssMiB();
  }
  const info = model.info();
  if (info.firstBlock !== 9) throw new Error(`expected blocks 9..16 after the release, got ${info.firstBlock}..${info.lastBlock}`);
  model.dispose();
  process.stdout.write(JSON.stringify({
    maxRssMiB: process.resourceUsage().maxRSS / 1024, // kilobytes on Linux
    rssAfterLoadMiB,
    rssAfterReleaseMiB,
    seconds: (performance.now() - t0) / 1000,
  }) + "\n");
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exitCode = 1;
});
