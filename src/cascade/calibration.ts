import { WinnowError } from '../core/errors.js';

/**
 * Maps a stage's raw score to a probability of relevance. Platt scaling is a logistic fit
 * `1 / (1 + exp(-(a*s + b)))`; `identity` is for scorers that already return calibrated
 * probabilities (hosted APIs), which must never be squashed through another sigmoid.
 */
export type Calibration = { kind: 'platt'; a: number; b: number } | { kind: 'identity' };

export function calibrate(c: Calibration | undefined, score: number): number {
  if (!c || c.kind === 'identity') return score;
  return 1 / (1 + Math.exp(-(c.a * score + c.b)));
}

export function describeCalibration(c: Calibration): Record<string, unknown> {
  return c.kind === 'platt' ? { platt: { a: c.a, b: c.b } } : { identity: true };
}

/** Reads a calibration from a spec: `{platt: {a, b}}` or `{identity: true}`. */
export function parseCalibration(raw: unknown, where: string): Calibration {
  if (raw && typeof raw === 'object') {
    const o = raw as Record<string, unknown>;
    if (o.identity === true) return { kind: 'identity' };
    const p = o.platt as Record<string, unknown> | undefined;
    if (p && typeof p.a === 'number' && typeof p.b === 'number') return { kind: 'platt', a: p.a, b: p.b };
  }
  throw new WinnowError('bad_spec', `${where}: calibration must be {platt: {a, b}} or {identity: true}`);
}
