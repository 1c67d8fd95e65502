// melbo batch, local backend (docs/batch.md): the job file's errors, jobs in dependency order on
// several workers with the results of the same commands run one by one, a re-run that skips what is
// finished, a crashed job that takes no other with it and resumes bit for bit, a killed batch that
// continues where it stopped, and --status.

import assert from "node:assert/strict";
import { readFile, rm, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { MelboError } from "../src/errors.js";
import { parseBatch, type Batch } from "../src/batch/job-file.js";
import { jobArgs } from "../src/batch/job-args.js";
import { planSlots } from "../src/batch/local.js";
import { cli, startCli } from "./helpers/cli.js";
import { tempDir } from "./helpers/errors.js";
import { testModel } from "./helpers/models.js";
import { PROMPT, runResult, studyFile, waitFor as waitForMs } from "./helpers/batch.js";

// Generous: the waits are for a tiny model's first checkpoint, but a loaded CI machine can be 20× slower.
const waitFor = (what: string, test: () => Promise<boolean> | boolean): Promise<void> => waitForMs(what, test, 900_000);

describe("melbo batch: the job file", () => {
  const file = "/jobs/study.json";
  const parse = (doc: unknown) => parseBatch(doc, file);
  const fails = (doc: unknown, ...fragments: string[]) => {
    assert.throws(() => parse(doc), (e: unknown) => {
      assert.ok(e instanceof MelboError, String(e));
      assert.ok(e.message.startsWith(file + ": "), e.message);
      for (const f of fragments) assert.ok(e.message.includes(f), `${JSON.stringify(f)} not in: ${e.message}`);
      return true;
    });
  };
  const train = { id: "t", command: "train", settings: { model: "m", prompt: ["p"], count: 2, radius: 4 } };

  it("resolves paths from the file's folder, merges defaults, adds dependencies of theta and vectors", () => {
    const b: Batch = parse({
      defaults: { model: "models/x", steps: 7 },
      jobs: [
        { id: "t", command: "train", out: "runs/t", settings: { prompt: ["p", "q"], count: 2, radius: 4 } },
        { id: "o", command: "ortho", theta: { job: "t", row: 1 }, settings: { prompt: "p", raw: true, lr: -0.5 } },
        { id: "e", command: "eval", vectors: { job: "o", rows: "1-3" }, after: ["t"], settings: {} },
        { id: "f", command: "ortho", theta: "vec.safetensors:2", settings: { prompt: "p" } },
      ],
    });
    assert.equal(b.folder, "/jobs/study.batch");
    assert.equal(b.jobs[0]!.out, "/jobs/runs/t");
    assert.equal(b.jobs[1]!.out, "/jobs/study.batch/runs/o");
    assert.deepEqual(b.jobs[2]!.after, ["t", "o"]);
    assert.deepEqual(b.jobs[3]!.after, []);
    assert.deepEqual(jobArgs(b, b.jobs[1]!), [
      "ortho", "--model=/jobs/models/x", "--steps=7", "--prompt=p", "--raw", "--lr=-0.5",
      "--theta=/jobs/runs/t/vectors.safetensors:1", "--out=/jobs/study.batch/runs/o", "--resume",
    ]);
    assert.deepEqual(jobArgs(b, b.jobs[0]!).slice(0, 5), ["train", "--model=/jobs/models/x", "--steps=7", "--prompt=p", "--prompt=q"]);
    assert.ok(jobArgs(b, b.jobs[2]!).includes("--vectors=/jobs/study.batch/runs/o/vectors.safetensors:1-3"));
    assert.ok(jobArgs(b, b.jobs[3]!).includes("--theta=/jobs/vec.safetensors:2"));
  });

  it("names the file, the job and the problem for every mistake", () => {
    fails([], "the top level");
    fails({ jobs: [] }, '"jobs"', "non-empty");
    fails({ jobs: [train], extra: 1 }, '"extra"', "unknown key");
    fails({ jobs: [{ ...train, id: "-x" }] }, '"id"');
    fails({ jobs: [train, train] }, 'job "t" (jobs[1])', "used twice");
    fails({ jobs: [{ ...train, command: "demo" }] }, '"command" must be one of train, ortho, eval');
    fails({ jobs: [{ ...train, settings: { ...train.settings, cont: 3 } }] }, 'settings."cont" is not a flag of melbo train');
    fails({ jobs: [{ ...train, settings: { ...train.settings, out: "x" } }] }, 'settings."out" is set by the job\'s "out"');
    fails({ jobs: [{ ...train, settings: { ...train.settings, device: "cuda" } }] }, "--devices");
    fails({ jobs: [{ ...train, settings: { ...train.settings, count: true } }] }, 'settings."count"', "string or a number");
    fails({ jobs: [{ ...train, settings: { model: "m", prompt: ["p"], count: 2 } }] }, 'needs settings."radius"');
    fails({ jobs: [{ ...train, settings: { ...train.settings, independent: "yes" } }] }, "is a switch");
    fails({ jobs: [train, { id: "o", command: "ortho", settings: { model: "m", prompt: "p" } }] }, 'job "o"', 'needs "theta"');
    fails({ jobs: [train, { id: "o", command: "ortho", theta: { job: "t" }, settings: { model: "m", prompt: "p" } }] }, '"row" must be');
    fails({ jobs: [train, { id: "o", command: "ortho", theta: { job: "x", row: 0 }, settings: { model: "m", prompt: "p" } }] }, 'depends on "x", which is not a job');
    fails({ jobs: [{ ...train, theta: "f:0" }] }, '"theta" is for ortho jobs');
    fails({ jobs: [{ ...train, after: ["t"] }] }, "depends on itself");
    fails({ jobs: [{ ...train, after: ["u"] }, { ...train, id: "u", out: "u", after: ["t"] }] }, "cycle", "t → u → t");
    fails({ jobs: [train, { ...train, id: "u" , out: "x" }, { ...train, id: "v", out: "x" }] }, "two jobs cannot write one folder");
    fails({ jobs: [train, { id: "e", command: "eval", vectors: { job: "e2" }, settings: { model: "m" } }, { id: "e2", command: "eval", vectors: "v", settings: { model: "m" } }] }, "an eval job: it writes no vectors");
    fails({ defaults: { count: 2, nope: 1 }, jobs: [train] }, 'defaults."nope"');
  });

  it("splits the cores between CPU workers, one worker per GPU", () => {
    assert.deepEqual(planSlots(["cpu"], 2, undefined, 8), [{ device: "cpu", threads: 4 }, { device: "cpu", threads: 4 }]);
    assert.deepEqual(planSlots(["cuda:0", "cuda:1"], undefined, 3, 8), [{ device: "cuda:0", threads: 3 }, { device: "cuda:1", threads: 3 }]);
    assert.throws(() => planSlots(["cpu", "cuda:0"], undefined, undefined, 8), /mixes cpu/);
  });

  it("the CLI reports a bad job file with exit 2 and the file's name", async () => {
    const dir = await tempDir();
    const f = join(dir, "bad.json");
    await writeFile(f, "{ jobs: [] }");
    const r = await cli(["batch", f]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /bad\.json: is not valid JSON/);
    const missing = await cli(["batch", join(dir, "none.json")]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /none\.json: cannot read the job file/);
  });
});

describe("melbo batch: local backend", () => {
  let model: string;
  let work: string;
  /** The study's results, each job run on its own as plain CLI commands. */
  let single: Record<string, string>;

  before(async () => {
    model = await testModel({ layers: 4, hidden: 64, heads: 4, intermediate: 176, seed: 21 });
    work = await tempDir("melbo-batch-");
    const out = (id: string) => join(work, "single", id);
    single = { melbo: out("melbo"), code: out("code"), alien: out("alien"), "code-eval": out("code-eval") };
    const common = ["--model", model, "--source", "0", "--target", "2"];
    const ortho = ["--prompt", PROMPT, "--count", "4", "--block", "1", "--steps", "20", "--projection", "grad"];
    for (const args of [
      ["train", ...common, "--prompt", PROMPT, "--count", "2", "--radius", "4", "--steps", "15", "--lr", "0.01", "--out", single.melbo!],
      ["ortho", ...common, ...ortho, "--theta", `${single.melbo}/vectors.safetensors:0`, "--out", single.code!],
      ["ortho", ...common, ...ortho, "--seed", "3", "--theta", `${single.melbo}/vectors.safetensors:1`, "--out", single.alien!],
    ]) {
      const r = await cli(args);
      assert.equal(r.code, 0, r.stderr);
    }
  });

  it("runs the jobs in dependency order on two workers, as the single commands would; a re-run skips them all; --status", async () => {
    const file = join(work, "study.json");
    await writeFile(file, JSON.stringify(studyFile(model)));
    const r = await cli(["batch", file, "--workers", "2", "--job-threads", "1"]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const order = r.stdout.split("\n").filter((l) => / (started|done)/.test(l)).map((l) => l.split(":")[0] + " " + (l.includes("started") ? "started" : "done"));
    assert.ok(order.indexOf("melbo done") < order.indexOf("code started"), order.join(", "));
    assert.ok(order.indexOf("code done") < order.indexOf("code-eval started"), order.join(", "));
    for (const id of ["melbo", "code", "alien"]) {
      assert.deepEqual(await runResult(join(work, "study.batch", "runs", id)), await runResult(single[id]!), `${id} differs from its single run`);
    }
    const evalDoc = JSON.parse(await readFile(join(work, "study.batch", "runs", "code-eval", "eval.json"), "utf8")) as { complete: boolean };
    assert.equal(evalDoc.complete, true);

    const summary = JSON.parse(await readFile(join(work, "study.batch", "summary.json"), "utf8")) as {
      jobs: { id: string; state: string; vectors: number; rBelow1: number | null; medianR: number | null; wallSeconds: number; device: string }[];
    };
    assert.deepEqual(summary.jobs.map((j) => [j.id, j.state]), [["melbo", "complete"], ["code", "complete"], ["alien", "complete"], ["code-eval", "complete"]]);
    const code = summary.jobs.find((j) => j.id === "code")!;
    const codeLog = (await runResult(single.code!)).log as { relLoss: number }[];
    assert.equal(code.vectors, 4);
    assert.equal(code.rBelow1, codeLog.filter((l) => l.relLoss < 1).length);
    assert.ok(code.medianR !== null && code.wallSeconds > 0 && code.device === "cpu");

    const again = await cli(["batch", file, "--workers", "2"]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout.match(/complete, skipped/g)?.length, 4, again.stdout);

    const status = await cli(["batch", file, "--status"]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /code-eval\s+eval\s+complete/);
    assert.match(status.stdout, /4\/4 jobs complete/);

    // melbo report over the batch: every job's page, and the batch page linking them.
    const report = await cli(["batch", file, "--report"]);
    assert.equal(report.code, 0, report.stderr);
    const page = await readFile(join(work, "study.batch", "report.html"), "utf8");
    for (const id of ["melbo", "code", "alien", "code-eval"]) {
      assert.ok(page.includes(`<a href="runs/${id}/report.html">${id}</a>`), `no link to ${id}`);
      assert.ok(existsSync(join(work, "study.batch", "runs", id, "report.html")), `no report of ${id}`);
    }
    // `melbo report FILE.json` is the same report of the whole batch.
    await rm(join(work, "study.batch", "report.html"));
    const plain = await cli(["report", file]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(plain.stdout.trim(), join(work, "study.batch", "report.html"));
    assert.equal(await readFile(join(work, "study.batch", "report.html"), "utf8").then((p) => p.includes('<a href="runs/code/report.html">code</a>')), true);
  });

  it("a crashed job takes no other with it; the same command resumes it to the uninterrupted result", async (t) => {
    const dir = join(work, "crash");
    const file = join(work, "crash.json");
    const doc = studyFile(model, { codeSteps: 400 }); // "code" runs long enough to be killed
    await writeFile(file, JSON.stringify({ ...doc, folder: "crash" }));
    const batch = startCli(["batch", file, "--workers", "2", "--job-threads", "1"]);
    const record = join(dir, "jobs", "code.json");
    const vectors = join(dir, "runs", "code", "vectors.safetensors");
    t.after(() => void batch.child.kill("SIGTERM")); // a failed assertion leaves no batch running
    await waitFor("the first checkpoint of job code", () => existsSync(vectors) && existsSync(record));
    const attempt = (JSON.parse(await readFile(record, "utf8")) as { attempts: { pid: number }[] }).attempts[0]!;
    process.kill(attempt.pid, "SIGKILL");
    const r = await batch.result;
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stdout, /code: failed: killed by SIGKILL/);
    assert.match(r.stdout, /code-eval: not started: code did not complete/);
    assert.match(r.stdout, /alien: done/);
    const status = await cli(["batch", file, "--status"]);
    assert.match(status.stdout, /code\s+ortho\s+interrupted\s+\d\/4 vectors/);

    const again = await cli(["batch", file, "--workers", "2", "--job-threads", "1"]);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.match(again.stdout, /alien: complete, skipped/);
    const uninterrupted = join(work, "crash-single");
    const one = await cli(["ortho", "--model", model, "--source", "0", "--target", "2", "--prompt", PROMPT, "--count", "4", "--block", "1", "--steps", "400",
      "--projection", "grad", "--theta", `${join(dir, "runs", "melbo")}/vectors.safetensors:0`, "--out", uninterrupted]);
    assert.equal(one.code, 0, one.stderr);
    assert.deepEqual(await runResult(join(dir, "runs", "code")), await runResult(uninterrupted));
  });

  it("Ctrl-C stops every job with its last block saved; the same command continues the batch", async (t) => {
    const file = join(work, "stop.json");
    await writeFile(file, JSON.stringify({ ...studyFile(model, { orthoSteps: 400 }), folder: "stop" }));
    const dir = join(work, "stop");
    const batch = startCli(["batch", file, "--workers", "2", "--job-threads", "1"]);
    t.after(() => void batch.child.kill("SIGTERM"));
    await waitFor("a checkpoint of an ortho job", () => existsSync(join(dir, "runs", "code", "vectors.safetensors")));
    batch.child.kill("SIGINT");
    const r = await batch.result;
    assert.equal(r.code, 130, r.stdout + r.stderr);
    assert.match(r.stderr, /run the same command to continue/);
    const again = await cli(["batch", file, "--workers", "2", "--job-threads", "1"]);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.match(again.stdout, /melbo: complete, skipped/);
    const status = await cli(["batch", file, "--status"]);
    assert.match(status.stdout, /4\/4 jobs complete/);
  });
});
