// The README's API example runs as written (against the embedded default model, as in the README).

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, it } from "node:test";
import { codeBlocks } from "./helpers/readme.js";

const root = fileURLToPath(new URL("../../", import.meta.url));


describe("README", () => {
  const runExample = async (code: string): Promise<string> => {
    assert.ok(existsSync(`${root}models/default/config.json`), "models/default is missing: run scripts/setup.sh");
    // Inside the package, so that `import ... from "melbo"` resolves through its own exports.
    await mkdir(`${root}.cache`, { recursive: true });
    const file = `${root}.cache/readme-example-${process.pid}.mjs`;
    await writeFile(file, code);
    try {
      const { stdout } = await promisify(execFile)(process.execPath, [file], { cwd: root, env: { ...process.env, MELBO_THREADS: "2" } });
      return stdout;
    } finally {
      await rm(file, { force: true });
    }
  };

  it("the API examples run as written", async () => {
    const readme = await readFile(`${root}README.md`, "utf8");
    const [forward, search] = codeBlocks(readme, "API");
    assert.ok(forward && search, "the API section needs its two js examples");
    const first = await runExample(forward);
    assert.match(first, /26 positions of resid\(16\)/);
    assert.ok(first.trim().split("\n").length >= 3, first);
    const second = await runExample(search);
    assert.match(second, /vector 1: r \d\.\d{3}, norm/);
    assert.match(second, /vector 2: r/);
    assert.match(second, /stopped \(count\), max \|cos\| /);
  });

  it("the pipeline commands (train → ortho → eval → report → generate → export → import) run as written", async () => {
    const readme = await readFile(`${root}README.md`, "utf8");
    const [pipeline] = codeBlocks(readme, "From search to use: eval, report, import, export", "sh");
    assert.ok(pipeline, "the section needs its sh block");
    // A folder like a checkout's: models/ beside it, `melbo` on the PATH (what `npm link` gives).
    const cwd = await mkdtemp(join(tmpdir(), "melbo-readme-"));
    try {
      await symlink(`${root}models`, join(cwd, "models"));
      await mkdir(join(cwd, "bin"));
      await writeFile(join(cwd, "bin", "melbo"), `#!/bin/sh\nexec "${process.execPath}" "${root}bin/melbo.js" "$@"\n`);
      await chmod(join(cwd, "bin", "melbo"), 0o755);
      const env = { ...process.env, MELBO_THREADS: "2", PATH: `${join(cwd, "bin")}:${process.env["PATH"] ?? ""}` };
      const { stdout } = await promisify(execFile)("bash", ["-euo", "pipefail", "-c", pipeline], { cwd, env, maxBuffer: 64 * 2 ** 20 });
      for (const file of ["runs/melbo/trace.jsonl", "runs/ortho/trace.jsonl", "runs/eval/eval.json", "runs/eval/generations.jsonl", "runs/eval/report.html", "runs/ortho-1.gguf", "runs/ortho.npy", "runs/imported.safetensors"]) {
        assert.ok(existsSync(join(cwd, file)), `${file} was not written`);
      }
      assert.match(stdout, /P0 = steered by θ0/);
      assert.match(stdout, /"row":2,"scale":-1/);
    } finally {
      await rm(cwd, { recursive: true, force: true });
    }
  });
});
