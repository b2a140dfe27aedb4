import { type Calibration, calibrate } from '../../cascade/calibration.js';
import { WinnowError } from '../../core/errors.js';
import type { ScoreKind } from '../../core/types.js';

/** Fewer labelled pairs than this (or fewer relevant / non-relevant ones) and a fit is noise. */
export const MIN_CALIBRATION_PAIRS = 50;
export const MIN_CALIBRATION_POSITIVES = 5;
export const MIN_CALIBRATION_NEGATIVES = 5;
/** ECE uses this many equal-width bins over [0, 1]. */
export const ECE_BINS = 10;

export type CalibrationMethod = 'platt' | 'isotonic';

/** Refuses a fit on too little evidence, saying how much is needed. */
export function checkCalibrationData(labels: ArrayLike<number>, what: string): void {
  let pos = 0;
  for (let i = 0; i < labels.length; i++) if (labels[i] > 0) pos++;
  const neg = labels.length - pos;
  if (labels.length < MIN_CALIBRATION_PAIRS || pos < MIN_CALIBRATION_POSITIVES || neg < MIN_CALIBRATION_NEGATIVES) {
    throw new WinnowError(
      'bad_input',
      `too few labelled pairs to calibrate ${what}: ${labels.length} pairs (${pos} relevant, ${neg} not); ` +
        `calibration needs at least ${MIN_CALIBRATION_PAIRS} pairs with ${MIN_CALIBRATION_POSITIVES} relevant and ${MIN_CALIBRATION_NEGATIVES} non-relevant`,
      'use a larger tuning split, or leave out --calibrate',
    );
  }
}

/**
 * Platt scaling: p = sigmoid(a*s + b) fitted by Newton's method with a backtracking line
 * search (Lin, Lin and Weng, 2007), on Platt's smoothed targets (N+ + 1)/(N+ + 2) and
 * 1/(N- + 2), which keep a separable set from driving a to infinity. Scores are
 * standardised for the fit and the parameters mapped back.
 */
export function fitPlatt(scores: ArrayLike<number>, labels: ArrayLike<number>): { a: number; b: number } {
  const n = scores.length;
  let pos = 0;
  let mu = 0;
  for (let i = 0; i < n; i++) {
    if (labels[i] > 0) pos++;
    mu += scores[i];
  }
  mu /= n;
  let sd = 0;
  for (let i = 0; i < n; i++) sd += (scores[i] - mu) ** 2;
  sd = Math.sqrt(sd / n) || 1;
  const neg = n - pos;
  const hiT = (pos + 1) / (pos + 2);
  const loT = 1 / (neg + 2);
  const x = Float64Array.from({ length: n }, (_, i) => (scores[i] - mu) / sd);
  const t = Float64Array.from({ length: n }, (_, i) => (labels[i] > 0 ? hiT : loT));
  // Negative log-likelihood, computed without overflow for large |f|.
  const nll = (a: number, b: number) => {
    let f = 0;
    for (let i = 0; i < n; i++) {
      const z = a * x[i] + b;
      f += z >= 0 ? (1 - t[i]) * z + Math.log1p(Math.exp(-z)) : -t[i] * z + Math.log1p(Math.exp(z));
    }
    return f;
  };
  let a = 0;
  let b = Math.log((pos + 1) / (neg + 1));
  let f = nll(a, b);
  for (let iter = 0; iter < 100; iter++) {
    let g1 = 0;
    let g2 = 0;
    let h11 = 1e-12;
    let h22 = 1e-12;
    let h21 = 0;
    for (let i = 0; i < n; i++) {
      const z = a * x[i] + b;
      const p = 1 / (1 + Math.exp(-z));
      const d = p - t[i];
      const w = p * (1 - p);
      g1 += d * x[i];
      g2 += d;
      h11 += w * x[i] * x[i];
      h22 += w;
      h21 += w * x[i];
    }
    if (Math.abs(g1) < 1e-9 && Math.abs(g2) < 1e-9) break;
    const det = h11 * h22 - h21 * h21;
    const da = -(h22 * g1 - h21 * g2) / det;
    const db = -(-h21 * g1 + h11 * g2) / det;
    const gd = g1 * da + g2 * db;
    let step = 1;
    let moved = false;
    while (step >= 1e-10) {
      const nf = nll(a + step * da, b + step * db);
      if (nf < f + 1e-4 * step * gd) {
        a += step * da;
        b += step * db;
        f = nf;
        moved = true;
        break;
      }
      step /= 2;
    }
    if (!moved) break;
  }
  return { a: a / sd, b: b - (a * mu) / sd };
}

/**
 * Isotonic regression by pool adjacent violators over the scores in increasing order.
 * Equal scores are pooled first (a step function cannot give one score two values).
 * Returns the left edge and the mean label of every block.
 */
