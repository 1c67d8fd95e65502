// Next-token distributions from logits, in float64: log-softmax, both KL directions, top-k.

/** log softmax of `logits` [V], in float64. */
export function logSoftmax(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  const shift = max + Math.log(sum);
  const out = new Float64Array(logits.length);
  for (let i = 0; i < logits.length; i++) out[i] = logits[i]! - shift;
  return out;
}

/** KL(P ‖ Q) = Σ P (log P − log Q) in nats, from log-probabilities. Terms with P = 0 add nothing. */
export function klDivergence(logP: Float64Array, logQ: Float64Array): number {
  if (logP.length !== logQ.length) throw new Error(`KL: distributions over ${logP.length} and ${logQ.length} tokens`);
  let kl = 0;
  for (let i = 0; i < logP.length; i++) {
    const p = Math.exp(logP[i]!);
    if (p > 0) kl += p * (logP[i]! - logQ[i]!);
  }
  // Rounding can leave a tiny negative sum for equal distributions; KL is never negative.
  return Math.max(0, kl);
}

/** The k most likely tokens, most likely first (ties: lower id first). */
export function topTokens(logP: Float64Array, k: number): { id: number; p: number }[] {
  const best: { id: number; lp: number }[] = [];
  for (let i = 0; i < logP.length; i++) {
    const lp = logP[i]!;
    if (best.length === k && lp <= best[k - 1]!.lp) continue;
    let at = best.length;
    while (at > 0 && best[at - 1]!.lp < lp) at--;
    best.splice(at, 0, { id: i, lp });
    if (best.length > k) best.pop();
  }
  return best.map((b) => ({ id: b.id, p: Math.exp(b.lp) }));
}
