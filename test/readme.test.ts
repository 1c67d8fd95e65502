// The README's API example runs as written (against the embedded default model, as in the README).

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
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
});
