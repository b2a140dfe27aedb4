import { Costs } from '../core/costs.js';
import { WinnowError } from '../core/errors.js';
import type { TraceRow } from '../core/stage.js';
import type { DocLookup, Hit, Query, ScoreKind, ScoredBy } from '../core/types.js';
import type { ScoreCache } from '../cascade/cache.js';
import type { Phase, Pipeline, RunPolicy } from '../cascade/pipeline.js';
import { requestScope } from './batcher.js';
import { Cancellation } from './cancel.js';

/** What a finished (possibly degraded) request returns. */
export interface CascadeResult {
  hits: Hit[];
  /** completed phases, in order */
  stages: TraceRow[];
  /** set when a phase was skipped or cut short to meet the deadline */
  skippedStage?: string;
  /** which stage's scores order the hits and what they mean (how to map them to [0, 1]) */
  scoredBy: ScoredBy;
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

/** What a phase's cost estimate keeps each time a request skips the phase on it. */
const SKIP_DECAY = 0.8;

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

/**
 * Serves one cascade. The walk is `Pipeline.execute`'s; this adds what a server needs and a
 * batch run does not, as a policy over it: a deadline checked before each phase (skip it when
 * its recent cost says it would overrun) and enforced during it (stop waiting when the
 * deadline passes, and drop the request's queued pairs), with the last completed phase's
 * ranking as the answer.
 */
export class CascadeRunner {
  private readonly phases: Phase[];
  /** recent cost per phase: ms per input hit for rankers, ms per call for retrievers (EWMA; 0 = unknown) */
  private readonly cost: number[];
  /** leading phases that retrieve; rerank routes start after them */
  readonly retrieverPhases: number;

  constructor(
    readonly name: string,
    readonly pipeline: Pipeline,
    private readonly observe?: (cascade: string, row: TraceRow) => void,
  ) {
    this.phases = pipeline.phases();
    this.cost = this.phases.map(() => 0);
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

  /**
   * The scorer behind the first phase that scores given candidates, when its stage exposes one
   * (`Rerank` does): the model a request's documents queue for first.
   */
  get firstScorer(): unknown {
    const head = this.phases.slice(this.retrieverPhases).find((p) => p.scoredBy)?.head;
    return (head as { scorer?: unknown } | undefined)?.scorer;
  }

  /** The last phase that scores: what a full run's final scores mean. */
  get finalScorer(): { stage: string; kind: ScoreKind; calibrated: boolean } | undefined {
    const last = this.phases.findLast((p) => p.scoredBy)?.scoredBy;
    return last && { stage: last.stage, kind: last.kind, calibrated: last.calibration !== undefined && last.calibration.kind !== 'identity' };
  }

  /**
   * Runs the cascade for one query. `candidates` given: skip the leading retrieval phases and
   * rank these hits; absent: retrieve first.
   */
  async run(query: Query, candidates: Hit[] | undefined, { docs, cache, start, deadline, gone }: RunContext): Promise<CascadeResult> {
    if (!candidates && !this.retrieverBacked) {
      throw new WinnowError('bad_input', `cascade "${this.name}" has no retriever stage, so it cannot search; use a rerank route`);
    }
    // Nothing to rank is not a timeout, whatever the budget.
    if (candidates && candidates.length === 0) return { hits: [], stages: [], scoredBy: { stage: 'none', kind: 'unbounded' } };
    const cancel = new Cancellation();
    const budget = Math.round(deadline - start);
    let scored = false;
    let clientGone = false;
    let started = 0;
    const overrun = (phase: Phase): 'stop' => {
      if (!scored) throw new DeadlineError(phase.head.name, budget);
      return 'stop';
    };
    const unitOf = (phase: Phase, n: number, ms: number): number => (phase.retrieves ? ms : ms / Math.max(1, n));
    const policy: RunPolicy = {
      before: (phase, batch) => {
        if (candidates && phase.index < this.retrieverPhases) return 'skip';
        if (phase.cutsOnly) return 'run';
        const now = performance.now();
        const cost = this.cost[phase.index];
        const estimate = phase.retrieves ? cost : cost * batch[0].hits.length;
        if (now >= deadline) return overrun(phase);
        if (cost > 0 && now + estimate > deadline) {
          // A phase skipped on its estimate does not run, so nothing else would ever correct the
          // estimate; and one timed out behind a queue records the queueing as its cost. Left
          // alone, one overload burst would skip (or 504) every later request until a restart.
          // Each skip lowers the estimate a little, so a later request runs the phase and
          // measures it again; a phase that really is this slow times out and sets it back.
          this.cost[phase.index] = cost * SKIP_DECAY;
          return overrun(phase);
        }
        started = now;
        return 'run';
      },
      await: async (phase, work, batch) => {
        const outcome = await raceDeadline(work, deadline, gone);
        if (outcome === 'gone') {
          work.catch(() => undefined);
          clientGone = true;
          return 'stop';
        }
        if (outcome === 'timeout') {
          // Stop waiting; the batcher drops this request's pairs that are still queued.
          cancel.cancel();
          work.catch(() => undefined);
          // It took at least this long: remember it, or the next request would wait again.
          const i = phase.index;
          this.cost[i] = Math.max(this.cost[i], unitOf(phase, batch[0].hits.length, performance.now() - started));
          return overrun(phase);
        }
        return outcome;
      },
      after: (phase, row) => {
        if (!phase.cutsOnly) {
          const i = phase.index;
          const unit = unitOf(phase, row.in, row.ms);
          this.cost[i] = this.cost[i] === 0 ? unit : 0.8 * this.cost[i] + 0.2 * unit;
          scored = true;
        }
        this.observe?.(this.name, row);
      },
    };
    return requestScope.run({ cancel }, async () => {
      try {
        const { rankings, trace, stoppedAt } = await this.pipeline.execute([{ query, hits: candidates ?? [] }], { docs, costs: new Costs(), cache }, policy);
        if (clientGone) throw new ClientGoneError();
        const [r] = rankings;
        // A stage that stopped at its own budget (an LLM's calls or tokens) degrades the answer as a skipped phase does.
        return { hits: r.hits, stages: trace, skippedStage: stoppedAt?.head.name ?? r.degraded?.stage, scoredBy: r.scoredBy ?? { stage: 'none', kind: 'unbounded' } };
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
