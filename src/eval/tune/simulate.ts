import type { Calibration } from '../../cascade/calibration.js';
import { TopK } from '../../cascade/cutoff.js';
import { EarlyExit } from '../../cascade/early-exit.js';
import { Fusion } from '../../cascade/fusion.js';
import { Pipeline } from '../../cascade/pipeline.js';
import { costKind, Costs, PAIRS } from '../../core/costs.js';
import type { Stage, StageContext, StageDescription } from '../../core/stage.js';
import type { Hit, Ranking, ScoreKind } from '../../core/types.js';
import { evaluateRanking, parseMeasure } from '../metrics.js';
import { percentile } from '../stats.js';
import { type ListwiseTier, type Pools, type QueryPool, workCosts } from './pool.js';

/** One active stage of a plan and how many candidates it keeps (the last step: the final k). */
export interface PlanStep {
  stage: number;
  k: number;
}

export type FusionPlan = { kind: 'rrf'; k: number } | { kind: 'linear'; weights: number[] };

/**
 * Skip the last stage for a query when the stage before it is confident: the calibrated
 * score of its rank 1 minus that of rank k+1 is at least `margin` (the `EarlyExit` stage).
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

export interface PlanEval {
  queries: number;
  'nDCG@10': number;
  'R@10': number;
  perQueryNdcg: Float64Array;
  /** predicted ms per query */
  perQueryMs: Float64Array;
  /** pairs scored per query, per stage of the pool: [stage][query] */
  perQueryPairs: Float64Array[];
  /** mean pairs per query, per stage of the pool */
  pairs: number[];
  /**
   * mean work per query by cost name, all stages together (an LLM tier's `llm.calls`,
   * `llm.tokens.in`, `llm.usd` …; pairs are in `pairs`)
   */
  costs: Record<string, number>;
  latencyMs: { p50: number; p95: number; mean: number };
  /** fraction of queries whose last stage was skipped by the early exit */
  skipped: number;
}

const NDCG10 = parseMeasure('nDCG@10');
/** Replayed hits keep no score history (nothing downstream reads it): one shared, frozen record. */
const NO_SCORES: Record<string, number> = Object.freeze({}) as Record<string, number>;
const R10 = parseMeasure('R@10');

/**
 * Replayed hits, made once per (query, stage) in that stage's order: stages never mutate the
 * hits they are given, so every replay can share them. Each carries its position in the
 * query's pool, so the next pool stage finds its scores without a lookup by id (hits a
 * fusion makes anew are looked up by id).
 */
const hitCache = new WeakMap<QueryPool, (PoolHit[] | undefined)[]>();

type PoolHit = Hit & { readonly poolIndex: number };

function stageHits(q: QueryPool, s: number): PoolHit[] {
  let byStage = hitCache.get(q);
  if (!byStage) {
    byStage = q.scores.map(() => undefined);
    hitCache.set(q, byStage);
  }
  let hits = byStage[s];
  if (!hits) {
    const sc = q.scores[s];
    hits = Array.from(q.order[s], (d) => ({ docId: q.docIds[d], score: sc[d], scores: NO_SCORES, poolIndex: d }));
    byStage[s] = hits;
  }
  return hits;
}

/**
 * What one replay of a plan paid, per query: pairs each pool stage scored and the predicted
 * ms. A pool stage is charged once per (query, document), as a score cache would serve the
 * second request, so fusion re-reading an earlier reranker's scores costs nothing.
 */
class ReplayMeter {
  readonly byQid = new Map<string, number>();
  readonly ms: Float64Array;
  readonly pairs: Float64Array[];
  /** work booked per query, by cost name */
  readonly work: Costs[];
  private readonly seen: (Uint8Array | undefined)[][];

  constructor(
    readonly pools: Pools,
    readonly queries: readonly QueryPool[],
  ) {
    queries.forEach((q, i) => this.byQid.set(q.qid, i));
    this.ms = new Float64Array(queries.length);
    this.pairs = pools.stages.map(() => new Float64Array(queries.length));
    this.seen = queries.map(() => pools.stages.map(() => undefined));
    this.work = queries.map(() => new Costs());
  }

