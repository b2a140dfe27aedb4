/**
 * Admission control by predicted wait: a request whose first model's queue will not clear
 * before its deadline would end in a 504 after waiting, so it is refused at once with 429 and a
 * Retry-After saying when the queue will have shrunk enough.
 */
import type http from 'node:http';
import type { BatchingScorer } from './batcher.js';
import { headerDeadline, MAX_DEADLINE_MS } from './bounds.js';
import { HttpError } from './errors.js';
import type { Registry } from './metrics.js';
import type { CascadeRunner } from './run.js';

/**
 * Admission control lets a request in when the queue ahead of it is predicted to clear within
 * this share of its remaining budget. The prediction comes from recent model calls and the rest
 * of the request (the response, other stages) needs time too, so a request predicted to finish
 * just on time would often finish just late: a 504 after its model time was spent.
 */
export const ADMIT_SHARE = 0.8;

/** Routes whose body may carry its own `deadline_ms`, longer than the server default. */
const BODY_DEADLINE_ROUTES = new Set(['/v1/cascade', '/v1/search']);

export class Admission {
  /**
   * Admission looks at the first model a request's documents meet. Later stages are the
   * runner's business: it skips them and answers with a degraded ranking.
   */
  private readonly firstModel = new Map<CascadeRunner, BatchingScorer | undefined>();

  constructor(
    runners: Iterable<CascadeRunner>,
    batchers: ReadonlySet<BatchingScorer>,
    private readonly metrics: Registry,
    private readonly defaultDeadlineMs: number,
  ) {
    for (const r of runners) {
      const s = r.firstScorer;
      this.firstModel.set(r, [...batchers].find((b) => b === s));
    }
  }

  /** Refuses a request its first model cannot serve before its deadline, from the measured rate. */
  admit(runner: CascadeRunner, pairs: number, deadline: number): void {
    const b = this.firstModel.get(runner);
    if (!b) return;
    const wait = b.predictWaitMs(pairs);
    const left = deadline - performance.now();
    if (wait > ADMIT_SHARE * left) throw this.overloaded(b, wait, left, pairs);
  }

  /**
   * The same check before the body is read, from what is known then: refuse when even the
   * least-loaded cascade's queue, without this request's pairs, cannot clear in time. Under
   * overload most refusals happen here, and a refusal that reads and parses no body leaves the
   * CPU to the model.
   */
  beforeBody(route: string, headers: http.IncomingHttpHeaders, start: number): void {
    const fromHeader = headerDeadline(headers['x-request-deadline-ms'], true);
    const ms = fromHeader ?? (BODY_DEADLINE_ROUTES.has(route) ? MAX_DEADLINE_MS : this.defaultDeadlineMs);
    const left = start + Math.min(ms, MAX_DEADLINE_MS) - performance.now();
    let least: { b: BatchingScorer; wait: number } | undefined;
    for (const b of this.firstModel.values()) {
      const wait = b ? b.predictWaitMs(0) : 0;
      if (wait <= ADMIT_SHARE * left) return;
      if (b && (!least || wait < least.wait)) least = { b, wait };
    }
    if (least) throw this.overloaded(least.b, least.wait, left, 0);
  }

  private overloaded(b: BatchingScorer, wait: number, left: number, pairs: number): HttpError {
    this.metrics.rejected.inc({ reason: 'predicted_wait', scorer: b.id });
    // when the queue will have shrunk enough for this request to fit its budget
    const retry = Math.max(1, Math.ceil((wait - ADMIT_SHARE * Math.max(0, left)) / 1000));
    return new HttpError(
      429,
      'overloaded',
      `the model queue would take about ${Math.round(wait)} ms to score ${pairs > 0 ? `this request's ${pairs} documents` : 'what is already waiting'} (${b.queueDepth} pairs waiting, ${Math.round(b.pairsPerSecond)} pairs/s), more than the ${Math.max(0, Math.round(left))} ms left of its deadline allow; retry later or with a longer deadline`,
      { 'Retry-After': String(retry) },
    );
  }
}
