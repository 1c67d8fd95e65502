// Small helpers of tests that compare two computations of the same thing.

import assert from "node:assert/strict";

/** max |a − b| over max |b|: the largest difference relative to the reference's scale. */
export function maxRelDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return num / den;
}

/**
 * Runs `run` with the environment variable `name` set to `value` (undefined: unset), then puts it
 * back. The native switches (MELBO_SKINNY_ROWS, MELBO_ATTENTION) are read on every call.
 */
export function withEnv<T>(name: string, value: string | undefined, run: () => Promise<T>): Promise<T> {
  const before = process.env[name];
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
  return run().finally(() => {
    if (before === undefined) delete process.env[name];
    else process.env[name] = before;
  });
}
