import type { ScoreCache } from '../cascade/cache.js';
import type { Pipeline } from '../cascade/pipeline.js';
import { WinnowError } from '../core/errors.js';
import { Progress } from '../core/progress.js';
import { Costs, costKind, PAIRS, sumCosts } from '../core/costs.js';
import type { TraceRow } from '../core/stage.js';
import type { DocLookup, Query, Ranking } from '../core/types.js';
import { evaluateRanking, type Measure, parseMeasure, type Qrels } from './metrics.js';
import { type LatencySummary, mean, summarizeLatency } from './stats.js';

export interface ExperimentOptions {
  pipeline: Pipeline;
  queries: readonly Query[];
  qrels: Qrels;
  /** text of documents, for rerank stages */
  docs?: DocLookup;
  /** the initial hits per query when the pipeline starts with a reranker (test_queries.jsonl) */
  candidates?: ReadonlyMap<string, readonly string[]>;
  cache?: ScoreCache;
  /** cut-off for the final R@k */
  finalK: number;
  progress?: boolean;
}

export interface StageResult {
  stage: string;
  /** what the stage paid over all queries, by cost name (`core/costs.ts`) */
  costs: Record<string, number>;
  /** mean candidates per query entering and leaving the stage */
  in: number;
  out: number;
  /** recall of everything the stage kept, and nDCG@10 of its ranking */
  metrics: { 'R@out': number; 'nDCG@10': number; 'R@10': number };
  /**
   * What this stage added over the stage before it (absent for the first stage): the change
   * in mean nDCG@10 and R@10 of the ranking, and the relative nDCG@10 gain.
   */
  lift?: { 'nDCG@10': number; 'R@10': number; relative: number };
  latencyMs: LatencySummary;
}

/** A stage that scores pairs and lifts nDCG@10 by less than this (relative) is flagged. */
export const MIN_LIFT = 0.02;

export interface ExperimentResult {
  queries: number;
  stages: StageResult[];
  /** RR@10, nDCG@10, R@finalK of the final ranking, mean over queries */
  final: Record<string, number>;
  perQuery: Record<string, Record<string, number>>;
  latencyMs: LatencySummary;
  /** `sharedHits`: of the hits, those a shared tier (Redis) answered */
  cache?: { hits: number; misses: number; hitRatio: number; entries: number; sharedHits: number };
  /** stages that cost pairs but add under MIN_LIFT nDCG@10 */
  warnings: string[];
  rankings: Ranking[];
}

const NDCG10 = parseMeasure('nDCG@10');
const R10 = parseMeasure('R@10');
const RECALL_ALL: Measure = { name: 'R', kind: 'R', relLevel: 1 };

/**
 * Runs a cascade query by query (so per-stage latency is per query, as a user sees it) and
 * measures after every phase: how many candidates went in and out, pairs scored, recall of
 * what was kept, nDCG@10, and latency percentiles.
 */
