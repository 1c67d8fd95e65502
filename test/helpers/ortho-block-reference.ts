// A step-by-step float64 reference of one MELBO-ortho block of B rows (docs/algorithm.md §2 and
// "Block mode"; native/ortho.cpp orthoBlock, native/projection.cpp), written out in plain
// JavaScript from the specification, so that the native loop's in-block parts have something
// independent to be compared with: per row Adam (torch.optim.Adam's update), `grad` projection
// of the gradient onto the basis's complement, the in-block gradient projection, and after every
// step the projection onto the complement followed by the in-block orthogonalisation (Gram–Schmidt,
// row 1 first then symmetric (Löwdin), or all symmetric). Only the loss and its gradient come from
// the engine (Model.orthoLossGrad, checked against independent references elsewhere).
//
// `variant` changes one thing on purpose: the test runs the reference with each variant to show
// that the comparison with the native loop would notice that mistake.

import type { Model } from "../../src/model/model.js";

export type InBlockMode = "gram-schmidt" | "first-then-symmetric" | "symmetric";

export type ReferenceVariant =
  | "none"
  | "no-gradient-in-block" // skip the in-block gradient projection
  | "gradient-in-block-row-1" // project row 1's gradient too (it must stay the sequential vector)
  | "no-basis-gradient" // `grad` without projecting the gradient onto the complement (= post)
  | "gram-schmidt-in-block" // Gram–Schmidt instead of the requested in-block orthogonalisation
  | "no-in-block"; // only the complement projection after each step

export interface BlockReferenceOptions {
  model: Model;
  x: Float32Array; // [seq * d] resid(source)
  z0: Float32Array; // [d] z(θ0)
  basis: Float64Array; // [m * d] orthonormal
  starts: Float32Array; // [B * d]
  steps: number;
  source: number;
  target: number;
  lr: number;
  betas: [number, number];
  eps: number;
  projection: "post" | "grad";
  inBlock: InBlockMode;
  gradientInBlock: boolean;
  variant?: ReferenceVariant;
}

const dot = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
};
const norm = (a: ArrayLike<number>): number => Math.sqrt(dot(a, a));

/** rows − (rows Qᵀ) Q for each row: the component in the complement of the orthonormal rows of Q. */
export function projectOutRows(rows: Float64Array[], q: Float64Array[]): Float64Array[] {
  return rows.map((r) => {
    const c = q.map((u) => dot(r, u)); // all coefficients from the row as it was
    const out = Float64Array.from(r);
    q.forEach((u, k) => {
      for (let i = 0; i < out.length; i++) out[i]! -= c[k]! * u[i]!;
    });
    return out;
  });
}

/** Eigen-decomposition of a small symmetric matrix (cyclic Jacobi): a = V diag(λ) Vᵀ. */
export function symmetricEigen(a: number[][]): { values: number[]; vectors: number[][] } {
  const n = a.length;
  const m = a.map((r) => [...r]);
  const v: number[][] = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i === j ? 1 : 0)));
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) off += m[i]![j]! ** 2;
    if (off < 1e-40) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        if (m[p]![q] === 0) continue;
        const theta = (m[q]![q]! - m[p]![p]!) / (2 * m[p]![q]!);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1), s = t * c;
        for (let k = 0; k < n; k++) { // columns p, q
          const kp = m[k]![p]!, kq = m[k]![q]!;
          m[k]![p] = c * kp - s * kq;
          m[k]![q] = s * kp + c * kq;
        }
        for (let k = 0; k < n; k++) { // rows p, q
          const pk = m[p]![k]!, qk = m[q]![k]!;
          m[p]![k] = c * pk - s * qk;
          m[q]![k] = s * pk + c * qk;
        }
        for (let k = 0; k < n; k++) {
          const kp = v[k]![p]!, kq = v[k]![q]!;
          v[k]![p] = c * kp - s * kq;
          v[k]![q] = s * kp + c * kq;
        }
      }
    }
  }
  return { values: m.map((r, i) => r[i]!), vectors: v };
}

/** Löwdin: directions N = rows / norms, N' = (N Nᵀ)^(-1/2) N, a Gram–Schmidt clean-up pass, norms kept. */
export function lowdin(rows: Float64Array[]): Float64Array[] {
  const norms = rows.map(norm);
  const live = rows.map((_, i) => i).filter((i) => norms[i]! > 0);
  if (live.length < 2) return rows.map((r) => Float64Array.from(r));
  const unit = live.map((i) => rows[i]!.map((x) => x / norms[i]!));
  const gram = unit.map((a) => unit.map((b) => dot(a, b)));
  const { values, vectors } = symmetricEigen(gram);
  const l = live.length;
  const inverseRoot = Array.from({ length: l }, (_, i) => Array.from({ length: l }, (_, j) => {
    let s = 0;
    for (let k = 0; k < l; k++) s += vectors[i]![k]! * vectors[j]![k]! / Math.sqrt(Math.max(values[k]!, 1e-24));
    return s;
  }));
  const ortho = inverseRoot.map((coeffs) => {
    const out = new Float64Array(unit[0]!.length);
    coeffs.forEach((c, k) => {
      for (let i = 0; i < out.length; i++) out[i]! += c * unit[k]![i]!;
    });
    return out;
  });
  for (let j = 1; j < l; j++) {
    const [cleaned] = projectOutRows([ortho[j]!], ortho.slice(0, j));
    const n = Math.max(norm(cleaned!), 1e-300);
    ortho[j] = cleaned!.map((x) => x / n);
  }
  const out = rows.map((r) => new Float64Array(r.length));
  live.forEach((i, k) => (out[i] = ortho[k]!.map((x) => x * norms[i]!)));
  return out;
}

