import { WinnowError } from '../../core/errors.js';
import { percentile } from '../stats.js';
import { seededRandom } from './random.js';

/**
 * How much evidence an optional step (fusion, early exit, a dropped stage) needs before the
 * tuner adopts it: a gain of at least `minGain` nDCG@10 under k-fold cross-validation over the
 * tuning queries, and a paired-bootstrap interval of that gain (at `level`) above zero.
 */
export interface EvidenceOptions {
  folds: number;
  minGain: number;
  /** two-sided level of the bootstrap interval (0.95: the 2.5th to 97.5th percentile) */
  level: number;
  resamples: number;
  seed: number;
}

export const DEFAULT_MIN_GAIN = 0.001;
export const DEFAULT_LEVEL = 0.95;

/**
 * Folds for n tuning queries: 5, or fewer so that each fold holds at least 6 queries
 * (a held-in fold smaller than that measures nothing); 30 queries give 5 folds of 6,
 * 2000 give 5 folds of 400. Under 12 queries there is no cross-validation: 0.
 */
export function defaultFolds(n: number): number {
  const k = Math.min(5, Math.floor(n / 6));
  return k >= 2 ? k : 0;
}

/** Checks a --folds value against the tuning split, with a message saying what would work. */
export function checkFolds(folds: number, n: number): void {
  if (!Number.isInteger(folds) || folds < 2) throw new WinnowError('usage', `--folds must be an integer >= 2, got ${folds}`);
  if (folds * 2 > n) {
    throw new WinnowError(
      'usage',
      `--folds ${folds} needs at least 2 tuning queries per fold; the tuning split has ${n} queries with a relevant document`,
      `use --folds ${Math.max(2, Math.floor(n / 2))} or fewer, or leave it out (default: min(5, n/6))`,
    );
  }
}

/** Fold of each query: a seeded shuffle dealt round-robin, so folds differ in size by at most 1. */
export function queryFolds(n: number, folds: number, seed: number): Int32Array {
  const rnd = seededRandom(seed);
  const idx = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  const out = new Int32Array(n);
  idx.forEach((q, pos) => (out[q] = pos % folds));
  return out;
}

/** Indices of the queries in fold f (`held`) and of all others (`train`). */
export function foldSplit(assignment: Int32Array, f: number): { train: number[]; held: number[] } {
  const train: number[] = [];
  const held: number[] = [];
  assignment.forEach((a, i) => (a === f ? held : train).push(i));
  return { train, held };
}

export interface Interval {
  level: number;
  lo: number;
  hi: number;
}

/**
 * Paired bootstrap of a mean difference: `diffs[i]` is one query's (with − without), so both
 * plans are resampled on the same queries. Seeded: the same interval on every run.
 */
export function pairedBootstrap(diffs: ArrayLike<number>, resamples: number, level: number, seed: number): Interval {
  const n = diffs.length;
  if (n === 0) return { level, lo: NaN, hi: NaN };
  const rnd = seededRandom(seed);
  const means: number[] = new Array(resamples);
  for (let b = 0; b < resamples; b++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += diffs[Math.floor(rnd() * n)];
    means[b] = s / n;
  }
  const tail = (100 * (1 - level)) / 2;
  return { level, lo: percentile(means, tail), hi: percentile(means, 100 - tail) };
}

/** What the tuner found for one optional step, and why it was or was not adopted. */
export interface StepEvidence {
  step: 'fusion' | 'early exit' | 'dropped stage';
  /** the step as fitted on the whole tuning split */
  detail: string;
  /** nDCG@10 with − without, on the whole tuning split (the fit's own data) */
  tuneGain: number;
  /** nDCG@10 with − without, each fold's queries judged by a fit on the other folds */
  cvGain: number;
  /** the same per fold */
  foldGains: number[];
  /** paired-bootstrap interval of `cvGain` */
  interval: Interval;
  /** nDCG@10 with − without on the held-out split: reported, never used to choose */
  testGain: number;
  adopted: boolean;
  reason: string;
  /** what the step saves, when that is its point (early exit: share of queries that skip) */
  skipped?: { tune: number; cv: number; test: number };
}

/**
 * The adoption rule for a step meant to raise quality: cross-validated gain >= minGain and
 * the interval above zero. The reason says which test failed, with the numbers.
 */
export function judgeGain(cvGain: number, interval: Interval, o: EvidenceOptions): { adopted: boolean; reason: string } {
  const ci = formatInterval(interval);
  if (!(cvGain >= o.minGain)) {
    return { adopted: false, reason: `cross-validated gain ${signed(cvGain)} is under --min-gain ${o.minGain} (${ci})` };
  }
  if (!(interval.lo > 0)) return { adopted: false, reason: `the ${ci} includes 0: the gain may be noise` };
  return { adopted: true, reason: `cross-validated gain ${signed(cvGain)} >= ${o.minGain}, ${ci} excludes 0` };
}

export function formatInterval(i: Interval): string {
  return `${Math.round(100 * i.level)}% interval [${signed(i.lo)}, ${signed(i.hi)}]`;
}

export function signed(x: number): string {
  return Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${x.toFixed(4)}` : 'n/a';
}

/** A spread of values as `min-max` (one value when they agree). */
export function spread(values: readonly number[]): { min: number; max: number } {
  return { min: Math.min(...values), max: Math.max(...values) };
}
