/**
 * Percentile by linear interpolation between closest ranks (numpy's default), so p50/p95/p99
 * here match what a person gets from `numpy.percentile` on the same latencies.
 */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  const pos = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

export function mean(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  let s = 0;
  for (const v of values) s += v;
  return s / values.length;
}

export interface LatencySummary {
  p50: number;
  p95: number;
  p99: number;
  mean: number;
}

export function summarizeLatency(ms: readonly number[]): LatencySummary {
  return { p50: percentile(ms, 50), p95: percentile(ms, 95), p99: percentile(ms, 99), mean: mean(ms) };
}
