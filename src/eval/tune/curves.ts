import { percentile } from '../stats.js';
import type { Pools } from './pool.js';
import { seededRandom } from './random.js';
import { evaluateRanking, parseMeasure } from '../metrics.js';
import { type Plan, type PlanStep, evaluatePlan, rankedIds, replayPlan } from './simulate.js';

/**
 * Cut-offs to try: log-spaced "nice" numbers (1, 1.5, 2, 3, 5, 7.5 per decade) from `min`
 * to `max`, plus `max` itself so the curve always reaches the whole input.
 */
export function logGrid(min: number, max: number): number[] {
  const steps = [1, 1.5, 2, 3, 5, 7.5];
  const out = new Set<number>();
  for (let decade = 1; decade <= max; decade *= 10) {
    for (const s of steps) {
      const k = Math.round(s * decade);
      if (k >= min && k <= max) out.add(k);
    }
  }
  if (max >= min) out.add(max);
  return [...out].sort((a, b) => a - b);
}

export interface CurvePoint {
  k: number;
  /** R@k of this stage's output, mean over queries, with a 95% bootstrap interval */
  recall: number;
  recallLo: number;
  recallHi: number;
  /** nDCG@10 after the next stage when this stage keeps k (absent for the last stage) */
  ndcgNext?: number;
  ndcgNextLo?: number;
  ndcgNextHi?: number;
}

export interface StageCurve {
  stage: string;
  /** candidates this stage ranks (the cut-off of the stage before) */
  inputK: number;
  points: CurvePoint[];
  plateau: {
    k: number;
    recall: number;
    /** max recall on the grid; the plateau is within epsilon of it */
    maxRecall: number;
    epsilon: number;
    /** 95% bootstrap interval of the plateau k itself */
    kLo: number;
    kHi: number;
  };
}

export interface CurveOptions {
  epsilon: number;
  finalK: number;
  resamples: number;
  seed: number;
  minK?: number;
}

/** Smallest k whose recall is within epsilon of the best recall on the grid. */
export function plateauIndex(recall: ArrayLike<number>, epsilon: number): number {
  let max = -Infinity;
  for (let i = 0; i < recall.length; i++) max = Math.max(max, recall[i]);
  for (let i = 0; i < recall.length; i++) if (recall[i] >= max - epsilon) return i;
  return recall.length - 1;
}

/**
 * Recall curves stage by stage, each conditional on the plateau cut-offs chosen for the
 * stages before it (the way a person sizes a cascade by hand, done carefully). Returns the
 * curves and the resulting plateau plan.
 */
export async function recallCurves(pools: Pools, opts: CurveOptions): Promise<{ curves: StageCurve[]; plan: Plan }> {
  const qs = pools.queries;
  const nStages = pools.stages.length;
  const chosen: PlanStep[] = [];
  const curves: StageCurve[] = [];
  let inputK = pools.depth;
  for (let s = 0; s < nStages - 1; s++) {
    const grid = logGrid(opts.minK ?? 5, inputK);
    const hasNext = s + 1 < nStages;
    const rec = grid.map(() => new Float64Array(qs.length));
    const nd: Float64Array[] = grid.map(() => new Float64Array(qs.length));
    for (let g = 0; g < grid.length; g++) {
      const k = grid[g];
      const own: Plan = { steps: [...chosen, { stage: s, k }] };
      const recallK = parseMeasure(`R@${k}`);
      const { rankings } = await replayPlan(pools, own, k);
      qs.forEach((q, qi) => {
        rec[g][qi] = evaluateRanking(q.judged, rankedIds(rankings[qi]), recallK);
      });
      if (hasNext) nd[g] = (await evaluatePlan(pools, { steps: [...chosen, { stage: s, k }, { stage: s + 1, k: opts.finalK }] }, opts.finalK)).perQueryNdcg;
    }
    const curve = bootstrapCurve(pools.stages[s].name, inputK, grid, rec, hasNext ? nd : undefined, opts);
    curves.push(curve);
    chosen.push({ stage: s, k: curve.plateau.k });
    inputK = curve.plateau.k;
  }
  chosen.push({ stage: nStages - 1, k: opts.finalK });
  return { curves, plan: { steps: chosen } };
}

function bootstrapCurve(
  stage: string,
  inputK: number,
  grid: number[],
  rec: Float64Array[],
  nd: Float64Array[] | undefined,
  opts: CurveOptions,
): StageCurve {
  const nq = rec[0].length;
  const meanOf = (a: Float64Array) => a.reduce((x, y) => x + y, 0) / nq;
  const recall = rec.map(meanOf);
  const ndcg = nd?.map(meanOf);
  const p = plateauIndex(recall, opts.epsilon);
  const rnd = seededRandom(opts.seed);
  const bootRecall = grid.map(() => new Float64Array(opts.resamples));
  const bootNdcg = grid.map(() => new Float64Array(opts.resamples));
  const bootK: number[] = [];
  const sample = new Int32Array(nq);
  const meanR = new Float64Array(grid.length);
  for (let b = 0; b < opts.resamples; b++) {
    for (let i = 0; i < nq; i++) sample[i] = Math.floor(rnd() * nq);
    for (let g = 0; g < grid.length; g++) {
      let sr = 0;
      let sn = 0;
      const rg = rec[g];
      const ng = nd?.[g];
      for (let i = 0; i < nq; i++) {
        sr += rg[sample[i]];
        if (ng) sn += ng[sample[i]];
      }
      meanR[g] = sr / nq;
      bootRecall[g][b] = meanR[g];
      bootNdcg[g][b] = sn / nq;
    }
    bootK.push(grid[plateauIndex(meanR, opts.epsilon)]);
  }
  const lo = (a: Float64Array) => percentile(Array.from(a), 2.5);
  const hi = (a: Float64Array) => percentile(Array.from(a), 97.5);
  const points: CurvePoint[] = grid.map((k, g) => {
    const pt: CurvePoint = { k, recall: recall[g], recallLo: lo(bootRecall[g]), recallHi: hi(bootRecall[g]) };
    if (ndcg) Object.assign(pt, { ndcgNext: ndcg[g], ndcgNextLo: lo(bootNdcg[g]), ndcgNextHi: hi(bootNdcg[g]) });
    return pt;
  });
  return {
    stage,
    inputK,
    points,
    plateau: {
      k: grid[p],
      recall: recall[p],
      maxRecall: Math.max(...recall),
      epsilon: opts.epsilon,
      kLo: percentile(bootK, 2.5),
      kHi: percentile(bootK, 97.5),
    },
  };
}