  query(qid: string): { q: QueryPool; i: number } {
    const i = this.byQid.get(qid);
    if (i === undefined) throw new Error(`replay: query ${qid} is not in the pools`);
    return { q: this.queries[i], i };
  }

  chargeRetrieval(i: number): void {
    this.ms[i] += this.queries[i].retrieveMs;
  }

  chargePairs(i: number, stage: number, idx: ArrayLike<number>): number {
    const q = this.queries[i];
    let marks = this.seen[i][stage];
    if (!marks) {
      marks = new Uint8Array(q.docIds.length);
      this.seen[i][stage] = marks;
    }
    let fresh = 0;
    for (let j = 0; j < idx.length; j++) {
      if (marks[idx[j]] === 0) {
        marks[idx[j]] = 1;
        fresh++;
      }
    }
    if (fresh > 0) {
      const st = this.pools.stages[stage];
      this.pairs[stage][i] += fresh;
      this.ms[i] += st.cost.fixedMs + q.pairMs[stage - 1] * fresh;
      for (const [name, perPair] of Object.entries(st.unitCosts ?? {})) this.work[i].add(name, perPair * fresh);
    }
    return fresh;
  }

  /** One run of the listwise tier on `n` documents: its calls, one after another, and its work. */
  chargeRun(i: number, stage: number, n: number, costs: Readonly<Record<string, number>>): void {
    const c = this.pools.stages[stage].cost;
    this.pairs[stage][i] += n;
    this.ms[i] += c.fixedMs + callsIn(costs) * (c.perCallMs ?? 0);
    this.work[i].addAll(workCosts(costs));
  }
}

/**
 * The pool's first pass as a retriever: a query's pool in first-pass order, with its scores.
 * It takes a following `top(k)` as its depth, as every retriever does.
 */
class PoolRetriever implements Stage {
  readonly kind = 'retriever' as const;
  readonly scoring = 'pointwise' as const;
  readonly name: string;
  readonly scoreKind: ScoreKind;

  constructor(
    private readonly meter: ReplayMeter,
    readonly k: number,
  ) {
    const s = meter.pools.stages[0];
    this.name = s.name;
    this.scoreKind = s.scoreKind;
  }

  absorb(next: Stage): Stage | undefined {
    return next instanceof TopK ? new PoolRetriever(this.meter, Math.min(this.k, next.k)) : undefined;
  }

  describe(): StageDescription {
    return { poolRetriever: this.name, k: this.k };
  }

  async run(batch: readonly Ranking[]): Promise<Ranking[]> {
    return batch.map((r) => {
      const { q, i } = this.meter.query(r.query.id);
      this.meter.chargeRetrieval(i);
      return { query: r.query, hits: stageHits(q, 0).slice(0, this.k) };
    });
  }
}

/**
 * A pointwise stage of the pool, answering the scores it gave in the one scoring pass: any
 * cascade of cut-offs, fusion or early exit around it then runs as the real stages would,
 * because a pointwise score does not depend on the other documents in the list.
 */
class PoolStage implements Stage {
  readonly kind = 'reranker' as const;
  readonly scoring = 'pointwise' as const;
  readonly name: string;
  readonly scoreKind: ScoreKind;

  constructor(
    private readonly meter: ReplayMeter,
    readonly stage: number,
  ) {
    const s = meter.pools.stages[stage];
    this.name = s.name;
    this.scoreKind = s.scoreKind;
  }

  describe(): StageDescription {
    return { poolStage: this.name };
  }

  async run(batch: readonly Ranking[], ctx: StageContext): Promise<Ranking[]> {
    const s = this.stage;
    return batch.map((r) => {
      const { q, i } = this.meter.query(r.query.id);
      const n = r.hits.length;
      const idx = new Int32Array(n);
      for (let j = 0; j < n; j++) {
        const h = r.hits[j] as Hit & { poolIndex?: number };
        const d = h.poolIndex ?? q.index.get(h.docId);
        if (d === undefined) throw new Error(`replay: document ${r.hits[j].docId} is not in the pool of query ${q.qid}`);
        idx[j] = d;
      }
      ctx.costs.add(PAIRS, this.meter.chargePairs(i, s, idx));
      // The pool's order is score descending then doc id descending (`compareHits`), so
      // sorting the documents' positions in it sorts them as the stage would.
      const rank = q.rank[s];
      const positions = new Int32Array(n);
      for (let j = 0; j < n; j++) positions[j] = rank[idx[j]];
      positions.sort();
      const ranked = stageHits(q, s);
      const hits: Hit[] = new Array(n);
      for (let j = 0; j < n; j++) hits[j] = ranked[positions[j]];
      return { query: r.query, hits };
    });
  }
}

