import { type ErrorCode, WinnowError } from './errors.js';

/**
 * Checks for values read from specs and flags: each names where the value came from, so a
 * person can find it (`cascade.yaml: stages[2].k: expected a positive integer`).
 */
export function str(v: unknown, where: string): string {
  if (typeof v !== 'string' || v === '') throw new WinnowError('bad_spec', `${where}: expected a non-empty string`);
  return v;
}

export function num(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new WinnowError('bad_spec', `${where}: expected a number`);
  return v;
}

export function posInt(v: unknown, where: string): number {
  if (!isIntAtLeast(v, 1)) throw new WinnowError('bad_spec', `${where}: expected a positive integer`);
  return v;
}

export function isIntAtLeast(v: unknown, min: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min;
}

/**
 * The one integer check for flags, spec options and limits: `what must be an integer >= min,
 * got …` (or `a positive integer` when min is 1), with the error code of where the value came from.
 */
export function intAtLeast(v: unknown, what: string, opts: { min?: number; code?: ErrorCode; hint?: string; got?: string } = {}): number {
  const min = opts.min ?? 1;
  if (isIntAtLeast(v, min)) return v;
  const must = min === 1 ? 'a positive integer' : `an integer >= ${min}`;
  throw new WinnowError(opts.code ?? 'bad_spec', `${what} must be ${must}, got ${opts.got ?? String(v)}`, opts.hint);
}
