import { WinnowError } from '../core/errors.js';
import { emptyStats, type Stage, type TraceRow } from '../core/stage.js';
import type { DocLookup, Hit, Query, Ranking, ScoreKind } from '../core/types.js';
import type { ScoreCache } from '../cascade/cache.js';
import type { Calibration } from '../cascade/calibration.js';
import { Threshold } from '../cascade/cutoff.js';
import { Fusion } from '../cascade/fusion.js';
import { Pipeline } from '../cascade/pipeline.js';
import { Rerank } from '../rerank/rerank.js';
import { Retriever } from '../retrieve/retriever.js';
import { requestScope } from './batcher.js';
import { Cancellation } from './cancel.js';

/** What a finished (possibly degraded) request returns. */
export interface CascadeResult {
  hits: Hit[];
  /** completed phases, in order */
  stages: TraceRow[];
  /** set when a phase was skipped or cut short to meet the deadline */
  skippedStage?: string;
  /** what the final scores mean, from the last completed phase that scored */
  kind: ScoreKind;
  /** a calibration configured right after that phase (a threshold's), if any */
  calibration?: Calibration;
}

/** The client closed the connection before its answer was ready; its queued work was dropped. */
export class ClientGoneError extends WinnowError {
  constructor() {
    super('unavailable', 'the client closed the connection before the response was ready');
    this.name = 'ClientGoneError';
  }
}

/** What one request brings besides its query and candidates. */
export interface RunContext {
  docs?: DocLookup;
  cache?: ScoreCache;
  /** when the request arrived and when its answer is due, as `performance.now()` times */
  start: number;
  deadline: number;
  /** cancelled when the client has gone away: no one will read the answer, so stop working on it */
  gone?: Cancellation;
}

/** The deadline passed before any scoring phase completed. */
export class DeadlineError extends WinnowError {
  constructor(
    readonly stage: string,
    budgetMs: number,
  ) {
    super('unavailable', `deadline of ${budgetMs} ms passed before "${stage}" could complete`, 'raise deadline_ms / X-Request-Deadline-Ms or send fewer documents');
    this.name = 'DeadlineError';
  }
}

interface PhaseInfo {
  stages: Stage[];
  head: Stage;
  label: string;
  /** retrieval (or fusion of retrievals): produces candidates, ignores its input */
  retrieves: boolean;
  /** only cut-offs: no scores of its own */
  cutsOnly: boolean;
  kind: ScoreKind;
  calibration?: Calibration;
  /** recent cost: ms per input hit for rankers, ms per call for retrievers (EWMA; 0 = unknown) */
  cost: number;
}

/**
 * Runs a compiled pipeline one phase at a time, the way `Pipeline.run` does, plus what a server
 * needs and a batch run does not: a deadline checked before each phase (skip it when its recent
 * cost says it would overrun) and enforced during it (stop waiting when the deadline passes,
 * and drop the request's queued pairs), with the last completed phase's ranking as the answer.
 */
export class CascadeRunner {
  private readonly phases: PhaseInfo[];
  /** leading phases that retrieve; rerank routes start after them */
  readonly retrieverPhases: number;

  constructor(
    readonly name: string,
    readonly pipeline: Pipeline,
    private readonly observe?: (cascade: string, row: TraceRow) => void,
  ) {
    this.phases = pipeline.phases().map((stages) => describePhase(stages));
    let n = 0;
    while (n < this.phases.length && this.phases[n].retrieves) n++;
    this.retrieverPhases = n;
  }

  /** A cascade that produces its own candidates (usable for `/v1/search`). */
  get retrieverBacked(): boolean {
    return this.retrieverPhases > 0;
  }

  /** A cascade that scores given candidates (usable for the rerank routes). */
  get ranksCandidates(): boolean {
    return this.phases.slice(this.retrieverPhases).some((p) => !p.cutsOnly);
  }

  /** The last phase that scores: what a full run's final scores mean. */
  get finalScorer(): { stage: string; kind: ScoreKind; calibrated: boolean } | undefined {
    const last = this.phases.filter((p) => !p.cutsOnly).at(-1);
    return last && { stage: last.head.name, kind: last.kind, calibrated: last.calibration !== undefined && last.calibration.kind !== 'identity' };
  }

  /** Every `Rerank` stage, including those inside fusions, e.g. to find the batchers. */
  rerankStages(): Rerank[] {
    const out: Rerank[] = [];
    const walk = (s: Stage): void => {
      if (s instanceof Rerank) out.push(s);
      else if (s instanceof Pipeline) s.compile().forEach(walk);
      else if (s instanceof Fusion) s.inputs.forEach(walk);
    };
    this.pipeline.compile().forEach(walk);
    return out;
  }