/** Calls a run booked: its work costs counted in calls (`llm.calls`, or a plugin's own). */
export function callsIn(costs: Readonly<Record<string, number>>): number {
  let n = 0;
  for (const [name, amount] of Object.entries(costs)) {
    const kind = costKind(name);
    if (kind.role === 'work' && kind.unit === 'calls') n += amount;
  }
  return n;
}

/**
 * The listwise last tier in a replay: it hands each query's list to the real stage (through
 * `ListwiseTier`, which remembers every run), and takes a following top-k as the real stage
 * would (cut-off push-down), so the replay pays what the tuned cascade will.
 */
class PoolListwise implements Stage {
  readonly kind = 'reranker' as const;
  readonly scoring = 'listwise' as const;
  readonly name: string;
  readonly scoreKind: ScoreKind;

  constructor(
    private readonly meter: ReplayMeter,
    private readonly tier: ListwiseTier,
    readonly cutoff?: number,
  ) {
    const s = meter.pools.stages[tier.index];
    this.name = s.name;
    this.scoreKind = s.scoreKind;
  }

  absorb(next: Stage): Stage | undefined {
    return next instanceof TopK ? new PoolListwise(this.meter, this.tier, Math.min(next.k, this.cutoff ?? Infinity)) : undefined;
  }

  describe(): StageDescription {
    return { poolListwise: this.name, ...(this.cutoff !== undefined ? { top: this.cutoff } : {}) };
  }

  run(batch: readonly Ranking[]): Promise<Ranking[]> {
    return Promise.all(
      batch.map(async (r) => {
        const { q, i } = this.meter.query(r.query.id);
        const run = await this.tier.run(q.qid, r.hits.map((h) => h.docId), this.cutoff);
        this.meter.chargeRun(i, this.tier.index, r.hits.length, run.costs);
        const n = run.ids.length;
        const hits: PoolHit[] = run.ids.map((docId, j) => ({ docId, score: n - j, scores: NO_SCORES, poolIndex: q.index.get(docId) as number }));
        return { query: r.query, hits };
      }),
    );
  }
}

/** The replay stage of pool stage `s`: its pool scores, or the listwise tier's runs. */
function poolStage(meter: ReplayMeter, s: number): Stage {
  const tier = meter.pools.listwise;
  return tier && tier.index === s ? new PoolListwise(meter, tier) : new PoolStage(meter, s);
}

/** Stage indices of the rerankers a plan runs: the lists fusion combines. */
export function rerankSteps(plan: Plan): number[] {
  return plan.steps.slice(1).map((s) => s.stage);
}

/**
 * The plan as a cascade of real stages over the pool (the shape `planToSpec` writes):
 * retriever, then each kept reranker with its cut-off; the last reranker (or the fusion of
 * all of them) inside an early exit when the plan has one; the final k. `upTo` stops after
 * that many steps, cut at the last one's k: the input a later stage would receive.
 */
function planPipeline(meter: ReplayMeter, plan: Plan, finalK: number, upTo = plan.steps.length): Pipeline {
  const steps = plan.steps.slice(0, upTo);
  const whole = upTo === plan.steps.length;
  const stages: Stage[] = [new PoolRetriever(meter, meter.pools.depth)];
  stages.push(new TopK(steps.length === 1 && whole ? finalK : steps[0].k));
  for (let j = 1; j < steps.length; j++) {
    const isLast = whole && j === steps.length - 1;
    if (!isLast) {
      stages.push(poolStage(meter, steps[j].stage), new TopK(steps[j].k));
      continue;
    }
    let last: Stage = poolStage(meter, steps[j].stage);
    if (plan.fusion) {
      const inputs = rerankSteps(plan).map((s) => new Pipeline([poolStage(meter, s)]));
      last =
        plan.fusion.kind === 'rrf'
          ? new Fusion('fused', inputs, { kind: 'rrf', k: plan.fusion.k })
          : new Fusion('fused', inputs, { kind: 'linear', weights: plan.fusion.weights, normalize: 'minmax' });
    }
    if (plan.earlyExit) last = new EarlyExit([last], plan.earlyExit.margin, plan.earlyExit.k, plan.earlyExit.calibration);
    stages.push(last, new TopK(finalK));
  }
  return new Pipeline(stages);
}

