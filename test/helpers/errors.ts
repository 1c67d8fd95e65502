// Assertions and temp dirs shared by the input-validation tests.

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import { MelboError } from "../../src/errors.js";

const tempDirs: string[] = [];
// Registered once, at import (on the file's root test): an after() registered inside a before()
// hook would belong to that hook and remove the folder as soon as the hook ends. Retries: a process
// the test started (a Slurm task's epilogue, a killed child) may still be closing a file in it.
after(() => Promise.all(tempDirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 300 }))));

/** A fresh directory under the OS temp dir, removed when the test file ends. */
export async function tempDir(prefix = "melbo-test-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

/** Asserts that `run` rejects with a MelboError whose message names `file` and contains every fragment. */
export async function rejectsMelbo(run: () => Promise<unknown>, file: string, ...fragments: string[]): Promise<MelboError> {
  let caught: unknown = null;
  try {
    await run();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught !== null, "expected a rejection, but it resolved");
  assert.ok(caught instanceof MelboError, `expected a MelboError, got ${String(caught)}`);
  assert.ok(caught.message.includes(file), `message does not name ${file}: ${caught.message}`);
  assert.equal(caught.file, file);
  for (const f of fragments) assert.ok(caught.message.includes(f), `message lacks ${JSON.stringify(f)}: ${caught.message}`);
  return caught;
}
