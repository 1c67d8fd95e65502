// Durable atomic writes (src/io/atomic.ts): the new content or the old, never a partial file or
// a temporary left behind.

import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { MelboError } from "../src/errors.js";
import { writeTextAtomic } from "../src/io/atomic.js";

describe("atomic writes", () => {
  let dir: string;
  after(() => rm(dir, { recursive: true, force: true }));

  it("replaces a file with the new content and leaves no temporary file", async () => {
    dir = await mkdtemp(join(tmpdir(), "melbo-atomic-"));
    const file = join(dir, "log.jsonl");
    await writeFile(file, "old\n");
    await writeTextAtomic(file, "new\n");
    assert.equal(await readFile(file, "utf8"), "new\n");
    assert.deepEqual(await readdir(dir), ["log.jsonl"]);
  });

  it("a failed write names the file, keeps the old content and cleans up", async () => {
    const file = join(dir, "log.jsonl");
    await assert.rejects(writeTextAtomic(join(dir, "missing", "x.jsonl"), "y"), (e: unknown) =>
      e instanceof MelboError && e.message.includes(join(dir, "missing", "x.jsonl")) && /cannot write/.test(e.message));
    // A non-empty folder where the file should go: the write succeeds, the rename fails.
    const blocked = join(dir, "blocked");
    await mkdir(blocked);
    await writeFile(join(blocked, "inside"), "keep");
    await assert.rejects(writeTextAtomic(blocked, "z"), /cannot write/);
    assert.equal(await readFile(join(blocked, "inside"), "utf8"), "keep");
    assert.equal(await readFile(file, "utf8"), "new\n");
    assert.deepEqual((await readdir(dir)).sort(), ["blocked", "log.jsonl"], "no temporary file left");
  });
});
