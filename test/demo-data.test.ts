// The demo model's data is reproducible offline: scripts/demo-model/build_data.py, run on this
// machine's Debian packages, writes the committed held-out split (models/chat/heldout.jsonl) and
// manifest byte for byte, and its --code-howto option adds only "How can I …?" coding requests.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { tempDir } from "./helpers/errors.js";

const packageRoot = fileURLToPath(new URL("../..", import.meta.url)); // dist/test → the checkout
const SCRIPT = join(packageRoot, "scripts", "demo-model", "build_data.py");
const COMMITTED = join(packageRoot, "models", "chat");
const PYTHON = "/usr/bin/python3";

interface Example { kind: "code" | "prose"; source: string; question: string; answer: string }
const readExamples = (file: string): Example[] =>
  readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l) as Example);

/** Why the data cannot be built here, or null: the script reads manual pages and the Python 3.11 library. */
function missingSources(): string | null {
  if (!existsSync(PYTHON)) return `${PYTHON} is missing`;
  if (!existsSync("/usr/share/man/man1/ls.1.gz")) return "manual pages are not installed (/usr/share/man/man1/ls.1.gz is missing)";
  if (!existsSync("/usr/lib/python3.11/json/__init__.py")) return "Python 3.11's standard library is not at /usr/lib/python3.11";
  return null;
}

function buildData(out: string, ...extra: string[]): void {
  const r = spawnSync(PYTHON, [SCRIPT, out, ...extra], { encoding: "utf8" });
  assert.equal(r.status, 0, `build_data.py failed:\n${r.stderr}`);
}

describe("scripts/demo-model/build_data.py", () => {
  const missing = missingSources();
  if (missing) console.log(`# skipping the demo data rebuild: ${missing}`);

  let out = "";
  before(async () => {
    if (missing) return;
    out = await tempDir("melbo-demo-data-");
    buildData(out);
  });

  it("rebuilds the committed held-out split and manifest byte for byte", { skip: missing ?? false }, () => {
    assert.equal(readFileSync(join(out, "heldout.jsonl"), "utf8"), readFileSync(join(COMMITTED, "heldout.jsonl"), "utf8"));
    const manifest = JSON.parse(readFileSync(join(out, "manifest.json"), "utf8")) as Record<string, unknown>;
    assert.equal(manifest["codeHowtoPercent"], 0);
    delete manifest["codeHowtoPercent"];
    assert.deepEqual(manifest, JSON.parse(readFileSync(join(COMMITTED, "data-manifest.json"), "utf8")));
  });

  it("--code-howto adds Python tasks asked as 'How can I …?' and answered in code, and nothing else", { skip: missing ?? false }, async () => {
    const mixed = await tempDir("melbo-demo-data-");
    buildData(mixed, "--code-howto", "12");
    const key = (e: Example): string => JSON.stringify([e.kind, e.source, e.question, e.answer]);
    // the default examples, as a multiset (a few questions and answers repeat)
    const left = new Map<string, number>();
    for (const e of readExamples(join(out, "train.jsonl"))) left.set(key(e), (left.get(key(e)) ?? 0) + 1);
    const added: Example[] = [];
    for (const e of readExamples(join(mixed, "train.jsonl"))) {
      const n = left.get(key(e)) ?? 0;
      if (n > 0) left.set(key(e), n - 1);
      else added.push(e);
    }
    assert.deepEqual([...left.values()].filter((n) => n > 0), [], "every example of the default data is still there");
    // 12 % of about 1 550 functions: a fraction far from 0 and from all of them
    assert.ok(added.length > 100 && added.length < 300, `${added.length} examples added`);
    for (const e of added) {
      assert.equal(e.kind, "code");
      assert.match(e.question, /^How can I .+\?$/);
      assert.match(e.answer, /^```python\n[\s\S]+\n```$/);
    }
  });
});
