import type { Pools } from './pool.js';
import { logGrid } from './curves.js';
import { percentile } from '../stats.js';
import { type Plan, type PlanEval, type PlanStep, evaluatePlan, planLabel } from './simulate.js';

export type BudgetStat = 'p50' | 'p95';

export interface PlanPoint {
  label: string;
  plan: Plan;
  eval: PlanEval;
  /** on the quality/latency Pareto frontier of all configurations tried */
  pareto: boolean;
  withinBudget: boolean;
}

export interface BudgetChoice {
  points: PlanPoint[];
  best: PlanPoint;
  /** false: no plan meets the budget; `best` is then the cheapest plan */
  met: boolean;
}

/**
 * Every configuration the planner considers: each subset of stages that keeps the retriever
 * (dropping a reranker is allowed), with non-increasing cut-offs from the log grid for every
 * kept stage but the last, which returns the final k.
 */
export function enumeratePlans(pools: Pools, finalK: number, maxPlans = 20000): Plan[] {
  const n = pools.stages.length;
  let grid = logGrid(Math.max(5, finalK), pools.depth);
  const build = (g: number[]): Plan[] => {
    const plans: Plan[] = [];
    for (let mask = 0; mask < 1 << (n - 1); mask++) {
      const active = [0];
      for (let s = 1; s < n; s++) if (mask & (1 << (s - 1))) active.push(s);
      const walk = (j: number, prevK: number, steps: PlanStep[]) => {
        if (j === active.length - 1) {
          plans.push({ steps: [...steps, { stage: active[j], k: finalK }] });
          return;
        }
        for (const k of g) if (k <= prevK) walk(j + 1, k, [...steps, { stage: active[j], k }]);
      };
      walk(0, pools.depth, []);
    }
    return plans;
  };
  let plans = build(grid);
  // Deep cascades multiply the grid; thin it rather than spend minutes replaying plans.
  while (plans.length > maxPlans && grid.length > 3) {
    grid = grid.filter((_, i) => i % 2 === 0 || i === grid.length - 1);
    plans = build(grid);
  }
  return plans;
}

/** Marks the points no other point beats on both quality (higher) and latency (lower). */
export function markPareto(points: { quality: number; latency: number }[]): boolean[] {
  const order = points.map((_, i) => i).sort((a, b) => points[a].latency - points[b].latency || points[b].quality - points[a].quality);
  const out = new Array<boolean>(points.length).fill(false);
  let best = -Infinity;
  for (const i of order) {
    if (points[i].quality > best) {
      out[i] = true;
      best = points[i].quality;
    }
  }
  return out;
}

/**
 * The budget planner: replays every configuration on the tuning pools and keeps the one with
 * the best nDCG@10 whose predicted per-query latency (p50 or p95) fits the budget; ties go
 * to the cheaper plan. When nothing fits, the cheapest plan is returned with `met: false`.
 */
export async function planForBudget(pools: Pools, finalK: number, budgetMs: number, stat: BudgetStat): Promise<BudgetChoice> {
  const plans = enumeratePlans(pools, finalK);
  const evals: PlanEval[] = [];
  for (const plan of plans) evals.push(await evaluatePlan(pools, plan, finalK));
  const pareto = markPareto(evals.map((e) => ({ quality: e['nDCG@10'], latency: e.latencyMs[stat] })));
  const points: PlanPoint[] = plans.map((plan, i) => ({
    label: planLabel(pools, plan, finalK),
    plan,
    eval: evals[i],
    pareto: pareto[i],
    withinBudget: evals[i].latencyMs[stat] <= budgetMs,
  }));
  let best: PlanPoint | undefined;
  for (const p of points) {
    if (!p.withinBudget) continue;
    if (
      !best ||
      p.eval['nDCG@10'] > best.eval['nDCG@10'] + 1e-12 ||
      (Math.abs(p.eval['nDCG@10'] - best.eval['nDCG@10']) <= 1e-12 && p.eval.latencyMs[stat] < best.eval.latencyMs[stat])
    ) {
      best = p;
    }
  }
  if (best) return { points, best, met: true };
  const cheapest = points.reduce((a, b) => (b.eval.latencyMs[stat] < a.eval.latencyMs[stat] ? b : a));
  return { points, best: cheapest, met: false };
}

/** A plan's quality and latency statistic over some of the tuning queries (indices into them). */
export function subsetStats(e: PlanEval, idx: readonly number[], stat: BudgetStat): { ndcg: number; latency: number } {
  let sum = 0;
  const ms: number[] = new Array(idx.length);
  idx.forEach((i, j) => {
    sum += e.perQueryNdcg[i];
    ms[j] = e.perQueryMs[i];
  });
  return { ndcg: sum / idx.length, latency: percentile(ms, stat === 'p50' ? 50 : 95) };
}

/**
 * The budget choice of `planForBudget` made again on a subset of the tuning queries (a
 * fold's training queries), from the per-query numbers already computed: no replay.
 * `allow` restricts the candidates (plans keeping every stage). Undefined when no allowed
 * plan meets the budget on that subset.
 */
export function chooseOnSubset(
  points: readonly PlanPoint[],
  idx: readonly number[],
  budgetMs: number,
  stat: BudgetStat,
  allow: (p: PlanPoint) => boolean = () => true,
): PlanPoint | undefined {
  let best: { p: PlanPoint; ndcg: number; latency: number } | undefined;
  for (const p of points) {
    if (!allow(p)) continue;
    const s = subsetStats(p.eval, idx, stat);
    if (s.latency > budgetMs) continue;
    if (!best || s.ndcg > best.ndcg + 1e-12 || (Math.abs(s.ndcg - best.ndcg) <= 1e-12 && s.latency < best.latency)) best = { p, ...s };
  }
  return best?.p;
}
