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

/** A comma-separated list of finite numbers ("1", "-2,0.5,4"); `fallback` when the flag is absent. */
export function numList(v: Values, key: string, fallback: number[]): number[] {
  const x = str(v, key);
  if (x === undefined) return fallback;
  const list = x.split(",").map((s) => Number(s.trim()));
  if (x.trim() === "" || list.some((n) => !Number.isFinite(n))) throw new UsageError(`--${key} must be a number or a comma-separated list of numbers, got "${x}"`);
  return list;
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

/**
 * `--scale -2` → `--scale=-2` for the string flags of `table`: node's parseArgs refuses a value
 * that starts with a dash as ambiguous, but a negative number after a flag that takes a value
 * can only be that value.
 */
export function joinNegativeNumbers(args: readonly string[], takesValue: (name: string) => boolean): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!, next = args[i + 1];
    if (a.startsWith("--") && !a.includes("=") && takesValue(a.slice(2)) && next !== undefined && /^-(\d|\.\d)[\d.,eE+-]*$/.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else {
      out.push(a);
    }
  }
  return out;
}
