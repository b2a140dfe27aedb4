import type { Pools } from './pool.js';
import { logGrid } from './curves.js';
import { percentile } from '../stats.js';
import { pairedBootstrap } from './evidence.js';
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
 * How the budget choice tells plans apart on the tuning queries: a plan whose nDCG@10 is
 * below the best one's by no more than `minGain`, as far as a paired-bootstrap interval at
 * `level` can tell, counts as good as the best.
 */
export interface SelectOptions {
  minGain: number;
  level: number;
  resamples: number;
  seed: number;
}

/**
 * The budget planner: replays every configuration on the tuning pools and chooses among those
 * whose predicted per-query latency (p50 or p95) fits the budget (`chooseOnSubset`, on every
 * tuning query). When nothing fits, the cheapest plan is returned with `met: false`.
 */
export async function planForBudget(pools: Pools, finalK: number, budgetMs: number, stat: BudgetStat, select: SelectOptions): Promise<BudgetChoice> {
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
  const all = Array.from({ length: pools.queries.length }, (_, i) => i);
  const best = chooseOnSubset(points, all, budgetMs, stat, select);
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
 * The budget choice on some of the tuning queries (all of them, or a fold's training
 * queries), from the per-query numbers already computed: no replay. The plan with the best
 * nDCG@10 within the budget owes its rank to these queries as much as to its merit (the
 * winner of a hundred noisy comparisons), and on a small tuning set the near-ties it beats
 * are often deeper cascades that hold up better on unseen queries. So every plan within the
 * budget that is as good as the best (`SelectOptions`) is a candidate, and the chosen one
 * is the candidate closest to the heavy stage over the whole pool, the reference whose
 * quality the cascade is to keep: the most pairs for the spec's last stage, then for the
 * stage before it, and so on; then the cheaper. With many tuning queries the intervals are
 * narrow and this is the best plan; with few, the budget buys safety instead of a lucky cut.
 * A plan with a middle stage that keeps all it is given is no candidate: the plan without
 * that stage hands the same candidates on for less (and "most pairs for the stage before"
 * must not reward a stage for scoring without cutting).
 * `allow` restricts the candidates (plans keeping every stage). Undefined when no allowed
 * plan meets the budget on these queries.
 */
export function chooseOnSubset(
  points: readonly PlanPoint[],
  idx: readonly number[],
  budgetMs: number,
  stat: BudgetStat,
  select: SelectOptions,
  allow: (p: PlanPoint) => boolean = () => true,
): PlanPoint | undefined {
  const fits: { p: PlanPoint; ndcg: number; latency: number }[] = [];
  for (const p of points) {
    if (!allow(p) || cutsNothing(p.plan)) continue;
    const s = subsetStats(p.eval, idx, stat);
    if (s.latency <= budgetMs) fits.push({ p, ...s });
  }
  if (fits.length === 0) return undefined;
  const top = fits.reduce((a, b) => (b.ndcg > a.ndcg + 1e-12 || (Math.abs(b.ndcg - a.ndcg) <= 1e-12 && b.latency < a.latency) ? b : a));
  const diffs = new Float64Array(idx.length);
  const asGood = fits.filter((f) => {
    if (f === top) return true;
    idx.forEach((q, j) => (diffs[j] = f.p.eval.perQueryNdcg[q] - top.p.eval.perQueryNdcg[q]));
    return pairedBootstrap(diffs, select.resamples, select.level, select.seed).hi >= -select.minGain;
  });
  const pairs = (f: { p: PlanPoint }) => f.p.eval.perQueryPairs.map((perQuery) => meanAt(perQuery, idx));
  const keyed = asGood.map((f) => ({ f, pairs: pairs(f) }));
  keyed.sort((a, b) => {
    for (let s = a.pairs.length - 1; s >= 1; s--) if (Math.abs(a.pairs[s] - b.pairs[s]) > 1e-9) return b.pairs[s] - a.pairs[s];
    return a.f.latency - b.f.latency;
  });
  return keyed[0].f.p;
}

/** True when a stage between the first and the last keeps at least as many as it receives. */
export function cutsNothing(plan: Plan): boolean {
  const steps = plan.steps;
  for (let j = 1; j < steps.length - 1; j++) if (steps[j].k >= steps[j - 1].k) return true;
  return false;
}

function meanAt(values: ArrayLike<number>, idx: readonly number[]): number {
  let s = 0;
  for (const i of idx) s += values[i];
  return idx.length > 0 ? s / idx.length : 0;
}
