// Test models, made once and shared: by every test in a process (a promise cache) and by every
// test process (a directory under os.tmpdir()). Layout: <root>/<hash of the generator's code>/
// <hash of the options>, so a change to the generator never serves a stale model, and the
// models of older generator versions can be deleted as a whole.

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdir, readdir, rename, rm, stat, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { makeTestModel, resolveTestModelOptions, type TestModelOptions } from "../../src/model/make-test-model.js";

export type { TestModelOptions };

export const TEST_MODELS_ROOT = join(tmpdir(), "melbo-test-models");

/** The compiled modules whose behaviour decides the bytes of a test model. */
const GENERATOR_MODULES = [
  "../../src/model/make-test-model.js",
  "../../src/model/safetensors.js",
  "../../src/model/checkpoint.js",
  "../../src/model/qwen2-layout.js",
  "../../src/util/rng.js",
  "../../src/util/half.js",
];

let generatorHash: string | null = null;
function generatorDigest(): string {
  if (generatorHash === null) {
    const h = createHash("sha256");
    for (const m of GENERATOR_MODULES) h.update(readFileSync(fileURLToPath(new URL(m, import.meta.url)), "utf8"));
    generatorHash = h.digest("hex");
  }
  return generatorHash;
}

const cache = new Map<string, Promise<string>>();

/** Generator versions untouched for this long are deleted (each holds up to a few 100 MB). */
const STALE_MS = 60 * 60 * 1000;
let generatorDirReady: Promise<string> | null = null;

/** This generator version's directory, touched so that other processes see it is in use. */
function generatorDir(): Promise<string> {
  generatorDirReady ??= (async () => {
    const digest = generatorDigest().slice(0, 16);
    const dir = join(TEST_MODELS_ROOT, digest);
    await mkdir(dir, { recursive: true });
    const now = new Date();
    await utimes(dir, now, now);
    for (const name of await readdir(TEST_MODELS_ROOT)) {
      if (name === digest) continue;
      const other = join(TEST_MODELS_ROOT, name);
      try {
        if (Date.now() - (await stat(other)).mtimeMs > STALE_MS) await rm(other, { recursive: true, force: true });
      } catch {
        // Another process removed it first.
      }
    }
    return dir;
  })();
  return generatorDirReady;
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

async function build(hash: string, opts: Required<TestModelOptions>): Promise<string> {
  const dir = join(await generatorDir(), hash);
  if (await isDir(dir)) return dir; // complete: a directory only appears there by rename
  const tmp = `${dir}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    await makeTestModel(tmp, opts);
    try {
      await rename(tmp, dir);
    } catch (e) {
      // Another process finished the same model first: use theirs.
      const code = (e as NodeJS.ErrnoException).code;
      if ((code === "ENOTEMPTY" || code === "EEXIST") && (await isDir(dir))) return dir;
      throw e;
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return dir;
}

/** Directory of a test model with these options (see makeTestModel for the defaults). */
export function testModel(opts: TestModelOptions = {}): Promise<string> {
  const full = resolveTestModelOptions(opts);
  // Keys in a fixed order (resolveTestModelOptions builds the object in one order).
  const key = JSON.stringify(full);
  let p = cache.get(key);
  if (p === undefined) {
    p = build(createHash("sha256").update(key).digest("hex").slice(0, 16), full);
    p.catch(() => cache.delete(key)); // a failed build may be retried
    cache.set(key, p);
  }
  return p;
}
