import { WinnowError } from './errors.js';

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
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new WinnowError('bad_spec', `${where}: expected a positive integer`);
  return v;
}
