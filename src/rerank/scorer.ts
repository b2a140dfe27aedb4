import type { Costs } from '../core/costs.js';
import { WinnowError } from '../core/errors.js';
import type { Doc, Hit, ScoreKind } from '../core/types.js';

/**
 * A pointwise relevance model: one score per (query, document) pair. Model adapters
 * (cross-encoders, bi-encoders, hosted APIs, BM25 over candidates) implement only this;
 * `Rerank` turns any scorer into a stage with caching and bookkeeping done once.
 */
export interface Scorer {
  /**
   * Identity for caches and reports: everything that changes the numbers (model id and
   * revision, max length, truncation side, pooling, prefixes). Two scorers with equal ids
   * must give equal scores.
   */
  readonly id: string;
  /** what the numbers mean; calibration and thresholds depend on it */
  readonly kind: ScoreKind;
  /**
   * Scores `docs` against `query`, in order. Scorers report documents they truncated or
   * split into windows through `costs`.
   */
  score(query: string, docs: readonly Doc[], costs?: Costs): Promise<Float32Array>;
  /**
   * Scores the hits it can without reading their documents (a bi-encoder over document
   * vectors stored in a collection): one score per hit, NaN for hits left to `score`.
   * Optional; undefined when it can score none that way.
   */
  scoreStored?(query: string, hits: readonly Hit[], costs?: Costs): Promise<Float32Array | undefined>;
  /** releases sessions or sockets; optional */
  close?(): Promise<void>;
}

/** A model that answers with another number of scores than it was asked for is broken, not slow. */
export function checkScoreCount(stage: string, got: number, asked: number): void {
  if (got !== asked) throw new WinnowError('model_error', `${stage}: scorer returned ${got} scores for ${asked} documents`);
}
