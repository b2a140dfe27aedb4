import type { Calibration } from '../../cascade/calibration.js';
import { TopK } from '../../cascade/cutoff.js';
import { EarlyExit } from '../../cascade/early-exit.js';
import type { Pools, QueryPool } from './pool.js';
import { type EarlyExitPlan, type Plan, evaluatePlan, perQueryNdcg10, replayPlan } from './simulate.js';

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
export async function tuneEarlyExit(
  pools: Pools,
  plan: Plan,
  calibration: Calibration,
  k: number,
  maxLoss: number,
  finalK: number,
  qs: readonly QueryPool[] = pools.queries,
): Promise<EarlyExitChoice> {
  const full = (await evaluatePlan(pools, { ...plan, earlyExit: undefined }, finalK, qs)).perQueryNdcg;
  // the ranking the last stage would have received, cut to the final k when it is skipped
  const { rankings } = await replayPlan(pools, plan, finalK, qs, plan.steps.length - 1);
  const lite = perQueryNdcg10(
    qs,
    rankings.map((r) => ({ ...r, hits: r.hits.slice(0, finalK) })),
  );
  // the confidence the `EarlyExit` stage itself computes (its `then` plays no part in it)
  const rule = new EarlyExit([new TopK(finalK)], 0, k, calibration);
  const margins = Float64Array.from(rankings, (r) => rule.confidence(r));
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
