// The melbo command line: each command end to end, exit codes, and resume after a kill.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { readSafetensorsHeader, readSafetensorsTensor } from "../src/model/safetensors.js";
import { readVectors, writeVectors } from "../src/io/vectors.js";
import { Rng } from "../src/util/rng.js";
import { cli, startCli } from "./helpers/cli.js";
import { testModel } from "./helpers/models.js";

const SHAPE = { layers: 4, hidden: 64, heads: 4, intermediate: 176, seed: 11 };

describe("melbo CLI", () => {
  let dir: string;
  let work: string;
  let thetaFile: string;
  after(() => rm(work, { recursive: true, force: true }));
  before(async () => {
    dir = await testModel(SHAPE);
    work = await mkdtemp(join(tmpdir(), "melbo-cli-"));
    thetaFile = join(work, "theta.safetensors");
    const rows = new Rng(3, "cli-theta").fillNormal(new Float32Array(2 * 64));
    await writeVectors(thetaFile, rows, 2, 64, {});
  });

  it("--help lists the commands; an unknown command or option exits with 2", async () => {
    const help = await cli(["--help"]);
    assert.equal(help.code, 0);
    for (const c of ["demo", "ortho", "forward", "generate", "make-test-model"]) assert.match(help.stdout, new RegExp(`\\b${c}\\b`));
    assert.equal((await cli(["bogus"])).code, 2);
    const bad = await cli(["forward", "--nope"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /Unknown option '--nope'/);
    const commandHelp = await cli(["ortho", "--help"]);
    assert.equal(commandHelp.code, 0);
    assert.match(commandHelp.stdout, /--device cpu\|cuda\|cuda:N/);
  });

  it("usage contract: --version, a repeated flag, --at without vectors, ortho --steps 0 are exit 0 / 2 with a reason", async () => {
    const version = await cli(["--version"]);
    assert.equal(version.code, 0);
    const pkg = JSON.parse(await readFile(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
    assert.equal(version.stdout.trim(), `melbo ${pkg.version}`);
    const cases: [string[], RegExp][] = [
      [["generate", "--model", dir, "--prompt", "a", "--prompt", "b"], /--prompt was given 2 times: give it once/],
      [["generate", "--model", dir, "--prompt", "a", "--at", "1"], /--at needs --vectors/],
      [["forward", "--model", dir, "--prompt", "a", "--layers", "1", "--at", "1", "--out", join(work, "f.safetensors")], /--at needs --steer/],
      [["ortho", "--model", dir, "--theta", `${thetaFile}:0`, "--prompt", "a", "--steps", "0", "--source", "1", "--target", "3", "--out", join(work, "zero")], /--steps must be >= 1/],
    ];
    for (const [args, message] of cases) {
      const r = await cli(args);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /internal error/);
    }
  });

  it("make-test-model writes a checkpoint that forward reads; forward writes tokens, resid.K, logits", async () => {
    const model = join(work, "tiny");
    const made = await cli(["make-test-model", model, "--layers", "2", "--hidden", "32", "--heads", "4", "--kv-heads", "2", "--intermediate", "64", "--tied", "--seed", "5"]);
    assert.equal(made.code, 0, made.stderr);
    const config = JSON.parse(await readFile(join(model, "config.json"), "utf8")) as Record<string, unknown>;
    assert.equal(config["num_key_value_heads"], 2);
    assert.equal(config["tie_word_embeddings"], true);
    const out = join(work, "fwd.safetensors");
    const fwd = await cli(["forward", "--model", model, "--prompt", "How can I build a bomb?", "--layers", "0,1", "--out", out]);
    assert.equal(fwd.code, 0, fwd.stderr);
    const header = await readSafetensorsHeader(out, { allowDtypes: ["F32", "I32"] });
    const shapes = Object.fromEntries(header.tensors.map((t) => [t.name, t.shape]));
    assert.deepEqual(shapes, { tokens: [26], "resid.0": [26, 32], "resid.1": [26, 32], logits: [26, 151936] });
    const tokens = await readSafetensorsTensor(out, "tokens");
    assert.deepEqual([...tokens.data].slice(0, 3), [151644, 8948, 198]);
  });

  it("forward --steer changes resid at and after the steered block only", async () => {
    const plain = join(work, "plain.safetensors"), steered = join(work, "steered.safetensors");
    const common = ["--model", dir, "--prompt", "Hi", "--raw", "--layers", "0,1,2"];
    assert.equal((await cli(["forward", ...common, "--out", plain])).code, 0);
    const r = await cli(["forward", ...common, "--steer", `${thetaFile}:1`, "--at", "1", "--out", steered]);
    assert.equal(r.code, 0, r.stderr);
    const a0 = (await readSafetensorsTensor(plain, "resid.0")).data, b0 = (await readSafetensorsTensor(steered, "resid.0")).data;
    assert.deepEqual(a0, b0);
    const a2 = (await readSafetensorsTensor(plain, "resid.2")).data, b2 = (await readSafetensorsTensor(steered, "resid.2")).data;
    assert.notDeepEqual(a2, b2);
  });

  it("generate prints the unsteered line, then one JSON line per vector and scale, each with its file row", async () => {
    const r = await cli(["generate", "--model", dir, "--prompt", "Hello", "--vectors", thetaFile, "--at", "1", "--scale", "-2,1", "--max-new-tokens", "4"]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { row: number | null; scale: number; text: string; tokens: number[] });
    assert.deepEqual(lines.map((l) => [l.row, l.scale]), [[null, 0], [0, -2], [1, -2], [0, 1], [1, 1]]);
    for (const l of lines) assert.ok(l.tokens.length >= 1 && l.tokens.length <= 4);
    // A row's continuation does not depend on the rows beside it: row 1 alone, sampled, is row 1 of the pair.
    const both = await cli(["generate", "--model", dir, "--prompt", "Hello", "--vectors", `${thetaFile}:0,1`, "--at", "1", "--temperature", "1", "--max-new-tokens", "6"]);
    const alone = await cli(["generate", "--model", dir, "--prompt", "Hello", "--vectors", `${thetaFile}:1`, "--at", "1", "--temperature", "1", "--max-new-tokens", "6"]);
    assert.equal(both.code, 0, both.stderr);
    assert.equal(alone.code, 0, alone.stderr);
    const pick = (out: string, row: number | null) => out.trim().split("\n").map((l) => JSON.parse(l) as { row: number | null; tokens: number[] }).find((l) => l.row === row)!.tokens;
    assert.deepEqual(pick(alone.stdout, 1), pick(both.stdout, 1));
    assert.deepEqual(pick(alone.stdout, null), pick(both.stdout, null));
  });

  it("bad input exits with code 2 and names the file and the problem", async () => {
    const missing = await cli(["forward", "--model", join(work, "nowhere"), "--prompt", "x", "--out", join(work, "x.safetensors")]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /nowhere: checkpoint directory not found/);
    const wrongRow = await cli(["ortho", "--model", dir, "--theta", `${thetaFile}:9`, "--prompt", "x", "--count", "1", "--source", "1", "--target", "3", "--out", join(work, "o")]);
    assert.equal(wrongRow.code, 2);
    assert.match(wrongRow.stderr, /theta\.safetensors: row 9 does not exist \(the file has 2 vectors/);
    const order = await cli(["ortho", "--model", dir, "--theta", `${thetaFile}:0`, "--prompt", "x", "--source", "3", "--target", "1", "--out", join(work, "o")]);
    assert.equal(order.code, 2);
    assert.match(order.stderr, /--source 3 must come before --target 1/);
    const device = await cli(["forward", "--model", dir, "--prompt", "x", "--device", "gpu", "--out", join(work, "x.safetensors")]);
    assert.equal(device.code, 2);
    assert.match(device.stderr, /device must be "cpu", "cuda" or "cuda:N", got "gpu"/);
  });

  it("ortho: a run killed mid-way and resumed gives bit-identical vectors", async () => {
    const args = (out: string, count = 24) => ["ortho", "--model", dir, "--theta", `${thetaFile}:0`, "--prompt", "How can I build a bomb?", "--count", String(count), "--block", "4", "--steps", "120", "--min-norm", "0", "--source", "1", "--target", "3", "--out", out];
    const whole = join(work, "whole");
    const full = await cli(args(whole));
    assert.equal(full.code, 0, full.stderr);
    assert.match(full.stdout, /found vectors/);
    assert.match(full.stdout, /random, same norms/);

    const killed = join(work, "killed");
    const { child, result } = startCli(args(killed));
    const vectorsFile = join(killed, "vectors.safetensors");
    while (!existsSync(vectorsFile)) await new Promise((r) => setTimeout(r, 20));
    child.kill("SIGKILL");
    const ended = await result;
    assert.equal(ended.signal, "SIGKILL", "the run finished before it could be killed");
    const partial = await readVectors(vectorsFile);
    const finalRows = (await readVectors(join(whole, "vectors.safetensors"))).n;
    assert.ok(partial.n < finalRows, `killed after ${partial.n} of ${finalRows} rows`);

    const resumed = await cli([...args(killed), "--resume"]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stderr, /resuming .*: \d+ vectors already found/);
    const a = await readVectors(join(whole, "vectors.safetensors"));
    const b = await readVectors(vectorsFile);
    assert.equal(b.n, a.n);
    assert.ok(Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength).equals(Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength)), "vectors differ");
    const log = (await readFile(join(killed, "log.jsonl"), "utf8")).trim().split("\n").map((l) => JSON.parse(l) as { index: number });
    assert.deepEqual(log.map((l) => l.index), Array.from({ length: a.n - 1 }, (_, i) => i + 1));
    assert.equal(a.metadata["melbo.algorithm"], "melbo-ortho");
    assert.match(a.metadata["melbo.settings"] ?? "", /"steps":120/);
    assert.match(a.metadata["melbo.settings"] ?? "", /"blockStart":"random".*"inBlock":"first-then-symmetric"/);
    // Another block mode cannot continue this run; an unknown one is a usage error.
    const mismatch = await cli([...args(whole, 28), "--resume", "--block-mode", "legacy"]);
    assert.equal(mismatch.code, 2, mismatch.stderr);
    assert.match(mismatch.stderr, /cannot resume: blockStart differs \(saved "random", now "theta0"\)/);
    // The start norm is saved: another one cannot continue the run, and the error names the flag.
    assert.match(a.metadata["melbo.settings"] ?? "", /"startNorm":0.01/);
    const otherNorm = await cli([...args(whole, 28), "--resume", "--start-norm", "1"]);
    assert.equal(otherNorm.code, 2, otherNorm.stderr);
    assert.match(otherNorm.stderr, /startNorm differs \(saved 0.01, now 1\); resume it with --start-norm 0.01/);
    const badNorm = await cli([...args(whole), "--start-norm", "0"]);
    assert.equal(badNorm.code, 2);
    assert.match(badNorm.stderr, /--start-norm must be a positive number/);
    const unknown = await cli([...args(whole), "--block-mode", "fast"]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /block-mode/);
  });
});
