// What a user looks at after an ortho search (docs/algorithm.md §4): how many vectors beat θ = 0
// (r < 1), how many reach r ≤ 0.5, beside random vectors of the same norms orthogonal to θ0.

import type { Model } from "../model/model.js";
import { lowerMedian } from "../util/median.js";
import { Rng } from "../util/rng.js";
import { dot, norm } from "../search/basis.js";

export interface RelLossStats {
  count: number;
  beatZero: number; // r < 1
  half: number; // r <= 0.5
  best: number;
  median: number;
}

export function relLossStats(r: readonly number[]): RelLossStats {
  const sorted = [...r].sort((a, b) => a - b);
  return {
    count: r.length,
    beatZero: r.filter((x) => x < 1).length,
    half: r.filter((x) => x <= 0.5).length,
    best: sorted[0] ?? NaN,
    median: lowerMedian(r),
  };
}

/**
 * r of random directions orthogonal to θ0, scaled to the given norms: the baseline a found
 * vector has to beat. Deterministic (seeded).
 */
export async function randomBaseline(
  model: Model,
  o: { x: Float32Array; theta0: Float32Array; norms: readonly number[]; source: number; target: number; denominator: number; z0: Float32Array; seed?: number },
): Promise<number[]> {
  const d = model.hidden;
  const rng = new Rng(o.seed ?? 0, "random-baseline");
  const thetas = new Float32Array(o.norms.length * d);
  const t0n = norm(o.theta0);
  for (let r = 0; r < o.norms.length; r++) {
    const v = rng.fillNormal(new Float32Array(d));
    const c = dot(v, o.theta0) / (t0n * t0n);
    for (let i = 0; i < d; i++) v[i]! -= c * o.theta0[i]!;
    const s = o.norms[r]! / norm(v);
    for (let i = 0; i < d; i++) thetas[r * d + i] = v[i]! * s;
  }
  const out: number[] = [];
  const chunk = 32;
  for (let start = 0; start < o.norms.length; start += chunk) {
    const rows = Math.min(chunk, o.norms.length - start);
    const { loss } = await model.orthoLossGrad({ x: o.x, thetas: thetas.subarray(start * d, (start + rows) * d), z0: o.z0, source: o.source, target: o.target });
    for (const l of loss) out.push(l / o.denominator);
  }
  return out;
}