export function fitIsotonic(scores: ArrayLike<number>, labels: ArrayLike<number>): { x: number[]; y: number[] } {
  const idx = Array.from({ length: scores.length }, (_, i) => i).sort((i, j) => scores[i] - scores[j]);
  const xs: number[] = [];
  const sums: number[] = [];
  const counts: number[] = [];
  for (const i of idx) {
    const y = labels[i] > 0 ? 1 : 0;
    const last = xs.length - 1;
    if (last >= 0 && xs[last] === scores[i]) {
      sums[last] += y;
      counts[last]++;
    } else {
      xs.push(scores[i]);
      sums.push(y);
      counts.push(1);
    }
  }
  // A stack of blocks; merge while the newest block's mean is below the one before it.
  const bx: number[] = [];
  const bs: number[] = [];
  const bc: number[] = [];
  for (let i = 0; i < xs.length; i++) {
    bx.push(xs[i]);
    bs.push(sums[i]);
    bc.push(counts[i]);
    while (bx.length > 1) {
      const k = bx.length - 1;
      // equal means merge too, so the steps strictly increase and the table stays short
      if (bs[k - 1] / bc[k - 1] < bs[k] / bc[k]) break;
      bs[k - 1] += bs[k];
      bc[k - 1] += bc[k];
      bx.pop();
      bs.pop();
      bc.pop();
    }
  }
  return { x: bx, y: bs.map((s, i) => s / bc[i]) };
}

/**
 * What a stage's raw score means as a probability before any fitting, by its declared kind:
 * logits through a sigmoid, probabilities as they are, cosine similarities mapped from
 * [-1, 1] to [0, 1]. Unbounded scores (BM25) are no probability at all: undefined.
 */
export function rawProbability(kind: ScoreKind): ((s: number) => number) | undefined {
  switch (kind) {
    case 'logit':
      return (s) => 1 / (1 + Math.exp(-s));
    case 'probability':
      return (s) => Math.min(1, Math.max(0, s));
    case 'similarity':
      return (s) => Math.min(1, Math.max(0, (s + 1) / 2));
    case 'unbounded':
      return undefined;
  }
}

/**
 * Fits the requested calibration, respecting the scorer's kind: a `probability` is never
 * put through Platt's sigmoid (that would squash an already calibrated number toward 0.5),
 * so Platt on a probability scorer becomes identity; isotonic is allowed for every kind.
 */
export function fitCalibration(
  method: CalibrationMethod,
  kind: ScoreKind,
  scores: ArrayLike<number>,
  labels: ArrayLike<number>,
  what: string,
): { calibration: Calibration; note?: string } {
  if (method === 'platt' && kind === 'probability') {
    return { calibration: { kind: 'identity' }, note: `${what} already returns probabilities: kept as they are (identity), not put through a sigmoid` };
  }
  checkCalibrationData(labels, what);
  if (method === 'platt') {
    const { a, b } = fitPlatt(scores, labels);
    return { calibration: { kind: 'platt', a, b } };
  }
  const { x, y } = fitIsotonic(scores, labels);
  return { calibration: { kind: 'isotonic', x, y } };
}

export interface ReliabilityBin {
  lo: number;
  hi: number;
  count: number;
  /** mean predicted probability and observed fraction relevant in the bin */
  predicted: number;
  observed: number;
}

export interface CalibrationQuality {
  pairs: number;
  positives: number;
  /** expected calibration error over 10 equal-width bins, weighted by bin size */
  ece: number;
  brier: number;
  bins: ReliabilityBin[];
}

export function calibrationQuality(probs: ArrayLike<number>, labels: ArrayLike<number>): CalibrationQuality {
  const n = probs.length;
  const count = new Float64Array(ECE_BINS);
  const pSum = new Float64Array(ECE_BINS);
  const ySum = new Float64Array(ECE_BINS);
  let brier = 0;
  let positives = 0;
  for (let i = 0; i < n; i++) {
    const p = probs[i];
    const y = labels[i] > 0 ? 1 : 0;
    positives += y;
    brier += (p - y) ** 2;
    const b = Math.min(ECE_BINS - 1, Math.max(0, Math.floor(p * ECE_BINS)));
    count[b]++;
    pSum[b] += p;
    ySum[b] += y;
  }
  let ece = 0;
  const bins: ReliabilityBin[] = [];
  for (let b = 0; b < ECE_BINS; b++) {
    if (count[b] === 0) continue;
    const predicted = pSum[b] / count[b];
    const observed = ySum[b] / count[b];
    ece += (count[b] / n) * Math.abs(predicted - observed);
    bins.push({ lo: b / ECE_BINS, hi: (b + 1) / ECE_BINS, count: count[b], predicted, observed });
  }
  return { pairs: n, positives, ece, brier: brier / n, bins };
}

export function applyCalibration(c: Calibration, scores: ArrayLike<number>): Float64Array {
  return Float64Array.from({ length: scores.length }, (_, i) => calibrate(c, scores[i]));
}
