// Output folders: checked before any compute, never replaced unless told (--resume / --force),
// and --force deletes only the files melbo writes.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { MelboError } from "../src/errors.js";
import { prepareOutputFile, prepareOutputFolder } from "../src/io/output-folder.js";
import { writeVectors } from "../src/io/vectors.js";
import { Rng } from "../src/util/rng.js";
import { cli } from "./helpers/cli.js";
import { testModel } from "./helpers/models.js";

describe("output folders", () => {
  let work: string;
  before(async () => {
    work = await mkdtemp(join(tmpdir(), "melbo-out-"));
  });
  after(() => rm(work, { recursive: true, force: true }));

  it("an output file: refused when it names a folder or its folder is missing or a file", async () => {
    const refused = async (file: string, pattern: RegExp) => {
      await assert.rejects(prepareOutputFile(file, "--out"), (e: unknown) => e instanceof MelboError && pattern.test(e.message));
    };
    await refused(work, /--out names a folder, not a file/);
    await refused(join(work, "missing", "x.safetensors"), /missing: the folder of --out does not exist/);
    const file = join(work, "plain");
    await writeFile(file, "x");
    await refused(join(file, "x.safetensors"), /plain: the folder of --out is a file/);
    const ok = join(work, "ok.safetensors");
    await prepareOutputFile(ok, "--out");
    assert.ok(!existsSync(ok), "nothing is written yet");
    assert.ok(!(await readdir(work)).some((n) => n.includes(".tmp-")), "the write probe is removed");
  });

  it("creates a missing folder (and its parents) and accepts an empty one", async () => {
    const fresh = join(work, "a", "b", "run");
    await prepareOutputFolder(fresh, { kind: "run", flag: "--out" });
    assert.ok((await stat(fresh)).isDirectory());
    assert.deepEqual(await readdir(fresh), [], "the write probe is removed");
    await prepareOutputFolder(fresh, { kind: "run", flag: "--out" });
  });

  it("refuses a file, a path under a file, and a folder that holds something, naming the flag to use", async () => {
    const file = join(work, "plain.txt");
    await writeFile(file, "x");
    await assert.rejects(prepareOutputFolder(file, { kind: "run", flag: "--out" }), (e: unknown) =>
      e instanceof MelboError && e.message.includes(file) && /--out names a file, not a folder/.test(e.message));
    await assert.rejects(prepareOutputFolder(join(file, "sub"), { kind: "run", flag: "--out" }), /cannot create --out/);

    const run = join(work, "run");
    await mkdir(run);
    await writeFile(join(run, "vectors.safetensors"), "old");
    await assert.rejects(prepareOutputFolder(run, { kind: "run", flag: "--out" }),
      /--out is not empty \(vectors.safetensors\): --force to replace it, or choose another --out/);
    await assert.rejects(prepareOutputFolder(run, { kind: "run", flag: "--out", canResume: true }),
      /--out is not empty \(vectors.safetensors\): --resume to continue the run in it, --force to replace it, or choose another --out/);
    await assert.rejects(prepareOutputFolder(run, { kind: "model", flag: "DIR" }), /DIR is not empty \(vectors.safetensors\): --force to replace it, or choose another DIR/);
    assert.equal(await readFile(join(run, "vectors.safetensors"), "utf8"), "old", "nothing was touched");
    await prepareOutputFolder(run, { kind: "run", flag: "--out", resume: true });
    assert.equal(await readFile(join(run, "vectors.safetensors"), "utf8"), "old", "--resume keeps the run");
  });

  it("--force deletes melbo's own files and interrupted temporaries, nothing else", async () => {
    const run = join(work, "forced");
    await mkdir(run);
    for (const name of ["vectors.safetensors", "log.jsonl", "log.jsonl.tmp-123-4", "notes.txt", "config.json"]) await writeFile(join(run, name), "x");
    await prepareOutputFolder(run, { kind: "run", flag: "--out", force: true });
    assert.deepEqual((await readdir(run)).sort(), ["config.json", "notes.txt"]);
    await prepareOutputFolder(run, { kind: "model", flag: "DIR", force: true });
    assert.deepEqual(await readdir(run), ["notes.txt"]);
  });

  describe("commands check their output before loading anything", () => {
    let model: string;
    let theta: string;
    before(async () => {
      model = await testModel({ layers: 3, hidden: 64, heads: 4, intermediate: 176, seed: 21 });
      theta = join(work, "theta.safetensors");
      await writeVectors(theta, new Rng(1, "out-theta").fillNormal(new Float32Array(64)), 1, 64, {});
    });
    const ortho = (out: string, ...extra: string[]) =>
      ["ortho", "--model", model, "--theta", `${theta}:0`, "--prompt", "Hi", "--count", "2", "--steps", "3", "--source", "0", "--target", "2", "--out", out, ...extra];

    it("ortho: an existing run is kept unless --resume or --force; --out on a file fails before the model loads", async () => {
      const out = join(work, "ortho-run");
      const first = await cli(ortho(out));
      assert.equal(first.code, 0, first.stderr);
      const before = await readFile(join(out, "vectors.safetensors"));
      const again = await cli(ortho(out));
      assert.equal(again.code, 2, again.stderr);
      assert.match(again.stderr, /--out is not empty .*--resume to continue the run in it, --force to replace it/);
      assert.ok(before.equals(await readFile(join(out, "vectors.safetensors"))), "the run was changed");
      const both = await cli(ortho(out, "--resume", "--force"));
      assert.equal(both.code, 2);
      assert.match(both.stderr, /give one of them/);
      const forced = await cli(ortho(out, "--force", "--block", "2"));
      assert.equal(forced.code, 0, forced.stderr);
      assert.match(forced.stdout, /found vectors/);

      const file = join(work, "not-a-folder");
      await writeFile(file, "x");
      // The model folder does not exist: the output check must come first to be the error shown.
      const early = await cli(["ortho", "--model", join(work, "no-model"), "--theta", `${theta}:0`, "--prompt", "Hi", "--out", file]);
      assert.equal(early.code, 2);
      assert.match(early.stderr, /--out names a file, not a folder/);
      assert.doesNotMatch(early.stderr, /at .*\.js:\d+/, "no stack trace");
    });

    it("demo: the default folder is never reused (melbo-demo, melbo-demo-2); a non-empty --out needs --force, which keeps other files", async () => {
      const tiny = ["--count", "2", "--block", "2", "--steps", "2", "--train-steps", "2", "--candidates", "1", "--new-tokens", "2"];
      const cwd = join(work, "demo-cwd");
      await mkdir(cwd);
      for (const expected of ["melbo-demo", "melbo-demo-2"]) {
        const r = await cli(["demo", ...tiny], { cwd });
        assert.equal(r.code, 0, r.stderr);
        assert.ok(existsSync(join(cwd, expected, "ortho", "vectors.safetensors")), expected);
        for (const file of ["eval/eval.json", "eval/generations.jsonl", "report.html"]) assert.ok(existsSync(join(cwd, expected, file)), `${expected}/${file}`);
        assert.match(r.stdout, new RegExp(`report: .*${expected}/report\\.html`));
      }
      const out = join(work, "demo-out");
      await mkdir(out);
      await writeFile(join(out, "keep.txt"), "mine");
      const refused = await cli(["demo", "--out", out, ...tiny]);
      assert.equal(refused.code, 2);
      assert.match(refused.stderr, /--out is not empty \(keep.txt\): --force to replace it/);
      const forced = await cli(["demo", "--out", out, "--force", ...tiny]);
      assert.equal(forced.code, 0, forced.stderr);
      assert.equal(await readFile(join(out, "keep.txt"), "utf8"), "mine");
      assert.ok(existsSync(join(out, "melbo", "vectors.safetensors")));
    });

    it("make-test-model and train refuse a folder that holds something unless --force", async () => {
      const dir = join(work, "made");
      assert.equal((await cli(["make-test-model", dir, "--layers", "2"])).code, 0);
      const again = await cli(["make-test-model", dir, "--layers", "2"]);
      assert.equal(again.code, 2);
      assert.match(again.stderr, /DIR is not empty .*--force to replace it/);
      const forced = await cli(["make-test-model", dir, "--layers", "2", "--force"]);
      assert.equal(forced.code, 0, forced.stderr);
      assert.ok(existsSync(join(dir, "config.json")));

      const file = join(work, "train-file");
      await writeFile(file, "x");
      const train = await cli(["train", "--model", model, "--prompt", "Hi", "--count", "1", "--radius", "4", "--source", "0", "--target", "2", "--out", file]);
      assert.equal(train.code, 2, train.stderr);
      assert.match(train.stderr, /--out names a file, not a folder/);
    });
  });
});
