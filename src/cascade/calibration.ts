import { WinnowError } from '../core/errors.js';

/**
 * Maps a stage's raw score to a probability of relevance. Platt scaling is a logistic fit
 * `1 / (1 + exp(-(a*s + b)))`; `identity` is for scorers that already return calibrated
 * probabilities (hosted APIs), which must never be squashed through another sigmoid.
 */
export type Calibration =
  | { kind: 'platt'; a: number; b: number }
  | { kind: 'identity' }
  /**
   * Isotonic regression (pool adjacent violators) as a step function: a score s maps to
   * y[i] for the last i with x[i] <= s, and to y[0] below x[0]. Unlike Platt it assumes no
   * shape, so it also recalibrates scores that are already probabilities.
   */
  | { kind: 'isotonic'; x: number[]; y: number[] };

export function calibrate(c: Calibration | undefined, score: number): number {
  if (!c || c.kind === 'identity') return score;
  if (c.kind === 'isotonic') {
    // binary search for the last step at or below the score
    let lo = 0;
    let hi = c.x.length - 1;
    if (score < c.x[0]) return c.y[0];
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (c.x[mid] <= score) lo = mid;
      else hi = mid - 1;
    }
    return c.y[lo];
  }
  return 1 / (1 + Math.exp(-(c.a * score + c.b)));
}

export function describeCalibration(c: Calibration): Record<string, unknown> {
  if (c.kind === 'platt') return { platt: { a: c.a, b: c.b } };
  if (c.kind === 'isotonic') return { isotonic: { x: [...c.x], y: [...c.y] } };
  return { identity: true };
}

const CALIBRATION_FORMS = 'calibration must be {platt: {a, b}}, {isotonic: {x: [...], y: [...]}} or {identity: true}';

/** Reads a calibration from a spec: `{platt: {a, b}}`, `{isotonic: {x, y}}` or `{identity: true}`. */
export function parseCalibration(raw: unknown, where: string): Calibration {
  if (raw && typeof raw === 'object') {
    const o = raw as Record<string, unknown>;
    if (o.identity === true) return { kind: 'identity' };
    const p = o.platt as Record<string, unknown> | undefined;
    if (p && typeof p.a === 'number' && typeof p.b === 'number') return { kind: 'platt', a: p.a, b: p.b };
    if (o.isotonic !== undefined) return parseIsotonic(o.isotonic, `${where}.isotonic`);
  }
  throw new WinnowError('bad_spec', `${where}: ${CALIBRATION_FORMS}`);
}

function parseIsotonic(raw: unknown, where: string): Calibration {
  const o = (raw && typeof raw === 'object' ? raw : {}) as Record<string, unknown>;
  const { x, y } = o;
  const numbers = (v: unknown): v is number[] => Array.isArray(v) && v.every((n) => typeof n === 'number' && Number.isFinite(n));
  if (!numbers(x) || !numbers(y) || x.length === 0 || x.length !== y.length) {
    throw new WinnowError('bad_spec', `${where}: expected {x: [numbers], y: [numbers]} of the same non-zero length`);
  }
  for (let i = 1; i < x.length; i++) {
    if (!(x[i] > x[i - 1])) throw new WinnowError('bad_spec', `${where}.x: must increase strictly (x[${i}] = ${x[i]} after ${x[i - 1]})`);
    if (y[i] < y[i - 1]) throw new WinnowError('bad_spec', `${where}.y: must not decrease (y[${i}] = ${y[i]} after ${y[i - 1]})`);
  }
  if (y[0] < 0 || y[y.length - 1] > 1) throw new WinnowError('bad_spec', `${where}.y: probabilities must lie in [0, 1]`);
  return { kind: 'isotonic', x: [...x], y: [...y] };
}
