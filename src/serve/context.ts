/**
 * What the routes share: the served cascades by name, the limits, the score cache and
 * admission control, and the one way a rerank-shaped request is run.
 */
import type { Doc, DocLookup, Hit } from '../core/types.js';
import type { ScoreCache } from '../cascade/cache.js';
import { calibrate } from '../cascade/calibration.js';
import type { NativeDocument, NativeResponse } from '../rerank/remote/native.js';
import type { Admission } from './admission.js';
import { checkCandidates, headerDeadline, MAX_DEADLINE_MS, type ServeLimits } from './bounds.js';
import type { Cancellation } from './cancel.js';
import { HttpError } from './errors.js';
import type { CascadeResult, CascadeRunner } from './run.js';

/** Per-request state the hooks set up and the routes and request log read. */
export interface RequestState {
  /** `performance.now()` when the request arrived: deadlines count from here */
  start: number;
  /** route label for metrics and logs: a known path, or `other` */
  route: string;
  /** cancelled if the client disconnects before the response is written */
  gone: Cancellation;
  /** body bytes this request holds against maxBufferedBytes */
  held: number;
  /** for the request log */
  docs?: number;
  model?: string;
  degraded?: string;
  error?: string;
}

/** The request as routes see it. */
export interface ServeRequest {
  id: string;
  headers: Record<string, string | string[] | undefined>;
  winnow: RequestState;
}

/** What every rerank-shaped request boils down to. */
export interface Candidates {
  query: string;
  docs: Doc[];
  model?: string;
  topN?: number;
  deadlineMs?: number;
}

const SIGMOID = (x: number): number => 1 / (1 + Math.exp(-x));

export class ServeContext {
  constructor(
    readonly runners: ReadonlyMap<string, CascadeRunner>,
    readonly defaultName: string,
    readonly limits: ServeLimits,
    readonly admission: Admission,
    readonly cache: ScoreCache | undefined,
    readonly docs: DocLookup | undefined,
  ) {}

  pick(model: string | undefined): CascadeRunner {
    const name = model ?? this.defaultName;
    const r = this.runners.get(name);
    if (!r) throw new HttpError(404, 'unknown_model', `unknown model "${name}"; known: ${[...this.runners.keys()].join(', ')}`);
    return r;
  }

  /** The request's deadline as a `performance.now()` time: body field, else header, else the default; at most MAX_DEADLINE_MS. */
  deadlineOf(req: ServeRequest, bodyMs: number | undefined): number {
    const ms = bodyMs ?? headerDeadline(req.headers['x-request-deadline-ms']) ?? this.limits.defaultDeadlineMs;
    return req.winnow.start + Math.min(ms, MAX_DEADLINE_MS);
  }

  /** Runs the chosen cascade over the request's documents; hits' docIds are their positions. */
  async rerank(c: Candidates, req: ServeRequest): Promise<{ runner: CascadeRunner; result: CascadeResult; hits: Hit[] }> {
    checkCandidates(this.limits, c.query, c.docs);
    const runner = this.pick(c.model);
    if (!runner.ranksCandidates) {
      throw new HttpError(400, 'not_a_reranker', `cascade "${runner.name}" has no stage that scores given documents; use /v1/search`);
    }
    const deadline = this.deadlineOf(req, c.deadlineMs);
    this.admission.admit(runner, c.docs.length, deadline);
    const byId = new Map<string, Doc>();
    const n = c.docs.length;
    // Input order is the first ranking, so a cut-off before any scorer keeps the first documents.
    const candidates: Hit[] = c.docs.map((d, i) => {
      byId.set(d.id, d);
      return { docId: d.id, score: n - i, scores: {} };
    });
    const result = await runner.run({ id: req.id, text: c.query }, candidates, { docs: byId, cache: this.cache, start: req.winnow.start, deadline, gone: req.winnow.gone });
    const hits = c.topN ? result.hits.slice(0, c.topN) : result.hits;
    req.winnow.docs = c.docs.length;
    req.winnow.model = runner.name;
    req.winnow.degraded = result.skippedStage;
    return { runner, result, hits };
  }

  /**
   * Provider shapes promise scores in [0, 1]: map through the calibration after the last scoring
   * stage if there is one (identity only says its threshold is on raw scores), else logits
   * through a sigmoid; probabilities and similarities pass, unbounded ones too (warned at start).
   */
  relevance(r: CascadeResult, s: number): number {
    return r.scoredBy.calibration && r.scoredBy.calibration.kind !== 'identity' ? calibrate(r.scoredBy.calibration, s) : r.scoredBy.kind === 'logit' ? SIGMOID(s) : s;
  }
}

export function toDocs(items: readonly NativeDocument[]): Doc[] {
  return items.map((d, i) => (typeof d === 'string' ? { id: String(i), text: d } : { id: String(i), text: d.text, title: d.title }));
}

export function traceOf(r: CascadeResult): NativeResponse['stages'] {
  return r.stages.map((s) => ({ stage: s.stage, in: s.in, out: s.out, ms: Math.round(s.ms * 1000) / 1000 }));
}
