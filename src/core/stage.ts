import type { ScoreCache } from '../cascade/cache.js';
import type { DocLookup, Ranking } from './types.js';

/**
 * Counters a stage bumps while it runs. The pipeline creates one per stage invocation and
 * turns it into a trace row, so every stage reports cost the same way.
 */
export interface StageStats {
  /** query-document pairs actually sent to a model (cache hits excluded) */
  pairs: number;
  cacheHits: number;
  cacheMisses: number;
  /** documents cut to the model's maximum length */
  truncated: number;
  /** documents split into several passage windows */
  windowed: number;
  /** billed units reported by hosted rerank APIs (Cohere search units) */
  searchUnits: number;
  /** tokens reported by hosted APIs (Jina, Voyage, vLLM usage.total_tokens) */
  tokens: number;
}

export function emptyStats(): StageStats {
  return { pairs: 0, cacheHits: 0, cacheMisses: 0, truncated: 0, windowed: 0, searchUnits: 0, tokens: 0 };
}

export function addStats(into: StageStats, from: StageStats): void {
  into.pairs += from.pairs;
  into.cacheHits += from.cacheHits;
  into.cacheMisses += from.cacheMisses;
  into.truncated += from.truncated;
  into.windowed += from.windowed;
  into.searchUnits += from.searchUnits;
  into.tokens += from.tokens;
}

/** One row of a cascade trace: a stage plus the cut-offs that directly follow it. */
export interface TraceRow extends StageStats {
  stage: string;
  /** candidates entering the stage, summed over the batch */
  in: number;
  /** candidates leaving it (after its cut-offs), summed over the batch */
  out: number;
  ms: number;
}

export interface StageContext {
  /** text of the documents behind hits, for stages that read it */
  docs?: DocLookup;
  /** counters for the stage now running */
  stats: StageStats;
  /** scores shared across stages, queries and runs; keys carry the stage identity */
  cache?: ScoreCache;
  /** called after each phase with its trace row and the rankings it produced */
  observe?: (row: TraceRow, rankings: readonly Ranking[]) => void;
}

export type StageKind = 'retriever' | 'reranker' | 'cutoff' | 'fusion' | 'pipeline';

/**
 * The one abstraction: a stage maps a batch of rankings to rankings. A retriever ignores the
 * hits it is given; a reranker rescores them; a cut-off drops some; a fusion merges the
 * rankings of several pipelines. Stages must not mutate their input rankings or hits.
 */
export interface Stage {
  readonly name: string;
  readonly kind: StageKind;
  run(batch: readonly Ranking[], ctx: StageContext): Promise<Ranking[]>;
  /** a JSON-able description: two stages that describe the same are the same computation */
  describe(): StageDescription;
}

export type StageDescription = { [key: string]: unknown };
