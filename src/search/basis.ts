// An orthonormal basis in float64 of everything MELBO-ortho has found, so that orthogonality
// holds to ~1e-15 however many vectors join (the original's individually normalised rows only
// span correctly while they stay exactly orthogonal).

export class OrthonormalBasis {
  private data: Float64Array;
  private count = 0;

  constructor(readonly d: number, capacity = 16) {
    this.data = new Float64Array(Math.max(1, Math.min(capacity, d)) * d);
  }

  get size(): number {
    return this.count;
  }

  /** The rows as one [size * d] array (a view: copy it before the basis grows again). */
  rows(): Float64Array {
    return this.data.subarray(0, this.count * this.d);
  }

  /** Removes from `w` (in place) its components along every row: Gram–Schmidt twice. */
  projectOut(w: Float64Array): Float64Array {
    const d = this.d;
    for (let pass = 0; pass < 2; pass++) {
      for (let r = 0; r < this.count; r++) {
        const row = this.data.subarray(r * d, (r + 1) * d);
        const c = dot(row, w);
        for (let i = 0; i < d; i++) w[i]! -= c * row[i]!;
      }
    }
    return w;
  }

  /**
   * Adds the direction of `v` that is new: Gram–Schmidt twice ("twice is enough") against the
   * rows, then normalised. Returns false (and adds nothing) when nothing new is left, or the
   * basis already spans all d dimensions.
   */
  add(v: ArrayLike<number>): boolean {
    const d = this.d;
    if (v.length !== d) throw new RangeError(`basis vector must have ${d} values, got ${v.length}`);
    if (this.count >= d) return false;
    const w = Float64Array.from(v);
    const original = norm(w);
    if (!(original > 0)) return false;
    this.projectOut(w);
    const left = norm(w);
    if (!(left > 1e-12 * original)) return false;
    if ((this.count + 1) * d > this.data.length) {
      const grown = new Float64Array(Math.min(d, Math.max(this.count * 2, this.count + 1)) * d);
      grown.set(this.data);
      this.data = grown;
    }
    const out = this.data.subarray(this.count * d, (this.count + 1) * d);
    for (let i = 0; i < d; i++) out[i] = w[i]! / left;
    this.count++;
    return true;
  }
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

export function norm(a: ArrayLike<number>): number {
  return Math.sqrt(dot(a, a));
}

/** Row r of a flat [n * d] array. */
export function row(data: Float32Array, r: number, d: number): Float32Array {
  return data.subarray(r * d, (r + 1) * d);
}

/**
 * Largest |cos| between any two of the n rows (float64). Rows of norm 0 are skipped: they have
 * no direction. O(n² d): for audits after a search, not for inner loops.
 */
export function maxAbsCosine(data: Float32Array, n: number, d: number): number {
  const norms = new Float64Array(n);
  for (let r = 0; r < n; r++) norms[r] = norm(row(data, r, d));
  let worst = 0;
  for (let i = 0; i < n; i++) {
    if (norms[i] === 0) continue;
    const a = row(data, i, d);
    for (let j = i + 1; j < n; j++) {
      if (norms[j] === 0) continue;
      const c = Math.abs(dot(a, row(data, j, d))) / (norms[i]! * norms[j]!);
      if (c > worst) worst = c;
    }
  }
  return worst;
}
