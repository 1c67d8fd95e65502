// Child process of bench/run.ts: the peak memory of an ortho run, as a user would start it.
//   node dist/bench/memory-child.js DIR f32|bf16 ROWS STEPS
// Loads blocks 0..16 of the checkpoint in DIR, runs MELBO-ortho (one block of ROWS vectors,
// STEPS steps) with releaseEarlyBlocks (blocks 0..8 and the embedding are freed once resid(8)
// is computed, keeping 9..16), and prints the peak resident set size (VmHWM) as JSON.

import { readFileSync } from "node:fs";
import { loadModel } from "../src/model/model.js";
import { ortho } from "../src/search/ortho.js";
import { Rng } from "../src/util/rng.js";
import { PROMPT_TOKENS } from "./lib.js";

const rssMiB = () => process.memoryUsage.rss() / 2 ** 20;

/**
 * Peak resident set of this process in MiB: VmHWM of /proc/self/status. Not
 * process.resourceUsage().maxRSS: Linux carries the parent's peak across fork + exec into the
 * child's ru_maxrss, so a child of the (large) benchmark process would report the parent's peak.
 */
function peakMiB(): number {
  try {
    const kb = /^VmHWM:\s*(\d+)\s*kB$/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1];
    if (kb) return Number(kb) / 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS / 1024;
}

async function main(): Promise<void> {
  const [dir, dtype, rowsText, stepsText] = process.argv.slice(2);
  if (!dir || (dtype !== "f32" && dtype !== "bf16")) throw new Error("usage: memory-child.js DIR f32|bf16 ROWS STEPS");
  const rows = Number(rowsText ?? "16"), steps = Number(stepsText ?? "2");
  const t0 = performance.now();
  const model = await loadModel(dir, { dtype, blocks: { from: 0, to: 16 } });
  const rssAfterLoadMiB = rssMiB();
  const theta0 = new Rng(1, "bench-theta0").fillNormal(new Float32Array(model.hidden), 1, 0);
  let rssAfterReleaseMiB = 0;
  await ortho(model, {
    tokens: PROMPT_TOKENS, theta0, count: rows, block: rows, steps, releaseEarlyBlocks: true, progressEvery: 1,
    onResume: () => (rssAfterReleaseMiB = rssMiB()), // called once the early blocks are released, before the first block
  });
  const info = model.info();
  if (info.firstBlock !== 9) throw new Error(`expected blocks 9..16 after the release, got ${info.firstBlock}..${info.lastBlock}`);
  model.dispose();
  process.stdout.write(JSON.stringify({
    maxRssMiB: peakMiB(),
    rssAfterLoadMiB,
    rssAfterReleaseMiB,
    seconds: (performance.now() - t0) / 1000,
  }) + "\n");
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exitCode = 1;
});
