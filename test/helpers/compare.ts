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

/**
 * The largest |cos| between distinct non-zero rows of `data` [n, d], written out here on purpose
 * (not src/search/basis.ts's maxAbsCosine), so that tests check the library's audit against an
 * independent computation.
 */
export function bruteMaxAbsCos(data: Float32Array, n: number, d: number): number {
  let worst = 0;
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      let ij = 0, ii = 0, jj = 0;
      for (let k = 0; k < d; k++) {
        const a = data[i * d + k]!, b = data[j * d + k]!;
        ij += a * b;
        ii += a * a;
        jj += b * b;
      }
      if (ii > 0 && jj > 0) worst = Math.max(worst, Math.abs(ij) / Math.sqrt(ii * jj));
    }
  }
  return worst;
}
