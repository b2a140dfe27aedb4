import type { Calibration } from '../../cascade/calibration.js';
import type { Pools, QueryPool } from './pool.js';
import { type EarlyExitPlan, type Plan, ndcg10, runPlan, Scratch } from './simulate.js';
import { calibrate } from '../../cascade/calibration.js';

export interface EarlyExitChoice {
  /** undefined when no query can be skipped within the allowed loss */
  rule?: EarlyExitPlan;
  /** on the tuning split */
  skipped: number;
  ndcgFull: number;
  ndcgWithExit: number;
  /** the loss allowed, relative to the plan without early exit (0.005 = 0.5%) */
  maxLoss: number;
  /** every threshold tried: tau, fraction skipped, nDCG@10 (for the trade-off chart) */
  curve: { margin: number; skipped: number; ndcg: number }[];
}

/**
 * Chooses the early-exit margin on the tuning split: the smallest tau (so the most queries
 * skip the last stage) whose mean nDCG@10 stays within `maxLoss` (relative) of running the
 * last stage on every query. A query skips when its margin (calibrated score of rank 1
 * minus rank k+1 of the stage before the last) is >= tau.
 */
export function tuneEarlyExit(pools: Pools, plan: Plan, calibration: Calibration, k: number, maxLoss: number, finalK: number): EarlyExitChoice {
  const scratch = new Scratch(pools.depth);
  const prevSteps = plan.steps.slice(0, -1);
  const light: Plan = { steps: prevSteps };
  const qs = pools.queries;
  const full = new Float64Array(qs.length);
  const lite = new Float64Array(qs.length);
  const margins = new Float64Array(qs.length);
  const prevStage = prevSteps[prevSteps.length - 1].stage;
  const prevK = prevSteps[prevSteps.length - 1].k;
  qs.forEach((q, i) => {
    full[i] = ndcg10(q, runPlan(q, pools, { ...plan, earlyExit: undefined }, finalK, scratch).top);
    // the light ranking the last stage would have received, cut to the final k if skipped
    const input = runPlan(q, pools, light, prevK, scratch).top;
    lite[i] = ndcg10(q, input.subarray(0, finalK));
    margins[i] = marginOf(q, prevStage, input, calibration, k);
  });
  const n = qs.length;
  const meanFull = full.reduce((a, b) => a + b, 0) / n;
  // Sort queries by margin, most confident first; skipping the first j costs sum(full - lite).
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => margins[b] - margins[a]);
  const curve: EarlyExitChoice['curve'] = [];
  let total = meanFull * n;
  let best: { margin: number; skipped: number; ndcg: number } | undefined;
  for (let j = 0; j < n; j++) {
    const qi = order[j];
    total += lite[qi] - full[qi];
    // queries with equal margins skip together: only thresholds between distinct margins count
    if (j + 1 < n && margins[order[j + 1]] === margins[qi]) continue;
    if (!Number.isFinite(margins[qi])) continue;
    const point = { margin: margins[qi], skipped: (j + 1) / n, ndcg: total / n };
    curve.push(point);
    if (point.ndcg >= meanFull * (1 - maxLoss)) best = point;
  }
  return {
    rule: best ? { margin: best.margin, k, calibration } : undefined,
    skipped: best?.skipped ?? 0,
    ndcgFull: meanFull,
    ndcgWithExit: best?.ndcg ?? meanFull,
    maxLoss,
    curve,
  };
}

function marginOf(q: QueryPool, stage: number, list: Int32Array, cal: Calibration, k: number): number {
  if (list.length <= k) return Infinity;
  const s = q.scores[stage];
  return calibrate(cal, s[list[0]]) - calibrate(cal, s[list[k]]);
}
