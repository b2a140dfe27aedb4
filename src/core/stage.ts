import type { ScoreCache } from '../cascade/cache.js';
import type { Calibration } from '../cascade/calibration.js';
import type { Costs } from './costs.js';
import type { DocLookup, Ranking, ScoreKind } from './types.js';

/** One row of a cascade trace: a stage plus the cut-offs that directly follow it. */
export interface TraceRow {
  stage: string;
  /** candidates entering the stage, summed over the batch */
  in: number;
  /** candidates leaving it (after its cut-offs), summed over the batch */
  out: number;
  ms: number;
  /** what the phase paid, by cost name (see `core/costs.ts`) */
  costs: Record<string, number>;
}

export interface StageContext {
  /** text of the documents behind hits, for stages that read it (a hit's own `doc` wins) */
  docs?: DocLookup;
  /** costs of the stage now running; stages add to it */
  costs: Costs;
  /** scores shared across stages, queries and runs; keys carry the stage identity */
  cache?: ScoreCache;
}

export type StageKind = 'retriever' | 'reranker' | 'cutoff' | 'fusion' | 'pipeline';

/**
 * The one abstraction: a stage maps a batch of rankings to rankings. A retriever ignores the
 * hits it is given; a reranker rescores them; a cut-off drops some; a fusion merges the
 * rankings of several pipelines. Stages must not mutate their input rankings or hits.
 *
 * The optional members are how a stage describes itself to the one interpreter
 * (`Pipeline`) and to everything built on it (serving, eval, tuning), so none of them
 * needs to know the stage's class.
 */
export interface Stage {
  readonly name: string;
  readonly kind: StageKind;
  /** how traces and tables show it, when more than its name (a retriever adds its depth) */
  readonly label?: string;
  run(batch: readonly Ranking[], ctx: StageContext): Promise<Ranking[]>;
  /** a JSON-able description: two stages that describe the same are the same computation */
  describe(): StageDescription;
  /** stages it runs inside itself (a fusion's inputs, an early exit's `then`) */
  children?(): readonly Stage[];
  /** produces candidates and ignores its input (retrievers, fusions of retrievers) */
  readonly retrieves?: boolean;
  /** what the scores it leaves on hits mean; absent for stages that do not score (cut-offs) */
  readonly scoreKind?: ScoreKind;
  /** maps scores to probabilities (a calibrated threshold's calibration) */
  readonly calibration?: Calibration;
  /**
   * `pointwise`: a hit's score depends on (query, document) alone, so it caches per pair and
   * a pool scored once can be replayed at any cut-off; `listwise`: it depends on the list
   */
  readonly scoring?: 'pointwise' | 'listwise';
  /**
   * Cut-off push-down: given the stage that follows, return one stage doing both (a retriever
   * takes a following top-k as its depth; a listwise stage may take it as its window budget),
   * or undefined to keep them apart.
   */
  absorb?(next: Stage): Stage | undefined;
  /** releases sessions, sockets or files */
  close?(): Promise<void>;
}

export type StageDescription = { [key: string]: unknown };

/** A retriever, or a composite whose every path starts by retrieving. */
export function retrievesCandidates(s: Stage): boolean {
  return s.kind === 'retriever' || s.retrieves === true;
}

/** Every stage under `s`, itself included, depth first. */
export function walkStages(s: Stage, visit: (s: Stage) => void): void {
  visit(s);
  for (const c of s.children?.() ?? []) walkStages(c, visit);
}
