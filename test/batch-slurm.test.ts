// melbo batch --backend slurm on a real one-node Slurm cluster on localhost (scripts/slurm-localhost.sh
// installs slurm-wlm and munge when missing and starts munged, slurmctld and slurmd): a batch with
// dependencies is submitted, one task is killed with scancel while it runs (the task waiting on it
// is cancelled by Slurm), the same command resubmits only what did not finish, and the results are
// those of the same batch run locally, bit for bit. Skipped, with the reason printed, only where
// the daemons cannot start (not root, no apt, no Slurm).

import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { before, describe, it } from "node:test";
import { cli } from "./helpers/cli.js";
import { tempDir } from "./helpers/errors.js";
import { testModel } from "./helpers/models.js";
import { evalEntries, runResult, studyFile, waitFor } from "./helpers/batch.js";

// The "code" job runs long enough (~15 s on one thread) to be cancelled while it runs.
const study = (model: string, folder: string) => studyFile(model, { folder, codeSteps: 1000 });

const SETUP = fileURLToPath(new URL("../../scripts/slurm-localhost.sh", import.meta.url));

/** squeue's tasks ("123_4" → state). */
function squeue(): Map<string, string> {
  const out = execFileSync("squeue", ["-h", "-r", "-o", "%i|%T"], { encoding: "utf8" });
  return new Map(out.split("\n").filter((l) => l.includes("|")).map((l) => l.trim().split("|") as [string, string]));
}

describe("melbo batch --backend slurm (a one-node cluster on localhost)", () => {
  let skip: string | null = null;
  let model: string;
  let work: string;

  before(async () => {
    const r = spawnSync("bash", [SETUP], { encoding: "utf8", timeout: 600_000 });
    if (r.status !== 0) {
      const why = (r.stderr || r.stdout || String(r.error ?? "")).trim().split("\n").pop() ?? "no output";
      skip = `no Slurm cluster could be started here: ${why}`;
      process.stdout.write(`# skipping the Slurm tests: ${skip}\n`);
      return;
    }
    model = await testModel({ layers: 4, hidden: 64, heads: 4, intermediate: 176, seed: 21 });
    work = await tempDir("melbo-slurm-");
  });

  it("submits with afterok, survives a scancel mid-run, resubmits only what did not finish, and matches the local run", async (t) => {
    if (skip) return t.skip(skip);
    // The reference: the same jobs on the local backend.
    const localFile = join(work, "local.json");
    await writeFile(localFile, JSON.stringify(study(model, "local")));
    const local = await cli(["batch", localFile, "--workers", "2", "--job-threads", "1"]);
    assert.equal(local.code, 0, local.stdout + local.stderr);

    const file = join(work, "study.json");
    const folder = join(work, "slurm");
    await writeFile(file, JSON.stringify(study(model, "slurm")));
    const submit = await cli(["batch", file, "--backend", "slurm", "--job-threads", "1", "--cpus-per-task", "1"]);
    assert.equal(submit.code, 0, submit.stdout + submit.stderr);
    assert.match(submit.stdout, /code: submitted as \d+_1 \(after \d+_0\)/);
    assert.match(submit.stdout, /code-eval: submitted as \d+_3 \(after \d+_1\)/);
    const subsFile = join(folder, "slurm", "submissions.json");
    const subs = () => readFile(subsFile, "utf8").then((s) => (JSON.parse(s) as { jobs: Record<string, { task: string }> }).jobs);
    const first = await subs();
    const codeTask = first["code"]!.task;

    // Cancel "code" once it has saved a block but before it ends.
    const codeVectors = join(folder, "runs", "code", "vectors.safetensors");
    await waitFor("job code's first checkpoint", () => existsSync(codeVectors) && squeue().get(codeTask) === "RUNNING", 900_000, 200);
    execFileSync("scancel", [codeTask]);
    const ours = new Set(Object.values(first).map((s) => s.task));
    await waitFor("the batch's tasks to leave the queue", () => ![...squeue().keys()].some((k) => ours.has(k)), 900_000, 200);

    const status = await cli(["batch", file, "--backend", "slurm", "--status"]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /melbo\s+train\s+complete/);
    assert.match(status.stdout, /alien\s+ortho\s+complete/);
    assert.match(status.stdout, /code\s+ortho\s+(interrupted|failed)[^\n]*\d\/4 vectors/, status.stdout);
    assert.doesNotMatch(status.stdout, /code-eval\s+eval\s+complete/);

    const again = await cli(["batch", file, "--backend", "slurm", "--job-threads", "1", "--cpus-per-task", "1"]);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.match(again.stdout, /melbo: complete, skipped/);
    assert.match(again.stdout, /alien: complete, skipped/);
    assert.match(again.stdout, /code: submitted as \d+_1\n/); // its dependency is complete: no afterok
    assert.match(again.stdout, /code-eval: submitted as \d+_3 \(after \d+_1\)/);
    assert.match(again.stdout, /2 job\(s\) submitted/);

    await waitFor("every job to complete", async () => {
      const s = await cli(["batch", file, "--backend", "slurm", "--status"]);
      return /4\/4 jobs complete/.test(s.stdout);
    }, 1_800_000);
    // A task is complete in its run folder before Slurm has finished with it (its log, its end).
    const resubmitted = new Set(Object.values(await subs()).map((s) => s.task));
    await waitFor("the resubmitted tasks to leave the queue", () => ![...squeue().keys()].some((k) => resubmitted.has(k)), 900_000, 200);
    for (const id of ["melbo", "code", "alien"]) {
      assert.deepEqual(await runResult(join(folder, "runs", id)), await runResult(join(work, "local", "runs", id)), `${id}: the Slurm run differs from the local one`);
    }
    assert.deepEqual(await evalEntries(join(folder, "runs", "code-eval")), await evalEntries(join(work, "local", "runs", "code-eval")));
    const summary = JSON.parse(await readFile(join(folder, "summary.json"), "utf8")) as { jobs: { id: string; attempts: number; slurm: unknown }[] };
    assert.equal(summary.jobs.find((j) => j.id === "code")!.attempts, 2);
    const log = await readFile(join(folder, "logs", "code.log"), "utf8");
    assert.match(log, /resuming .*code: \d vectors already found/);
  });
});