  /**
   * Runs the cascade for one query. `candidates` given: skip the leading retrieval phases and
   * rank these hits; absent: retrieve first.
   */
  async run(query: Query, candidates: Hit[] | undefined, { docs, cache, start, deadline, gone }: RunContext): Promise<CascadeResult> {
    const from = candidates ? this.retrieverPhases : 0;
    if (!candidates && from === 0 && !this.retrieverBacked) {
      throw new WinnowError('bad_input', `cascade "${this.name}" has no retriever stage, so it cannot search; use a rerank route`);
    }
    // Nothing to rank is not a timeout, whatever the budget.
    if (candidates && candidates.length === 0) return { hits: [], stages: [], kind: 'unbounded' };
    const cancel = new Cancellation();
    const budget = Math.round(deadline - start);
    let current: Ranking[] = [{ query, hits: candidates ?? [] }];
    const done: TraceRow[] = [];
    let kind: ScoreKind = 'unbounded';
    let calibration: Calibration | undefined;
    let scored = false;
    return requestScope.run({ cancel }, async () => {
      try {
        for (let i = from; i < this.phases.length; i++) {
          const phase = this.phases[i];
          const n = current[0].hits.length;
          const now = performance.now();
          const estimate = phase.retrieves ? phase.cost : phase.cost * n;
          if (!phase.cutsOnly && (now >= deadline || (phase.cost > 0 && now + estimate > deadline))) {
            if (!scored) throw new DeadlineError(phase.head.name, budget);
            return { hits: current[0].hits, stages: done, skippedStage: phase.head.name, kind, calibration };
          }
          const stats = emptyStats();
          const t0 = performance.now();
          const work = (async () => {
            let batch: Ranking[] = current;
            for (const stage of phase.stages) batch = await stage.run(batch, { docs, stats, cache });
            return batch;
          })();
          const outcome = await raceDeadline(work, deadline, gone);
          if (outcome === 'gone') {
            work.catch(() => undefined);
            throw new ClientGoneError();
          }
          if (outcome === 'timeout') {
            // Stop waiting; the batcher drops this request's pairs that are still queued.
            cancel.cancel();
            work.catch(() => undefined);
            // It took at least this long: remember it, or the next request would wait again.
            const unit = (performance.now() - t0) / (phase.retrieves ? 1 : Math.max(1, n));
            phase.cost = Math.max(phase.cost, unit);
            if (!scored) throw new DeadlineError(phase.head.name, budget);
            return { hits: current[0].hits, stages: done, skippedStage: phase.head.name, kind, calibration };
          }
          current = outcome;
          const ms = performance.now() - t0;
          if (!phase.cutsOnly) {
            const unit = phase.retrieves ? ms : ms / Math.max(1, n);
            phase.cost = phase.cost === 0 ? unit : 0.8 * phase.cost + 0.2 * unit;
            kind = phase.kind;
            calibration = phase.calibration;
            scored = true;
          }
          const row: TraceRow = { stage: phase.label, in: n, out: current[0].hits.length, ms, ...stats };
          done.push(row);
          this.observe?.(this.name, row);
        }
        return { hits: current[0].hits, stages: done, kind, calibration };
      } finally {
        cancel.cancel();
      }
    });
  }
}

/** The work's result, or which came first of the deadline and the client going away. */
async function raceDeadline<T>(work: Promise<T>, deadline: number, gone?: Cancellation): Promise<T | 'timeout' | 'gone'> {
  if (gone?.cancelled) return 'gone';
  let timer: NodeJS.Timeout | undefined;
  let stopListening: (() => void) | undefined;
  const interrupted = new Promise<'timeout' | 'gone'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), Math.max(0, deadline - performance.now()));
    stopListening = gone?.onCancel(() => resolve('gone'));
  });
  try {
    return await Promise.race([work, interrupted]);
  } finally {
    clearTimeout(timer);
    stopListening?.();
  }
}

function describePhase(stages: Stage[]): PhaseInfo {
  const head = stages[0];
  const threshold = stages.find((s): s is Threshold => s instanceof Threshold && s.calibration !== undefined);
  return {
    stages,
    head,
    label: stages.map((s) => (s instanceof Retriever ? `${s.name} k=${s.k}` : s.name)).join(' → '),
    retrieves: retrieves(head),
    cutsOnly: stages.every((s) => s.kind === 'cutoff'),
    kind: head instanceof Rerank ? head.scorer.kind : 'unbounded',
    calibration: threshold?.calibration,
    cost: 0,
  };
}

/** A retriever, or a fusion whose every input starts by retrieving. */
function retrieves(s: Stage): boolean {
  if (s instanceof Retriever) return true;
  if (s instanceof Pipeline) {
    const first = s.compile()[0];
    return first !== undefined && retrieves(first);
  }
  if (s instanceof Fusion) return s.inputs.every(retrieves);
  return false;
}
