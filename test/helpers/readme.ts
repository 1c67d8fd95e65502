// The README's code, read by the tests that run it (test/readme.test.ts, test/package.test.ts),
// so that documentation and tests cannot drift apart.

import assert from "node:assert/strict";

/** The ```js (or ```LANG) blocks of a README section ("## heading"). */
export function codeBlocks(markdown: string, heading: string, lang = "js"): string[] {
  const start = markdown.indexOf(`\n## ${heading}\n`);
  assert.ok(start >= 0, `README has no "## ${heading}" section`);
  const end = markdown.indexOf("\n## ", start + 1);
  const section = markdown.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(new RegExp("```" + lang + "\\n([\\s\\S]*?)```", "g"))].map((m) => m[1]!);
}
