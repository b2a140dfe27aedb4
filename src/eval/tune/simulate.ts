import { type Calibration, calibrate } from '../../cascade/calibration.js';
import { percentile } from '../stats.js';
import type { Pools, QueryPool } from './pool.js';

/** One active stage of a plan and how many candidates it keeps (the last step: the final k). */
export interface PlanStep {
  stage: number;
  k: number;
}

export type FusionPlan = { kind: 'rrf'; k: number } | { kind: 'linear'; weights: number[] };

/**
 * Skip the last stage for a query when the stage before it is confident: the calibrated
 * score of its rank 1 minus that of rank k+1 is at least `margin`.
 */
export interface EarlyExitPlan {
  margin: number;
  k: number;
  calibration?: Calibration;
}

/**
 * A cascade configuration to replay on scored pools: the stages kept (the first is always
 * the retriever), their cut-offs, and optionally fusion of the rerankers' scores over the
 * last stage's input and an early exit before the last stage.
 */
export interface Plan {
  steps: PlanStep[];
  fusion?: FusionPlan;
  earlyExit?: EarlyExitPlan;
}

export interface QueryOutcome {
  /** final ranking as pool indices, best first */
  top: Int32Array;
  /** pairs each stage scored for this query (0 for the retriever and skipped stages) */
  pairs: Float64Array;
  ms: number;
  skipped: boolean;
}

export interface PlanEval {
  queries: number;
  'nDCG@10': number;
  'R@10': number;
  perQueryNdcg: Float64Array;
  /** mean pairs per query, per stage of the pool */
  pairs: number[];
  latencyMs: { p50: number; p95: number; mean: number };
  /** fraction of queries whose last stage was skipped by the early exit */
  skipped: number;
}

/** Reusable scratch memory, so replaying thousands of plans allocates little. */
export class Scratch {
  mark: Int32Array;
  gen = 0;
  constructor(depth: number) {
    this.mark = new Int32Array(depth);
  }
}

/** Replays one plan on one query's pool. */
export function runPlan(q: QueryPool, pools: Pools, plan: Plan, finalK: number, scratch: Scratch): QueryOutcome {
  const pairs = new Float64Array(pools.stages.length);
  let ms = q.retrieveMs;
  const first = plan.steps[0];
  const o0 = q.order[first.stage];
  let list = o0.subarray(0, Math.min(plan.steps.length === 1 ? finalK : first.k, o0.length));
  let skipped = false;
  for (let j = 1; j < plan.steps.length; j++) {
    const step = plan.steps[j];
    const last = j === plan.steps.length - 1;
    if (last && plan.earlyExit) {
      const prev = plan.steps[j - 1].stage;
      if (margin(q, prev, list, plan.earlyExit) >= plan.earlyExit.margin) {
        skipped = true;
        list = list.subarray(0, Math.min(finalK, list.length));
        break;
      }
    }
    const cost = pools.stages[step.stage].cost;
    pairs[step.stage] = list.length;
    ms += cost.fixedMs + q.pairMs[step.stage - 1] * list.length;
    const keep = last ? finalK : step.k;
    if (last && plan.fusion) {
      list = fuse(q, plan, list, finalK, scratch);
      break;
    }
    list = filterOrder(q.order[step.stage], list, keep, scratch);
  }
  return { top: list, pairs, ms, skipped };
}

/** The first `keep` entries of `order` that are in `members`, in `order`'s order. */
function filterOrder(order: Int32Array, members: Int32Array, keep: number, scratch: Scratch): Int32Array {
  const gen = ++scratch.gen;
  const mark = scratch.mark;
  for (let i = 0; i < members.length; i++) mark[members[i]] = gen;
  const n = Math.min(keep, members.length);
  const out = new Int32Array(n);
  let m = 0;
  for (let i = 0; i < order.length && m < n; i++) if (mark[order[i]] === gen) out[m++] = order[i];
  return out;
}

function margin(q: QueryPool, stage: number, list: Int32Array, rule: EarlyExitPlan): number {
  if (list.length <= rule.k) return Infinity;
  const s = q.scores[stage];
  return calibrate(rule.calibration, s[list[0]]) - calibrate(rule.calibration, s[list[rule.k]]);
}

/**
 * Fusion over the last stage's input, exactly as `Fusion` computes it in a cascade: each
 * reranker's ranking of that input, fused by RRF or a weighted sum of min-max normalised scores.
 */
