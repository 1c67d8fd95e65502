// Typed access to parsed command-line options, with usage errors that exit with code 2.

import { MelboError } from "../errors.js";

export class UsageError extends MelboError {}

export type Values = Record<string, string | boolean | string[] | undefined>;

export function str(v: Values, key: string): string | undefined {
  const x = v[key];
  return typeof x === "string" ? x : undefined;
}

export function required(v: Values, key: string): string {
  const x = str(v, key);
  if (x === undefined || x === "") throw new UsageError(`--${key} is required`);
  return x;
}

export function int(v: Values, key: string, fallback: number, min = -Infinity): number {
  const x = str(v, key);
  if (x === undefined) return fallback;
  const n = Number(x);
  if (!Number.isInteger(n)) throw new UsageError(`--${key} must be an integer, got "${x}"`);
  if (n < min) throw new UsageError(`--${key} must be >= ${min}, got ${n}`);
  return n;
}

export function num(v: Values, key: string, fallback: number): number {
  const x = str(v, key);
  if (x === undefined) return fallback;
  const n = Number(x);
  if (!Number.isFinite(n)) throw new UsageError(`--${key} must be a number, got "${x}"`);
  return n;
}

export function intList(v: Values, key: string): number[] {
  const x = str(v, key);
  if (x === undefined || x.trim() === "") return [];
  return x.split(",").map((s) => {
    const n = Number(s.trim());
    if (!Number.isInteger(n)) throw new UsageError(`--${key} must be a comma-separated list of integers, got "${x}"`);
    return n;
  });
}

export function flag(v: Values, key: string): boolean {
  return v[key] === true;
}

export function oneOf<T extends string>(v: Values, key: string, allowed: readonly T[], fallback: T): T {
  const x = str(v, key);
  if (x === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(x)) throw new UsageError(`--${key} must be one of ${allowed.join(", ")}, got "${x}"`);
  return x as T;
}