export interface Replay {
  rankings: Ranking[];
  meter: { ms: Float64Array; pairs: Float64Array[]; work: Costs[] };
}

/**
 * Replays a plan on pools through `Pipeline.execute`, the interpreter `winnow eval` and
 * `winnow serve` run, with every pool query in one batch. `upTo` replays only the first
 * steps (see `planPipeline`).
 */
export async function replayPlan(pools: Pools, plan: Plan, finalK: number, queries: readonly QueryPool[] = pools.queries, upTo?: number): Promise<Replay> {
  const meter = new ReplayMeter(pools, queries);
  const pipeline = planPipeline(meter, plan, finalK, upTo);
  const batch: Ranking[] = queries.map((q) => ({ query: { id: q.qid, text: q.text ?? '' }, hits: [] }));
  const { rankings } = await pipeline.execute(batch, { costs: new Costs() });
  return { rankings, meter };
}

/** Doc ids of a ranking, best first. */
export function rankedIds(r: Ranking): string[] {
  return r.hits.map((h) => h.docId);
}

/** nDCG@10 of every query's ranking, by the evaluator `winnow eval` uses. */
export function perQueryNdcg10(queries: readonly QueryPool[], rankings: readonly Ranking[]): Float64Array {
  return Float64Array.from(queries, (q, i) => evaluateRanking(q.judged, rankedIds(rankings[i]), NDCG10));
}

export async function evaluatePlan(pools: Pools, plan: Plan, finalK: number, queries: readonly QueryPool[] = pools.queries): Promise<PlanEval> {
  const { rankings, meter } = await replayPlan(pools, plan, finalK, queries);
  const n = queries.length;
  const perQueryNdcg = perQueryNdcg10(queries, rankings);
  let recall = 0;
  queries.forEach((q, i) => {
    recall += evaluateRanking(q.judged, rankedIds(rankings[i]), R10);
  });
  const last = plan.steps[plan.steps.length - 1].stage;
  let skipped = 0;
  if (plan.earlyExit) for (let i = 0; i < n; i++) if (meter.pairs[last][i] === 0 && rankings[i].hits.length > 0) skipped++;
  const ms = Array.from(meter.ms);
  return {
    queries: n,
    'nDCG@10': meanOf(perQueryNdcg),
    'R@10': recall / n,
    perQueryNdcg,
    perQueryMs: meter.ms,
    perQueryPairs: meter.pairs,
    pairs: meter.pairs.map(meanOf),
    costs: meanCosts(meter.work),
    latencyMs: latencyOf(ms),
    skipped: skipped / n,
  };
}

/** Mean per query of each cost name. */
function meanCosts(perQuery: readonly Costs[]): Record<string, number> {
  const total = new Costs();
  for (const c of perQuery) total.addAll(c);
  return Object.fromEntries(total.names().map((name) => [name, total.get(name) / perQuery.length]));
}

export function meanOf(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return a.length > 0 ? s / a.length : NaN;
}

export function latencyOf(ms: readonly number[]): PlanEval['latencyMs'] {
  return { p50: percentile(ms, 50), p95: percentile(ms, 95), mean: ms.reduce((a, b) => a + b, 0) / ms.length };
}

/** A short human label: `bm25 200 → light 50 → heavy 10`. */
export function planLabel(pools: Pools, plan: Plan, finalK: number): string {
  const parts = plan.steps.map((s, j) => `${pools.stages[s.stage].name} ${j === plan.steps.length - 1 ? finalK : s.k}`);
  let label = parts.join(' → ');
  if (plan.fusion) label += plan.fusion.kind === 'rrf' ? ` +rrf(k=${plan.fusion.k})` : ` +linear(${plan.fusion.weights.map((w) => w.toFixed(2)).join(',')})`;
  if (plan.earlyExit) label += ` +exit(margin≥${plan.earlyExit.margin.toFixed(3)})`;
  return label;
}