/** Gram–Schmidt in index order: row j loses its components along the directions of rows 0..j-1. */
export function gramSchmidt(rows: Float64Array[]): Float64Array[] {
  const units: Float64Array[] = [];
  return rows.map((r) => {
    const [out] = projectOutRows([r], units);
    const n = norm(out!);
    units.push(n > 0 ? out!.map((x) => x / n) : new Float64Array(r.length));
    return out!;
  });
}

/** The projection after each step: onto the complement of the basis, then the in-block step. */
export function projectBlockReference(rows: Float64Array[], basis: Float64Array[], mode: InBlockMode | "none"): Float64Array[] {
  const r = projectOutRows(rows, basis);
  if (mode === "none" || r.length < 2) return r;
  if (mode === "gram-schmidt") return gramSchmidt(r);
  if (mode === "symmetric") return lowdin(r);
  const first = r[0]!;
  const n = norm(first);
  const rest = n > 0 ? projectOutRows(r.slice(1), [first.map((x) => x / n)]) : r.slice(1);
  return [first, ...lowdin(rest)];
}

/** Each row's gradient loses its components along the directions of the rows that constrain it. */
export function projectGradientInBlockReference(grads: Float64Array[], rows: Float64Array[], mode: InBlockMode, alsoRowOne = false): Float64Array[] {
  const B = rows.length;
  if (B < 2) return grads;
  const units = rows.map((r) => {
    const n = norm(r);
    return n > 0 ? r.map((x) => x / n) : new Float64Array(r.length);
  });
  const constrains = (i: number, j: number) =>
    mode === "gram-schmidt" ? i < j : i !== j && (mode === "symmetric" || j > 0 || alsoRowOne);
  return grads.map((g, j) => projectOutRows([g], units.filter((_, i) => constrains(i, j)))[0]!);
}

/** Runs the block for `steps` steps; returns the rows and their losses ‖z(θ) − z0‖ at the end. */
export async function referenceOrthoBlock(o: BlockReferenceOptions): Promise<{ thetas: Float32Array; losses: Float32Array; perStep: Float32Array[] }> {
  const d = o.model.hidden;
  const B = o.starts.length / d;
  const variant = o.variant ?? "none";
  const basis = Array.from({ length: o.basis.length / d }, (_, k) => o.basis.subarray(k * d, (k + 1) * d));
  const [b1, b2] = o.betas;
  let theta: Float64Array[] = Array.from({ length: B }, (_, r) => Float64Array.from(o.starts.subarray(r * d, (r + 1) * d)));
  const m = theta.map(() => new Float64Array(d));
  const v = theta.map(() => new Float64Array(d));
  const flat = (rows: Float64Array[]) => {
    const out = new Float32Array(B * d);
    rows.forEach((r, k) => out.set(r, k * d)); // rounds to float32, as the native rows are
    return out;
  };
  const perStep: Float32Array[] = [];
  for (let step = 1; step <= o.steps; step++) {
    const { grad } = await o.model.orthoLossGrad({ x: o.x, thetas: flat(theta), z0: o.z0, source: o.source, target: o.target });
    let g: Float64Array[] = theta.map((_, r) => Float64Array.from(grad.subarray(r * d, (r + 1) * d)));
    const inBlockGrad = o.gradientInBlock && variant !== "no-gradient-in-block";
    if (o.projection === "grad" && variant !== "no-basis-gradient") g = projectOutRows(g, basis);
    if (inBlockGrad) g = projectGradientInBlockReference(g, theta, o.inBlock, variant === "gradient-in-block-row-1");
    g = g.map((row) => row.map(Math.fround)); // the native loop hands Adam a float32 gradient
    const bias1 = 1 - b1 ** step, bias2 = 1 - b2 ** step;
    theta = theta.map((row, r) => row.map((value, i) => {
      m[r]![i] = b1 * m[r]![i]! + (1 - b1) * g[r]![i]!;
      v[r]![i] = b2 * v[r]![i]! + (1 - b2) * g[r]![i]! ** 2;
      return value - (o.lr / bias1) * (m[r]![i]! / (Math.sqrt(v[r]![i]!) / Math.sqrt(bias2) + o.eps));
    }));
    const mode = variant === "gram-schmidt-in-block" ? "gram-schmidt" : variant === "no-in-block" ? "none" : o.inBlock;
    theta = projectBlockReference(theta, basis, mode).map((row) => row.map(Math.fround)); // rows are float32 between steps
    perStep.push(flat(theta));
  }
  const thetas = flat(theta);
  const { loss } = await o.model.orthoLossGrad({ x: o.x, thetas, z0: o.z0, source: o.source, target: o.target });
  return { thetas, losses: loss, perStep };
}