function fuse(q: QueryPool, plan: Plan, list: Int32Array, finalK: number, scratch: Scratch): Int32Array {
  const fusion = plan.fusion as FusionPlan;
  const stages = rerankSteps(plan);
  const fused = new Float64Array(list.length);
  const pos = new Map<number, number>();
  list.forEach((d, i) => pos.set(d, i));
  stages.forEach((s, si) => {
    const ranked = filterOrder(q.order[s], list, list.length, scratch);
    if (fusion.kind === 'rrf') {
      for (let r = 0; r < ranked.length; r++) fused[pos.get(ranked[r]) as number] += 1 / (fusion.k + r + 1);
      return;
    }
    const sc = q.scores[s];
    let lo = Infinity;
    let hi = -Infinity;
    for (const d of ranked) {
      lo = Math.min(lo, sc[d]);
      hi = Math.max(hi, sc[d]);
    }
    const span = hi - lo;
    for (const d of ranked) fused[pos.get(d) as number] += fusion.weights[si] * (span > 0 ? (sc[d] - lo) / span : 1);
  });
  const idx = Array.from(list.keys());
  idx.sort((a, b) => {
    if (fused[a] !== fused[b]) return fused[b] - fused[a];
    const da = q.docIds[list[a]];
    const db = q.docIds[list[b]];
    return da > db ? -1 : da < db ? 1 : 0;
  });
  return Int32Array.from(idx.slice(0, finalK), (i) => list[i]);
}

/** Stage indices of the rerankers a plan runs: the lists fusion combines. */
export function rerankSteps(plan: Plan): number[] {
  return plan.steps.slice(1).map((s) => s.stage);
}

/** nDCG@10 of a ranking of pool indices (gains are raw qrels values, as in metrics.ts). */
export function ndcg10(q: QueryPool, top: ArrayLike<number>): number {
  if (q.idcg10 === 0) return 0;
  let dcg = 0;
  const n = Math.min(10, top.length);
  for (let i = 0; i < n; i++) {
    const g = q.gain[top[i]];
    if (g > 0) dcg += g / Math.log2(i + 2);
  }
  return dcg / q.idcg10;
}

/** R@k: relevant documents (qrels value >= 1) in the first k, over all relevant ones. */
export function recallAt(q: QueryPool, top: ArrayLike<number>, k: number): number {
  if (q.numRel === 0) return 0;
  let hits = 0;
  const n = Math.min(k, top.length);
  for (let i = 0; i < n; i++) if (q.gain[top[i]] >= 1) hits++;
  return hits / q.numRel;
}

export function evaluatePlan(pools: Pools, plan: Plan, finalK: number, queries: readonly QueryPool[] = pools.queries): PlanEval {
  const scratch = new Scratch(pools.depth);
  const perQueryNdcg = new Float64Array(queries.length);
  const pairs = new Array<number>(pools.stages.length).fill(0);
  const ms: number[] = [];
  let recall = 0;
  let skipped = 0;
  queries.forEach((q, i) => {
    const out = runPlan(q, pools, plan, finalK, scratch);
    perQueryNdcg[i] = ndcg10(q, out.top);
    recall += recallAt(q, out.top, 10);
    for (let s = 0; s < pairs.length; s++) pairs[s] += out.pairs[s];
    ms.push(out.ms);
    if (out.skipped) skipped++;
  });
  const n = queries.length;
  let sum = 0;
  for (const v of perQueryNdcg) sum += v;
  return {
    queries: n,
    'nDCG@10': sum / n,
    'R@10': recall / n,
    perQueryNdcg,
    pairs: pairs.map((p) => p / n),
    latencyMs: { p50: percentile(ms, 50), p95: percentile(ms, 95), mean: ms.reduce((a, b) => a + b, 0) / n },
    skipped: skipped / n,
  };
}

/** A short human label: `bm25 200 → light 50 → heavy 10`. */
export function planLabel(pools: Pools, plan: Plan, finalK: number): string {
  const parts = plan.steps.map((s, j) => `${pools.stages[s.stage].name} ${j === plan.steps.length - 1 ? finalK : s.k}`);
  let label = parts.join(' → ');
  if (plan.fusion) label += plan.fusion.kind === 'rrf' ? ` +rrf(k=${plan.fusion.k})` : ` +linear(${plan.fusion.weights.map((w) => w.toFixed(2)).join(',')})`;
  if (plan.earlyExit) label += ` +exit(margin≥${plan.earlyExit.margin.toFixed(3)})`;
  return label;
}
