// A small seeded PRNG: xoshiro128** on 32-bit integers (state seeded by splitmix32), with
// standard normals by the ziggurat method of Marsaglia & Tsang (2000). Box–Muller needs a log,
// a sqrt, a sin and a cos per pair and fills only ~15M floats/s in V8; the ziggurat needs one
// 32-bit draw, a table lookup and a multiply ~99% of the time (~100M floats in ~1–2 s).
// Only 32-bit integer ops and V8's own fdlibm-derived exp/log are used, so a seed gives the
// same numbers on every platform Node runs on.

/** FNV-1a over the UTF-16 code units of a string: turns a stream name into 32 bits. */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

// ---------------------------------------------------------------- ziggurat tables
// 128 layers of equal area under exp(-x²/2); R is where the base layer's tail starts and V the
// common area (constants from Marsaglia & Tsang). A draw hz (int32) picks layer hz & 127; if
// |hz| < KN[layer] the point lies inside the layer's rectangle under the curve: accept hz·WN.
const ZIG_R = 3.442619855899;
const ZIG_V = 9.91256303526217e-3;
const M31 = 2147483648;
const KN = new Int32Array(128); // acceptance thresholds on |hz|
const WN = new Float64Array(128); // hz → x scale per layer
const FN = new Float64Array(128); // exp(-x²/2) at each layer's right edge
{
  let dn = ZIG_R;
  let tn = dn;
  const q = ZIG_V / Math.exp(-0.5 * dn * dn);
  KN[0] = Math.floor((dn / q) * M31);
  KN[1] = 0;
  WN[0] = q / M31;
  WN[127] = dn / M31;
  FN[0] = 1;
  FN[127] = Math.exp(-0.5 * dn * dn);
  for (let i = 126; i >= 1; i--) {
    dn = Math.sqrt(-2 * Math.log(ZIG_V / dn + Math.exp(-0.5 * dn * dn)));
    KN[i + 1] = Math.floor((dn / tn) * M31);
    tn = dn;
    FN[i] = Math.exp(-0.5 * dn * dn);
    WN[i] = dn / M31;
  }
}

const INV_2_24 = 1 / 16777216;

export class Rng {
  // xoshiro128** state, four int32 words (signed storage, same bits)
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  /**
   * @param seed any safe integer (both 32-bit halves are used)
   * @param stream an independent stream per name (e.g. a tensor name), so that the numbers of
   *   one tensor do not depend on which other tensors were generated before it
   */
  constructor(seed: number, stream: string | number = 0) {
    if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be a safe integer, got ${seed}`);
    const lo = seed >>> 0;
    const hi = Math.floor(seed / 4294967296) | 0;
    const s = typeof stream === "number" ? stream >>> 0 : hashString(stream);
    // splitmix32 spreads (seed, stream) over the four state words.
    let x = (lo ^ Math.imul(hi, 0x9e3779b9) ^ Math.imul(s, 0x85ebca6b)) | 0;
    const next = (): number => {
      x = (x + 0x9e3779b9) | 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return z ^ (z >>> 16);
    };
    this.s0 = next();
    this.s1 = next() ^ s;
    this.s2 = next() ^ hi;
    this.s3 = next();
    // An all-zero state would output zeros forever.
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** Next uniform 32-bit unsigned integer (xoshiro128**). */
  nextU32(): number {
    const s1 = this.s1;
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1) with 24 bits, exactly representable in float32. */
  uniform(): number {
    return (this.nextU32() >>> 8) * INV_2_24;
  }

  /** One standard normal. */
  normal(): number {
    const hz = this.nextU32() | 0;
    const iz = hz & 127;
    return Math.abs(hz) < KN[iz]! ? hz * WN[iz]! : this.normalSlow(hz, iz);
  }

  /** Fills `out` in place with mean + std · N(0, 1); returns it. */
  fillNormal(out: Float32Array, std = 1, mean = 0): Float32Array {
    const n = out.length;
    // The fast path is inlined with the state in locals: property access per draw halves the speed.
    let s0 = this.s0, s1 = this.s1, s2 = this.s2, s3 = this.s3;
    for (let i = 0; i < n; i++) {
      const hz = Math.imul(rotl(Math.imul(s1, 5), 7), 9);
      const t = s1 << 9;
      s2 ^= s0;
      s3 ^= s1;
      s1 ^= s2;
      s0 ^= s3;
      s2 ^= t;
      s3 = (s3 << 11) | (s3 >>> 21);
      const iz = hz & 127;
      if (Math.abs(hz) < KN[iz]!) {
        out[i] = mean + std * hz * WN[iz]!;
      } else {
        this.s0 = s0; this.s1 = s1; this.s2 = s2; this.s3 = s3;
        out[i] = mean + std * this.normalSlow(hz, iz);
        s0 = this.s0; s1 = this.s1; s2 = this.s2; s3 = this.s3;
      }
    }
    this.s0 = s0; this.s1 = s1; this.s2 = s2; this.s3 = s3;
    return out;
  }

  /** The rare (~1%) draws outside a layer's inner rectangle: wedge test, or the base layer's tail. */
  private normalSlow(hz: number, iz: number): number {
    for (;;) {
      const x = hz * WN[iz]!;
      if (iz === 0) {
        // Tail beyond R: Marsaglia's exponential method; u in (0, 1] keeps the logs finite.
        let tx: number, ty: number;
        do {
          tx = -Math.log(((this.nextU32() >>> 8) + 1) * INV_2_24) / ZIG_R;
          ty = -Math.log(((this.nextU32() >>> 8) + 1) * INV_2_24);
        } while (ty + ty < tx * tx);
        return hz > 0 ? ZIG_R + tx : -ZIG_R - tx;
      }
      if (FN[iz]! + this.uniform() * (FN[iz - 1]! - FN[iz]!) < Math.exp(-0.5 * x * x)) return x;
      hz = this.nextU32() | 0;
      iz = hz & 127;
      if (Math.abs(hz) < KN[iz]!) return hz * WN[iz]!;
    }
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/**
 * A sampling seed for one named row (e.g. "row 12"), from a run's seed: what a row draws then
 * depends on its name and the seed only, not on the rows batched with it. 32 bits, so any
 * libtorch generator takes it.
 */
export function rowSeed(seed: number, name: string): number {
  return new Rng(seed, `sampling:${name}`).nextU32();
}