export async function runExperiment(opts: ExperimentOptions): Promise<ExperimentResult> {
  const { pipeline, queries, qrels } = opts;
  if (queries.length === 0) throw new WinnowError('bad_input', 'no queries to evaluate', 'check --split and the qrels file');
  const finalMeasures = ['RR@10', 'nDCG@10', `R@${opts.finalK}`].map(parseMeasure);
  const phases = pipeline.phases();
  if (!phases[0].retrieves && !opts.candidates) {
    throw new WinnowError(
      'bad_input',
      'the cascade starts with a reranker but no candidates were given',
      'add a first pass (--first-pass bm25) or give candidates in test_queries.jsonl',
    );
  }

  const rows: { row: TraceRow; r: number; ndcg: number; r10: number }[][] = phases.map(() => []);
  const totalMs: number[] = [];
  const perQuery: Record<string, Record<string, number>> = {};
  const rankings: Ranking[] = [];
  const progress = opts.progress ? new Progress('eval', queries.length, 'queries') : undefined;
  const cacheBefore = opts.cache ? { hits: opts.cache.hits, misses: opts.cache.misses, sharedHits: opts.cache.sharedHits } : undefined;

  for (const query of queries) {
    const judged = qrels.get(query.id);
    const initial: Ranking = {
      query,
      hits: (opts.candidates?.get(query.id) ?? []).map((docId, i, all) => ({
        docId,
        // given order is the starting order; later stages replace it
        score: all.length - i,
        scores: {},
      })),
    };
    const t0 = performance.now();
    const {
      rankings: [out],
    } = await pipeline.execute([initial], { docs: opts.docs, costs: new Costs(), cache: opts.cache }, {
      after: (phase, row, result) => {
        const ids = result[0].hits.map((h) => h.docId);
        rows[phase.index].push({
          row,
          r: evaluateRanking(judged, ids, RECALL_ALL),
          ndcg: evaluateRanking(judged, ids, NDCG10),
          r10: evaluateRanking(judged, ids, R10),
        });
      },
    });
    totalMs.push(performance.now() - t0);
    const ids = out.hits.map((h) => h.docId);
    perQuery[query.id] = Object.fromEntries(finalMeasures.map((m) => [m.name, evaluateRanking(judged, ids, m)]));
    rankings.push(out);
    progress?.tick();
  }
  progress?.finish();

  const stages = rows.map(
    (list): StageResult => ({
      stage: list[0].row.stage,
      in: mean(list.map((x) => x.row.in)),
      out: mean(list.map((x) => x.row.out)),
      costs: sumCosts(list.map((x) => x.row.costs)),
      metrics: { 'R@out': mean(list.map((x) => x.r)), 'nDCG@10': mean(list.map((x) => x.ndcg)), 'R@10': mean(list.map((x) => x.r10)) },
      latencyMs: summarizeLatency(list.map((x) => x.row.ms)),
    }),
  );
  const warnings = addLift(stages);
  const final = Object.fromEntries(
    finalMeasures.map((m) => [m.name, mean(queries.map((q) => perQuery[q.id][m.name]))]),
  );
  const result: ExperimentResult = {
    queries: queries.length,
    stages,
    final,
    perQuery,
    latencyMs: summarizeLatency(totalMs),
    warnings,
    rankings,
  };
  if (opts.cache && cacheBefore) {
    const hits = opts.cache.hits - cacheBefore.hits;
    const misses = opts.cache.misses - cacheBefore.misses;
    const sharedHits = opts.cache.sharedHits - cacheBefore.sharedHits;
    result.cache = { hits, misses, hitRatio: hits + misses > 0 ? hits / (hits + misses) : 0, entries: opts.cache.size, sharedHits };
  }
  return result;
}

/**
 * Fills each stage's lift over the stage before and returns a warning for every stage that
 * scored pairs (so it cost model time) yet added under MIN_LIFT relative nDCG@10. Cut-off
 * only phases cost nothing and are never flagged.
 */
export function addLift(stages: StageResult[]): string[] {
  const warnings: string[] = [];
  for (let i = 1; i < stages.length; i++) {
    const prev = stages[i - 1].metrics;
    const cur = stages[i].metrics;
    const dn = cur['nDCG@10'] - prev['nDCG@10'];
    const relative = prev['nDCG@10'] > 0 ? dn / prev['nDCG@10'] : dn > 0 ? Infinity : 0;
    stages[i].lift = { 'nDCG@10': dn, 'R@10': cur['R@10'] - prev['R@10'], relative };
    const paid = paidWork(stages[i].costs);
    if (paid && relative < MIN_LIFT) {
      warnings.push(
        `stage "${stages[i].stage}" adds ${(100 * relative).toFixed(1)}% nDCG@10 (${dn >= 0 ? '+' : ''}${dn.toFixed(4)}) ` +
          `for ${paid}: under ${100 * MIN_LIFT}% for its cost; consider dropping it or tuning its cut-off (winnow tune)`,
      );
    }
  }
  return warnings;
}

/** What a stage paid in model work, for a person ("1200 pairs, 30 llm calls"); empty when nothing. */
function paidWork(costs: Readonly<Record<string, number>>): string {
  return Object.entries(costs)
    .filter(([name, n]) => n > 0 && costKind(name).role === 'work')
    .map(([name, n]) => `${n} ${name === PAIRS ? 'pairs' : costKind(name).label}`)
    .join(', ');
}
