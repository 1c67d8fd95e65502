// Faults a long run meets: SIGKILL at random moments (each followed by --resume must give the
// uninterrupted result bit for bit), Ctrl-C (saves and exits 130), and a disk that fills up
// during a checkpoint (a clear error, the previous checkpoint intact).

import assert from "node:assert/strict";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { readVectors, writeVectors } from "../src/io/vectors.js";
import { Rng } from "../src/util/rng.js";
import { CLI, cli, startCli, type CliResult } from "./helpers/cli.js";
import { tempDir } from "./helpers/errors.js";
import { testModel } from "./helpers/models.js";

const SHAPE = { layers: 4, hidden: 64, heads: 4, intermediate: 176, seed: 11 };
const KILLS = 20;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** performance.now() at the child's first output on stderr (or at its exit, if it writes none). */
function firstOutput(child: ChildProcess): Promise<number> {
  return new Promise((resolve) => {
    child.stderr!.once("data", () => resolve(performance.now()));
    child.once("exit", () => resolve(performance.now()));
  });
}

/** The run's outcome: the vectors' bytes, the metadata and the log, without wall-clock times. */
async function outcome(dir: string): Promise<{ vectors: Buffer; log: string }> {
  const log = (await readFile(join(dir, "log.jsonl"), "utf8")).replace(/"seconds":[0-9.e+-]+/g, "");
  const set = await readVectors(join(dir, "vectors.safetensors"));
  // The log's checksum covers its times; everything else in the metadata is decided by the run.
  const { ["melbo.logChecksum"]: _times, ...metadata } = set.metadata;
  const data = Buffer.from(set.data.buffer, set.data.byteOffset, set.data.byteLength);
  return { vectors: Buffer.concat([data, Buffer.from(JSON.stringify(metadata))]), log };
}

