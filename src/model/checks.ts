// The checks every public entry point makes on blocks and values, written once: Model's methods,
// both searches and the CLI call these, so a mistake is reported with the same words everywhere.

import { MelboError } from "../errors.js";

/** Block `k` exists in a model of `numLayers` blocks (0-based; `what` names it in the message). */
export function checkBlock(numLayers: number, k: number, what: string): void {
  if (!Number.isInteger(k) || k < 0 || k >= numLayers) {
    throw new MelboError(`${what} ${k} is out of range: this model has blocks 0..${numLayers - 1}`);
  }
}

/** The slice from the output of block `source` to the output of block `target`: both exist, source first. */
export function checkSlice(numLayers: number, source: number, target: number): void {
  checkBlock(numLayers, source, "source block");
  checkBlock(numLayers, target, "target block");
  if (source >= target) throw new MelboError(`source block ${source} must come before target block ${target}`);
}

/** Every value is finite (`what` names the array in the message). */
export function checkFinite(values: ArrayLike<number>, what: string): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i]!)) throw new MelboError(`${what} contains a non-finite value (${values[i]}) at index ${i}`);
  }
}
