import type { Calibration } from '../cascade/calibration.js';

/** A query as it enters a cascade. `id` is what qrels and run files key on. */
export interface Query {
  readonly id: string;
  readonly text: string;
}

/** A document. Retrievers index `title` + `text`; rerankers see them joined. */
export interface Doc {
  readonly id: string;
  readonly title?: string;
  readonly text: string;
}

/**
 * One candidate in a ranking. `score` is the score that orders the ranking now;
 * `scores` keeps the score every stage gave the hit, keyed by stage name, so later
 * stages (fusion, calibration, reports) can see the whole history.
 */
export interface Hit {
  readonly docId: string;
  score: number;
  scores: Record<string, number>;
  /**
   * the document itself, when the stage that produced the hit had it (a remote engine's
   * `_source`); rerankers read it before asking the cascade's `DocLookup`
   */
  doc?: Doc;
}

/** A query with its ordered hits (best first). */
export interface Ranking {
  readonly query: Query;
  hits: Hit[];
  /**
   * Which stage's scores order these hits now and what they mean. The interpreter sets it
   * after every scoring phase; a stage that decides per query (an early exit) sets it
   * itself. Servers read it to map final scores to [0, 1].
   */
  scoredBy?: ScoredBy;
  /**
   * Set by a stage that stopped early for this query (an LLM stage at its call, token or time
   * budget) and returned the order it had: says which stage and why. Later stages keep it.
   */
  degraded?: string;
}

export interface ScoredBy {
  stage: string;
  kind: ScoreKind;
  /** maps these scores to probabilities, when one is configured */
  calibration?: Calibration;
}

/**
 * What a pointwise scorer's numbers mean. Calibration, thresholds and fusion depend on it:
 * a sigmoid over an already calibrated probability squashes it toward 0.5.
 */
export type ScoreKind = 'logit' | 'probability' | 'similarity' | 'unbounded';

/**
 * Looks documents up by id; rerankers need the text behind a hit. A `Map` is one; a store on
 * disk or a remote engine answers with a promise.
 */
export interface DocLookup {
  get(id: string): Doc | undefined | Promise<Doc | undefined>;
}

/** Joins title and text the way every text model in Winnow sees a document. */
export function docText(doc: Doc): string {
  return doc.title ? `${doc.title} ${doc.text}` : doc.text;
}

/**
 * Orders hits best first: score descending, then document id descending. The tie rule is
 * trec_eval's, so a run file written from a ranking scores the same in trec_eval as in
 * Winnow, and the order never depends on input order or an engine's iteration order.
 */
export function compareHits(a: Hit, b: Hit): number {
  if (a.score !== b.score) return b.score - a.score;
  return a.docId > b.docId ? -1 : a.docId < b.docId ? 1 : 0;
}