describe("faults", () => {
  let work: string, model: string, theta: string;
  const args = (out: string, count = 40, steps = 40) => [
    "ortho", "--model", model, "--theta", `${theta}:0`, "--prompt", "How can I build a bomb?", "--count", String(count),
    "--block", "2", "--steps", String(steps), "--min-norm", "0", "--source", "1", "--target", "3", "--out", out,
  ];
  before(async () => {
    work = await tempDir("melbo-faults-");
    model = await testModel(SHAPE);
    theta = join(work, "theta.safetensors");
    await writeVectors(theta, new Rng(1, "theta0").fillNormal(new Float32Array(SHAPE.hidden)), 1, SHAPE.hidden, {});
  });

  it(`SIGKILL at ${KILLS} random moments, each followed by --resume, gives the uninterrupted result bit for bit`, async () => {
    // The reference run, timed from its first output on stderr (the first progress line, once
    // the model is loaded and the first steps ran) to its end: the compute the kills cut into.
    const whole = join(work, "whole");
    const reference = startCli(args(whole));
    const t0 = performance.now();
    const output = await firstOutput(reference.child);
    const full = await reference.result;
    assert.equal(full.code, 0, full.stderr);
    const startupMs = output - t0, computeMs = performance.now() - output;
    const expected = await outcome(whole);

    // Kill moments, seeded: every third one while the process starts up (before its first
    // output), the others at a random point within a share of the compute after it, so that the
    // 20 kills together cut into about two thirds of the run: mid-block and, now and then, in a
    // checkpoint write. Timed from each process's own output, so a busy machine cannot shift them.
    const rng = new Rng(2026, "kill-moments");
    const killed = join(work, "killed");
    let landed = 0, rowsBefore = 0, progressed = 0;
    for (let k = 0; k < KILLS; k++) {
      const { child, result } = startCli([...args(killed), "--resume"]);
      if (k % 3 === 0) {
        await sleep(startupMs * rng.uniform());
      } else {
        await firstOutput(child);
        await sleep(rng.uniform() * ((2 * computeMs) / KILLS));
      }
      child.kill("SIGKILL");
      const ended: CliResult = await result;
      if (ended.signal === "SIGKILL") landed++;
      else assert.equal(ended.code, 0, `run ${k} ended by itself but failed: ${ended.stderr}`);
      const file = join(killed, "vectors.safetensors");
      const rows = existsSync(file) ? (await readVectors(file)).n : 0;
      if (rows > rowsBefore) progressed++;
      rowsBefore = rows;
    }
    // Most kills must land mid-run for the test to mean something.
    assert.ok(landed >= KILLS * 0.75, `only ${landed} of ${KILLS} kills landed before the run ended (start-up ${startupMs.toFixed(0)} ms, compute ${computeMs.toFixed(0)} ms)`);
    assert.ok(progressed >= 3, `the run made progress between only ${progressed} kills`);
    const last = await cli([...args(killed), "--resume"]);
    assert.equal(last.code, 0, last.stderr);
    const got = await outcome(killed);
    assert.equal(got.log, expected.log, "logs differ");
    assert.ok(got.vectors.equals(expected.vectors), "vectors files differ");
    const left = (await readdir(killed)).sort();
    assert.deepEqual(left, ["log.jsonl", "vectors.safetensors"], "temporary files of killed writes are cleaned up on resume");
    process.stdout.write(`# ${landed}/${KILLS} kills landed mid-run, progress between ${progressed}; start-up ${startupMs.toFixed(0)} ms, compute ${computeMs.toFixed(0)} ms\n`);
  });

  it("Ctrl-C (SIGINT) saves the finished blocks and exits with 130; --resume continues", async () => {
    const out = join(work, "interrupted");
    const { child, result } = startCli(args(out, 400));
    const file = join(out, "vectors.safetensors");
    while (!existsSync(file)) await sleep(20);
    child.kill("SIGINT");
    const ended = await result;
    assert.equal(ended.code, 130, ended.stderr);
    assert.match(ended.stderr, /interrupted: the last finished block is saved; continue with --resume/);
    assert.doesNotMatch(ended.stderr, /^\s+at /m, "no stack trace");
    const resumed = await cli([...args(out, 6), "--resume"]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stderr, /resuming .*: \d+ vectors already found/);
  });

  describe("a disk that fills up during a checkpoint", () => {
    // A real full disk: a small tmpfs (needs root and a kernel that allows the mount). Else the
    // same failure from a file-size limit (`ulimit -f`: writes past it fail with EFBIG; node
    // ignores SIGXFSZ). Else the test is skipped with the reason.
    let mount: string | null = null;
    let reason = "";
    after(() => {
      if (mount !== null) execFileSync("umount", [mount]);
    });
    before(async () => {
      const dir = join(work, "tmpfs");
      await mkdir(dir, { recursive: true });
      try {
        if (process.env["MELBO_TEST_NO_TMPFS"]) throw new Error("MELBO_TEST_NO_TMPFS is set");
        execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir], { stdio: "pipe" });
        mount = dir;
      } catch (e) {
        reason = `cannot mount a tmpfs (${String((e as { stderr?: Buffer }).stderr ?? (e as Error).message).trim()})`;
      }
    });

    it("ends with a clear error, the previous checkpoint intact, and resumes once there is room", async (t) => {
      const out = mount !== null ? join(mount, "run") : join(work, "limited");
      await mkdir(out, { recursive: true });
      const first = await cli([...args(out, 4), "--resume"]);
      assert.equal(first.code, 0, first.stderr);
      const before = await outcome(out);

      let failed: CliResult;
      if (mount !== null) {
        // Fill the disk, then ask for more vectors: the next checkpoint cannot be written.
        const filler = join(mount, "filler");
        await writeFile(filler, Buffer.alloc(1 << 20)).catch(() => undefined);
        failed = await cli([...args(out, 40), "--resume"]);
        await rm(filler, { force: true });
      } else {
        t.diagnostic(`${reason}: using a file-size limit instead`);
        const limitKiB = Math.ceil((await readFile(join(out, "vectors.safetensors"))).length / 1024);
        failed = await new Promise<CliResult>((resolve) => {
          const child = spawn("bash", ["-c", `ulimit -f ${limitKiB} && exec "$0" "$@"`, process.execPath, CLI, ...args(out, 40), "--resume"], {
            stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, MELBO_THREADS: "2" },
          });
          let stdout = "", stderr = "";
          child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
          child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
          child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
        });
      }
      assert.equal(failed.code, 2, failed.stderr);
      assert.match(failed.stderr, /cannot write: .*(ENOSPC|no space left|EFBIG|too large)/i);
      assert.doesNotMatch(failed.stderr, /internal error|^\s+at /m);
      const after = await outcome(out);
      assert.ok(after.vectors.equals(before.vectors), "the previous checkpoint was changed");
      // The log is written before the vectors (the commit point): it may hold lines of the block
      // that could not be saved; a resume drops them. Its saved lines are unchanged.
      assert.ok(after.log.startsWith(before.log), "the previous log lines were changed");
      assert.deepEqual((await readdir(out)).sort(), ["log.jsonl", "vectors.safetensors"], "no temporary file is left behind");
      // With room again, the run continues to the result of an uninterrupted run.
      const resumed = await cli([...args(out, 6), "--resume"]);
      assert.equal(resumed.code, 0, resumed.stderr);
      const whole = join(work, "whole-6");
      assert.equal((await cli(args(whole, 6))).code, 0);
      const a = await outcome(whole), b = await outcome(out);
      assert.equal(b.log, a.log);
      assert.ok(b.vectors.equals(a.vectors), "vectors differ from an uninterrupted run");
    });
  });
});
