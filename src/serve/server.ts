import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { WinnowError } from '../core/errors.js';
import { costKind } from '../core/costs.js';
import type { TraceRow } from '../core/stage.js';
import type { Doc, DocLookup, Hit } from '../core/types.js';
import { ScoreCache } from '../cascade/cache.js';
import { addCacheMetrics } from './cache-metrics.js';
import { calibrate } from '../cascade/calibration.js';
import type { Pipeline } from '../cascade/pipeline.js';
import type { NativeDocument, NativeResponse } from '../rerank/remote/native.js';
import { BackpressureError, type BatchingScorer } from './batcher.js';
import { Gauge, Registry } from './metrics.js';
import { Cancellation } from './cancel.js';
import { type CascadeResult, CascadeRunner, ClientGoneError, DeadlineError } from './run.js';
import { openApiDocument, type SchemaName, schemas } from './schemas.js';

export interface ServeLimits {
  /** request body, bytes (413 beyond) */
  maxBodyBytes: number;
  /** documents per request */
  maxDocs: number;
  /** characters per document; within it, scorers truncate to the model's length */
  maxDocChars: number;
  /** characters in the query (queries are never truncated, so they are refused instead) */
  maxQueryChars: number;
  /** time budget when the request names none, ms (clamped to MAX_DEADLINE_MS) */
  defaultDeadlineMs: number;
  /** open connections; connections beyond it are closed as they arrive */
  maxConnections: number;
  /**
   * request body bytes held across all requests at once, from the first byte until the answer is
   * written; a request that would go over it gets 503 with Retry-After (at least maxBodyBytes)
   */
  maxBufferedBytes: number;
  /** from connecting (or the previous request on a keep-alive connection) to the end of the headers, ms */
  headersTimeoutMs: number;
  /** from connecting to the last byte of the body, ms (at least headersTimeoutMs) */
  requestTimeoutMs: number;
  /** longest pause between two pieces of a body, ms */
  bodyTimeoutMs: number;
  /** after a shutdown begins, how long requests get to finish before their connections are destroyed, ms */
  shutdownGraceMs: number;
}

/**
 * The largest time budget a request gets, wherever it comes from (`deadline_ms`,
 * X-Request-Deadline-Ms, the server default): larger values are lowered to it. Timers overflow
 * beyond 2^31-1 ms and fire at once, and no caller waits five minutes for a ranking.
 */
export const MAX_DEADLINE_MS = 300_000;

export const DEFAULT_LIMITS: ServeLimits = {
  maxBodyBytes: 10 * 1024 * 1024,
  maxDocs: 1000,
  maxDocChars: 100_000,
  maxQueryChars: 4096,
  defaultDeadlineMs: 30_000,
  maxConnections: 512,
  maxBufferedBytes: 128 * 1024 * 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  bodyTimeoutMs: 10_000,
  shutdownGraceMs: 10_000,
};

/**
 * Admission control lets a request in when the queue ahead of it is predicted to clear within
 * this share of its remaining budget. The prediction comes from recent model calls and the rest
 * of the request (the response, other stages) needs time too, so a request predicted to finish
 * just on time would often finish just late: a 504 after its model time was spent.
 */
const ADMIT_SHARE = 0.8;

export interface ServerOptions {
  /** compiled cascades by the name clients pass as `model` */
  cascades: ReadonlyMap<string, Pipeline>;
  /** the cascade used when a request names none; default the first */
  defaultCascade?: string;
  /** the server's corpus: document text for `/v1/search` */
  docs?: DocLookup;
  limits?: Partial<ServeLimits>;
  /** accepted bearer tokens; empty or absent: no authentication */
  apiKeys?: readonly string[];
  /**
   * the micro-batchers the cascades' scorers run through (`withBatching` hands them out), for
   * their metrics and to drain them on close
   */
  batchers?: Iterable<BatchingScorer>;
  /** scores shared across requests; `false` disables caching */
  cache?: ScoreCache | false;
  /** serve /metrics without a bearer token even when keys are set (scrapers on a private network) */
  publicMetrics?: boolean;
  /** one JSON object per request; default: a line on stdout; `false`: no request log */
  log?: ((entry: Record<string, unknown>) => void) | false;
  version?: string;
}

export interface WinnowServer {
  /** resolves with the base URL once listening; port 0 picks a free port */
  listen(port?: number, host?: string): Promise<string>;
  /**
   * Stops accepting, lets in-flight requests finish for up to `graceMs` (default the
   * shutdownGraceMs limit), then destroys the connections left; resolves with how many that was.
   */
  close(graceMs?: number): Promise<{ unfinished: number }>;
  readonly url: string;
  readonly http: http.Server;
  readonly metrics: Registry;
  /** requests being handled now */
  readonly inFlight: number;
  /** open connections */
  readonly connections: number;
  /** request body bytes held now (reserved by Content-Length or received), against maxBufferedBytes */
  readonly bufferedBytes: number;
}

/** A response the handler decided on: status, JSON body, extra headers. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

interface Reply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
  /** for the request log */
  docs?: number;
  model?: string;
  degraded?: string;
}

interface RequestInfo {
  id: string;
  route: string;
  headers: http.IncomingHttpHeaders;
  start: number;
  /** cancelled if the client disconnects before the response is written */
  gone: Cancellation;
  /** takes body bytes from the server-wide budget; false when it has not that many left */
  reserve(bytes: number): boolean;
}

/** What every rerank-shaped request boils down to. */
interface Candidates {
  query: string;
  docs: Doc[];
  model?: string;
  topN?: number;
  deadlineMs?: number;
}

type Route = (body: unknown, req: RequestInfo) => Promise<Reply>;

/** A provider-shaped 200: the degraded stage goes in a header, since those shapes have no field for it. */
function providerReply(body: unknown, c: { docs: readonly unknown[] }, model: string, result: { skippedStage?: string }): Reply {
  const headers: Record<string, string> = result.skippedStage ? { 'X-Winnow-Degraded': headerSafe(result.skippedStage) } : {};
  return { status: 200, body, headers, docs: c.docs.length, model, degraded: result.skippedStage };
}

const SIGMOID = (x: number): number => 1 / (1 + Math.exp(-x));

/**
 * The HTTP server behind `winnow serve`: provider-compatible rerank routes (Cohere v1/v2, Jina,
 * vLLM, TEI) and Winnow's own cascade and search routes over a set of compiled cascades.
 *
 * Rerank routes give the request's documents to the cascade as its candidates, with ids "0".."n-1"
 * and a per-request document lookup, and skip the cascade's leading retrieval phases: one spec
 * can then serve both `/v1/search` (retrieve, then rerank) and the rerank routes (rerank only).
 */
export function createServer(opts: ServerOptions): WinnowServer {
  const limits: ServeLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  for (const [k, v] of Object.entries(limits)) {
    if (!Number.isInteger(v) || v < 1) throw new WinnowError('usage', `serve limit ${k} must be a positive integer, got ${v}`);
  }
  if (limits.maxBufferedBytes < limits.maxBodyBytes) {
    throw new WinnowError('usage', `serve limit maxBufferedBytes (${limits.maxBufferedBytes}) is below maxBodyBytes (${limits.maxBodyBytes}): a request of the allowed size could never be read`);
  }
  if (limits.headersTimeoutMs > limits.requestTimeoutMs) {
    throw new WinnowError('usage', `serve limit headersTimeoutMs (${limits.headersTimeoutMs}) is above requestTimeoutMs (${limits.requestTimeoutMs}), which includes the headers`);
  }
  const askedDeadline = limits.defaultDeadlineMs;
  limits.defaultDeadlineMs = Math.min(askedDeadline, MAX_DEADLINE_MS);
  if (opts.cascades.size === 0) throw new WinnowError('usage', 'serve needs at least one cascade');
  const defaultName = opts.defaultCascade ?? opts.cascades.keys().next().value!;
  if (!opts.cascades.has(defaultName)) {
    throw new WinnowError('usage', `default cascade "${defaultName}" is not one of: ${[...opts.cascades.keys()].join(', ')}`);
  }
  const metrics = new Registry();
  const cache = opts.cache === false ? undefined : (opts.cache ?? new ScoreCache({ maxEntries: 200_000 }));
  const observeStage = (cascade: string, row: TraceRow): void => {
    const labels = { cascade, stage: row.stage };
    metrics.stageSeconds.observe(labels, row.ms / 1000);
    for (const [cost, amount] of Object.entries(row.costs)) metrics.stageCosts.inc({ ...labels, cost, unit: costKind(cost).unit }, amount);
  };
  const runners = new Map<string, CascadeRunner>();
  for (const [name, p] of opts.cascades) runners.set(name, new CascadeRunner(name, p, observeStage));
  const batchers = new Set(opts.batchers ?? []);
  for (const b of batchers) {
    b.onBatch((e) => {
      metrics.batchPairs.observe({ scorer: e.scorer }, e.pairs);
      metrics.batchRequests.observe({ scorer: e.scorer }, e.requests);
    });
  }
  metrics.add(new Gauge('winnow_queue_pairs', 'Pairs waiting for a model call, by scorer', () => [...batchers].map((b) => [{ scorer: b.id }, b.queueDepth])));
  metrics.add(new Gauge('winnow_inflight_requests', 'Requests being handled', () => [[{}, inFlight]]));
  metrics.add(
    new Gauge('winnow_score_cache_hit_ratio', 'Score cache hits / lookups since start', () =>
      cache ? [[{}, cache.hits + cache.misses > 0 ? cache.hits / (cache.hits + cache.misses) : 0]] : [],
    ),
  );
  metrics.add(new Gauge('winnow_score_cache_lookups_total', 'Score cache lookups by result (counter read at scrape time)', () => (cache ? [[{ result: 'hit' }, cache.hits], [{ result: 'miss' }, cache.misses]] : [])));
  addCacheMetrics(metrics);

  const keyHashes = (opts.apiKeys ?? []).filter((k) => k !== '').map(sha256);
  const log = opts.log === false ? undefined : (opts.log ?? ((e: Record<string, unknown>) => process.stdout.write(JSON.stringify(e) + '\n')));
  if (askedDeadline > MAX_DEADLINE_MS) {
    log?.({ ts: new Date().toISOString(), event: 'warning', message: `default deadline ${askedDeadline} ms is above the maximum; using ${MAX_DEADLINE_MS} ms` });
  }

  // Admission control looks at the first model a request's documents meet: when its queue will
  // not clear in time, the answer would be a 504 after the wait, so refuse at once instead. Later
  // stages are the runner's business: it skips them and answers with a degraded ranking.
  const firstModel = new Map<CascadeRunner, BatchingScorer | undefined>();
  for (const r of runners.values()) {
    const s = r.firstScorer;
    firstModel.set(r, [...batchers].find((b) => b === s));
  }
  metrics.add(new Gauge('winnow_model_pairs_per_second', 'Measured model throughput (EWMA over recent calls), by scorer; admission control predicts queue waits from it', () => [...batchers].map((b) => [{ scorer: b.id }, b.pairsPerSecond])));
  for (const r of runners.values()) {
    const last = r.finalScorer;
    if (last?.kind === 'unbounded' && !last.calibrated) {
      log?.({
        ts: new Date().toISOString(),
        event: 'warning',
        cascade: r.name,
        message: `cascade "${r.name}" ends in unbounded scores ("${last.stage}"); Cohere-, Jina- and vLLM-shaped responses pass them as relevance_score unchanged, outside the [0,1] those APIs promise. Add a calibrated threshold after it, or end with a logit or probability scorer`,
      });
    }
  }
  const ajv = new Ajv2020({ allErrors: false, strict: false });
  // Compiled up front: compiling takes tens of ms, which would eat the first request's deadline.
  const validators = new Map<SchemaName, ValidateFunction>();
  for (const name of ['CohereV2RerankRequest', 'RerankRequest', 'TeiRerankRequest', 'CascadeRequest', 'SearchRequest'] as const) {
    validators.set(name, ajv.compile(schemas[name]));
  }
  const validate = (name: SchemaName, body: unknown): void => {
    const v = validators.get(name)!;
    if (!v(body)) {
      const e = v.errors?.[0];
      const where = e ? `body${e.instancePath.replace(/\//g, '.')}` : 'body';
      throw new HttpError(422, 'invalid_request', `${where} ${e?.message ?? 'does not match the schema'} (schema ${name})`);
    }
  };
  const openapi = JSON.stringify(
    openApiDocument({
      title: 'Winnow',
      version: opts.version ?? '0.1.0',
      auth: keyHashes.length > 0,
      publicMetrics: opts.publicMetrics,
      limits: { ...limits },
      models: [...runners.keys()],
    }),
  );

  let inFlight = 0;
  let closing = false;
  let url = '';
  const idle: (() => void)[] = [];
  let connections = 0;
  /** body bytes held by requests now: reserved from Content-Length, or counted as they arrive */
  let buffered = 0;
  metrics.add(new Gauge('winnow_open_connections', 'Open client connections (limit: maxConnections)', () => [[{}, connections]]));
  metrics.add(new Gauge('winnow_buffered_request_bytes', 'Request body bytes held across requests (limit: maxBufferedBytes)', () => [[{}, buffered]]));

  // ---- cascade plumbing shared by the routes ----

  const pick = (model: string | undefined): CascadeRunner => {
    const name = model ?? defaultName;
    const r = runners.get(name);
    if (!r) throw new HttpError(404, 'unknown_model', `unknown model "${name}"; known: ${[...runners.keys()].join(', ')}`);
    return r;
  };

  /** The request's deadline as a `performance.now()` time: body field, else header, else the default; at most MAX_DEADLINE_MS. */
  const deadlineOf = (req: RequestInfo, bodyMs: number | undefined): number => {
    const ms = bodyMs ?? headerDeadline(req.headers['x-request-deadline-ms']) ?? limits.defaultDeadlineMs;
    return req.start + Math.min(ms, MAX_DEADLINE_MS);
  };

  const overloaded = (b: BatchingScorer, wait: number, left: number, pairs: number): HttpError => {
    metrics.rejected.inc({ reason: 'predicted_wait', scorer: b.id });
    // when the queue will have shrunk enough for this request to fit its budget
    const retry = Math.max(1, Math.ceil((wait - ADMIT_SHARE * Math.max(0, left)) / 1000));
    return new HttpError(
      429,
      'overloaded',
      `the model queue would take about ${Math.round(wait)} ms to score ${pairs > 0 ? `this request's ${pairs} documents` : 'what is already waiting'} (${b.queueDepth} pairs waiting, ${Math.round(b.pairsPerSecond)} pairs/s), more than the ${Math.max(0, Math.round(left))} ms left of its deadline allow; retry later or with a longer deadline`,
      { 'Retry-After': String(retry) },
    );
  };

  /** Refuses a request its first model cannot serve before its deadline, from the measured rate. */
  const admit = (runner: CascadeRunner, pairs: number, deadline: number): void => {
    const b = firstModel.get(runner);
    if (!b) return;
    const wait = b.predictWaitMs(pairs);
    const left = deadline - performance.now();
    if (wait > ADMIT_SHARE * left) throw overloaded(b, wait, left, pairs);
  };

  /**
   * The same check before the body is read, from what is known then: refuse when even the
   * least-loaded cascade's queue, without this request's pairs, cannot clear in time. Under
   * overload most refusals happen here, and a refusal that reads and parses no body leaves the
   * CPU to the model.
   */
  const admitBeforeBody = (req: RequestInfo): void => {
    const fromHeader = headerDeadline(req.headers['x-request-deadline-ms'], true);
    // the body may carry a longer deadline_ms on the native routes
    const ms = fromHeader ?? (req.route === '/v1/cascade' || req.route === '/v1/search' ? MAX_DEADLINE_MS : limits.defaultDeadlineMs);
    const left = req.start + Math.min(ms, MAX_DEADLINE_MS) - performance.now();
    let least: { b: BatchingScorer; wait: number } | undefined;
    for (const b of firstModel.values()) {
      const wait = b ? b.predictWaitMs(0) : 0;
      if (wait <= ADMIT_SHARE * left) return;
      if (b && (!least || wait < least.wait)) least = { b, wait };
    }
    if (least) throw overloaded(least.b, least.wait, left, 0);
  };

  const checkLimits = (c: Candidates): void => {
    if (c.query.length > limits.maxQueryChars) {
      throw new HttpError(400, 'query_too_long', `query has ${c.query.length} characters; the limit (maxQueryChars) is ${limits.maxQueryChars}`);
    }
    if (c.docs.length > limits.maxDocs) {
      throw new HttpError(400, 'too_many_documents', `${c.docs.length} documents; the limit (maxDocs) is ${limits.maxDocs} per request`);
    }
    c.docs.forEach((d, i) => {
      const n = d.text.length + (d.title?.length ?? 0);
      if (n > limits.maxDocChars) {
        throw new HttpError(400, 'document_too_long', `document ${i} has ${n} characters; the limit (maxDocChars) is ${limits.maxDocChars}`);
      }
    });
  };

  /** Runs the chosen cascade over the request's documents; hits' docIds are their positions. */
  const rerank = async (c: Candidates, req: RequestInfo): Promise<{ runner: CascadeRunner; result: CascadeResult; hits: Hit[] }> => {
    checkLimits(c);
    const runner = pick(c.model);
    if (!runner.ranksCandidates) {
      throw new HttpError(400, 'not_a_reranker', `cascade "${runner.name}" has no stage that scores given documents; use /v1/search`);
    }
    const deadline = deadlineOf(req, c.deadlineMs);
    admit(runner, c.docs.length, deadline);
    const byId = new Map<string, Doc>();
    const n = c.docs.length;
    // Input order is the first ranking, so a cut-off before any scorer keeps the first documents.
    const candidates: Hit[] = c.docs.map((d, i) => {
      byId.set(d.id, d);
      return { docId: d.id, score: n - i, scores: {} };
    });
    const result = await runner.run({ id: req.id, text: c.query }, candidates, { docs: byId, cache, start: req.start, deadline, gone: req.gone });
    const hits = c.topN ? result.hits.slice(0, c.topN) : result.hits;
    return { runner, result, hits };
  };

  /**
   * Provider shapes promise scores in [0, 1]: map through the calibration after the last scoring
   * stage if there is one (identity only says its threshold is on raw scores), else logits
   * through a sigmoid; probabilities and similarities pass, unbounded ones too (warned at start).
   */
  const relevance = (r: CascadeResult, s: number): number =>
    r.scoredBy.calibration && r.scoredBy.calibration.kind !== 'identity' ? calibrate(r.scoredBy.calibration, s) : r.scoredBy.kind === 'logit' ? SIGMOID(s) : s;

  const searchUnits = (n: number): number => Math.max(1, Math.ceil(n / 100));

  // ---- routes ----

  const cohereV2: Route = async (body, req) => {
    validate('CohereV2RerankRequest', body);
    const b = body as { query: string; documents: (string | { text: string })[]; model?: string; top_n?: number };
    const c: Candidates = { query: b.query, docs: toDocs(b.documents), model: b.model, topN: b.top_n };
    const { runner, result, hits } = await rerank(c, req);
    return providerReply({
        id: req.id,
        results: hits.map((h) => ({ index: Number(h.docId), relevance_score: relevance(result, h.score) })),
        meta: { api_version: { version: '2' }, billed_units: { search_units: searchUnits(c.docs.length) } },
      }, c, runner.name, result);
  };

  // Cohere v1, Jina and vLLM share this route and these fields; `model` is echoed for Jina/vLLM.
  const v1Rerank: Route = async (body, req) => {
    validate('RerankRequest', body);
    const b = body as { query: string; documents: NativeDocument[]; model?: string; top_n?: number; return_documents?: boolean };
    const c: Candidates = { query: b.query, docs: toDocs(b.documents), model: b.model, topN: b.top_n };
    const { runner, result, hits } = await rerank(c, req);
    return providerReply({
        id: req.id,
        model: runner.name,
        results: hits.map((h) => {
          const i = Number(h.docId);
          const item: Record<string, unknown> = { index: i, relevance_score: relevance(result, h.score) };
          if (b.return_documents) {
            const d = b.documents[i];
            // Cohere v1 returns object documents as sent, with all their fields.
            item.document = typeof d === 'string' ? { text: d } : d;
          }
          return item;
        }),
        meta: { api_version: { version: '1' }, billed_units: { search_units: searchUnits(c.docs.length) } },
      }, c, runner.name, result);
  };

  // TEI answers every text, best first, as a bare array.
  const tei: Route = async (body, req) => {
    validate('TeiRerankRequest', body);
    const b = body as { query: string; texts: string[]; raw_scores?: boolean; return_text?: boolean; model?: string };
    const c: Candidates = { query: b.query, docs: toDocs(b.texts), model: b.model };
    const { runner, result, hits } = await rerank(c, req);
    return providerReply(hits.map((h) => {
        const i = Number(h.docId);
        const item: Record<string, unknown> = { index: i, score: b.raw_scores ? h.score : relevance(result, h.score) };
        if (b.return_text) item.text = b.texts[i];
        return item;
      }), c, runner.name, result);
  };

  const cascade: Route = async (body, req) => {
    validate('CascadeRequest', body);
    const b = body as { query: string; documents: NativeDocument[]; model?: string; top_n?: number; deadline_ms?: number };
    const c: Candidates = { query: b.query, docs: toDocs(b.documents), model: b.model, topN: b.top_n, deadlineMs: b.deadline_ms };
    const { runner, result, hits } = await rerank(c, req);
    const res: NativeResponse & { model: string } = {
      model: runner.name,
      results: hits.map((h) => {
        const i = Number(h.docId);
        const d = b.documents[i];
        return { index: i, id: typeof d === 'string' || d.id === undefined ? String(i) : d.id, score: h.score, scores: h.scores };
      }),
      stages: traceOf(result),
    };
    if (result.skippedStage) Object.assign(res, { degraded: true, skipped_stage: result.skippedStage });
    return { status: 200, body: res, docs: c.docs.length, model: runner.name, degraded: result.skippedStage };
  };

  const search: Route = async (body, req) => {
    validate('SearchRequest', body);
    const b = body as { query: string; model?: string; top_n?: number; deadline_ms?: number; return_documents?: boolean };
    if (b.query.length > limits.maxQueryChars) {
      throw new HttpError(400, 'query_too_long', `query has ${b.query.length} characters; the limit (maxQueryChars) is ${limits.maxQueryChars}`);
    }
    const runner = pick(b.model);
    if (!runner.retrieverBacked) {
      throw new HttpError(400, 'not_a_retriever', `cascade "${runner.name}" does not start with a retriever, so it cannot search; use /v1/cascade or a rerank route`);
    }
    const deadline = deadlineOf(req, b.deadline_ms);
    // the retriever decides how many documents reach the first model; only the queue ahead is known
    admit(runner, 0, deadline);
    const result = await runner.run({ id: req.id, text: b.query }, undefined, { docs: opts.docs, cache, start: req.start, deadline, gone: req.gone });
    const hits = b.top_n ? result.hits.slice(0, b.top_n) : result.hits;
    const res: Record<string, unknown> = {
      model: runner.name,
      results: await Promise.all(hits.map(async (h) => {
        const item: Record<string, unknown> = { id: h.docId, score: h.score, scores: h.scores };
        const d = b.return_documents ? (h.doc ?? (await opts.docs?.get(h.docId))) : undefined;
        if (d) {
          if (d.title !== undefined) item.title = d.title;
          item.text = d.text;
        }
        return item;
      })),
      stages: traceOf(result),
    };
    if (result.skippedStage) Object.assign(res, { degraded: true, skipped_stage: result.skippedStage });
    return { status: 200, body: res, model: runner.name, degraded: result.skippedStage };
  };

  const posts: Record<string, Route> = { '/v2/rerank': cohereV2, '/v1/rerank': v1Rerank, '/rerank': tei, '/v1/cascade': cascade, '/v1/search': search };

  // ---- HTTP ----

  const handle = async (req: http.IncomingMessage, info: RequestInfo): Promise<Reply & { route: string; contentType?: string; raw?: string }> => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET') {
      if (path === '/health') return { route: path, status: 200, body: { status: 'ok' } };
      if (path === '/ready') {
        return closing
          ? { route: path, status: 503, body: { error: { code: 'shutting_down', message: 'the server is shutting down' } } }
          : { route: path, status: 200, body: { status: 'ready', models: [...runners.keys()] } };
      }
      if (path === '/metrics') return { route: path, status: 200, body: undefined, raw: metrics.render(), contentType: 'text/plain; version=0.0.4; charset=utf-8' };
      if (path === '/openapi.json') return { route: path, status: 200, body: undefined, raw: openapi, contentType: 'application/json' };
    }
    const route = req.method === 'POST' ? posts[path] : undefined;
    if (!route) {
      const known = path in posts || ['/health', '/ready', '/metrics', '/openapi.json'].includes(path);
      throw known
        ? new HttpError(405, 'method_not_allowed', `${req.method} is not allowed on ${path}`, { Allow: path in posts ? 'POST' : 'GET' })
        : new HttpError(404, 'not_found', `no route ${req.method} ${path}; see GET /openapi.json`);
    }
    const hasBody = (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') || req.headers['transfer-encoding'] !== undefined;
    if (hasBody && !isJson(req.headers['content-type'])) {
      // A cross-site form or fetch can send text/plain without a CORS preflight; JSON needs one.
      throw new HttpError(415, 'unsupported_media_type', `request bodies must be JSON (Content-Type: application/json), got ${req.headers['content-type'] ? `"${req.headers['content-type']}"` : 'no Content-Type'}`, { 'Accept-Post': 'application/json' });
    }
    admitBeforeBody(info);
    const body = await readJson(req, { maxBytes: limits.maxBodyBytes, maxBuffered: limits.maxBufferedBytes, idleMs: limits.bodyTimeoutMs, reserve: info.reserve });
    return { route: path, ...(await route(body, info)) };
  };

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const start = performance.now();
    const given = req.headers['x-request-id'];
    const id = typeof given === 'string' && /^[\x21-\x7e]{1,128}$/.test(given) ? given : randomUUID();
    const path = (req.url ?? '/').split('?')[0];
    inFlight++;
    /** body bytes this request holds against maxBufferedBytes; given back when its connection is done with it */
    let held = 0;
    const reserve = (bytes: number): boolean => {
      if (buffered + bytes > limits.maxBufferedBytes) return false;
      buffered += bytes;
      held += bytes;
      return true;
    };
    const finish = (r: { route: string; status: number; body?: unknown; raw?: string; contentType?: string; headers?: Record<string, string>; docs?: number; model?: string; degraded?: string; error?: string }): void => {
      const payload = r.raw ?? JSON.stringify(r.body);
      const headers: Record<string, string | number> = {
        'Content-Type': r.contentType ?? 'application/json',
        'Content-Length': Buffer.byteLength(payload),
        'X-Request-Id': id,
        ...r.headers,
      };
      if (closing) headers.Connection = 'close';
      res.writeHead(r.status, headers);
      res.end(payload);
      const ms = performance.now() - start;
      const route = r.route;
      metrics.requests.inc({ route, status: String(r.status) });
      metrics.requestSeconds.observe({ route, status: String(r.status) }, ms / 1000);
      if (r.degraded) metrics.degraded.inc({ cascade: r.model ?? '', stage: r.degraded });
      if (route !== '/metrics' && route !== '/health' && route !== '/ready') {
        log?.({
          ts: new Date().toISOString(),
          request_id: id,
          method: req.method,
          route,
          status: r.status,
          ms: Math.round(ms * 100) / 100,
          docs: r.docs,
          model: r.model,
          ...(r.degraded ? { degraded: r.degraded } : {}),
          ...(r.error ? { error: r.error } : {}),
        });
      }
    };
    const done = (): void => {
      inFlight--;
      if (inFlight === 0) idle.splice(0).forEach((fn) => fn());
    };
    const gone = new Cancellation();
    res.on('close', () => {
      // closed before the answer was written: the client hung up (or timed out)
      if (!res.writableFinished) gone.cancel();
      buffered -= held;
      held = 0;
      done();
    });
    // Only known routes get their own label; anything else would let clients grow the series.
    const routeLabel = path in posts || ['/health', '/ready', '/metrics', '/openapi.json'].includes(path) ? path : 'other';

    if (closing && req.method === 'POST') {
      req.resume();
      finish({ route: routeLabel, status: 503, body: { error: { code: 'shutting_down', message: 'the server is shutting down' } }, headers: { 'Retry-After': '1' } });
      return;
    }
    // /metrics names the cascades, models and traffic: private with the rest unless asked otherwise
    const guarded = req.method === 'POST' || (path === '/metrics' && !opts.publicMetrics);
    if (keyHashes.length > 0 && guarded && !authorized(req.headers.authorization, keyHashes)) {
      req.resume();
      finish({ route: routeLabel, status: 401, body: { error: { code: 'unauthorized', message: 'missing or invalid bearer token (Authorization: Bearer <key>)' } }, headers: { 'WWW-Authenticate': 'Bearer' } });
      return;
    }
    handle(req, { id, route: routeLabel, headers: req.headers, start, gone, reserve })
      .then(finish)
      .catch((e: unknown) => {
        const err = toHttpError(e);
        if (err.status === 408 || err.status === 413 || err.status === 415 || err.code === 'server_busy') {
          // Do not read the rest of a body we will not use: answer and close the connection.
          res.shouldKeepAlive = false;
        }
        if (e instanceof BackpressureError) metrics.rejected.inc({ reason: 'queue_full', scorer: e.scorer });
        if (err.code === 'server_busy') metrics.rejected.inc({ reason: 'buffer_budget' });
        finish({
          route: routeLabel,
          status: err.status,
          body: { error: { code: err.code, message: err.message } },
          headers: err.headers,
          error: err.status >= 500 ? String((e as Error)?.stack ?? e) : err.code,
        });
      });
  };

  const server = http.createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      // Node checks both timeouts on this interval (default 30 s, which would let a slow sender
      // keep its connection three times the timeout); a few checks per timeout cut it close to time.
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4))),
    },
    onRequest,
  );
  server.maxConnections = limits.maxConnections;
  server.on('drop', () => metrics.dropped.inc());
  server.on('connection', (socket) => {
    connections++;
    socket.once('close', () => connections--);
  });

  return {
    http: server,
    metrics,
    get url() {
      return url;
    },
    get inFlight() {
      return inFlight;
    },
    get connections() {
      return connections;
    },
    get bufferedBytes() {
      return buffered;
    },
    listen(port = 0, host = '127.0.0.1') {
      return new Promise<string>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          const a = server.address() as AddressInfo;
          url = `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
          resolve(url);
        });
      });
    },
    async close(graceMs = limits.shutdownGraceMs) {
      closing = true;
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      let unfinished = 0;
      if (inFlight > 0) {
        let timer: NodeJS.Timeout | undefined;
        // A client sending its body slowly (or never) would otherwise hold shutdown up until
        // the request timeout, or for ever once past it.
        const late = await Promise.race([
          new Promise<false>((resolve) => idle.push(() => resolve(false))),
          new Promise<true>((resolve) => (timer = setTimeout(() => resolve(true), graceMs))),
        ]);
        clearTimeout(timer);
        if (late) unfinished = inFlight;
      }
      // What is left is idle keep-alive connections, connections that never sent a request
      // (which Node counts as active, so closeIdleConnections() leaves them), and after the
      // grace period the requests that did not finish: their runs see the client gone and stop.
      server.closeAllConnections();
      await stopped;
      for (const b of batchers) await b.close();
      return { unfinished };
    },
  };
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Compares hashes in constant time so response timing does not leak how much of a key matched. */
function authorized(header: string | undefined, keys: readonly Buffer[]): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header ?? '');
  if (!m) return false;
  const h = sha256(m[1].trim());
  let ok = false;
  for (const k of keys) ok = timingSafeEqual(h, k) || ok;
  return ok;
}

function toDocs(items: readonly NativeDocument[]): Doc[] {
  return items.map((d, i) => (typeof d === 'string' ? { id: String(i), text: d } : { id: String(i), text: d.text, title: d.title }));
}

function traceOf(r: CascadeResult): NativeResponse['stages'] {
  return r.stages.map((s) => ({ stage: s.stage, in: s.in, out: s.out, ms: Math.round(s.ms * 1000) / 1000 }));
}

function headerSafe(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?');
}

function toHttpError(e: unknown): HttpError {
  if (e instanceof HttpError) return e;
  if (e instanceof BackpressureError) return new HttpError(429, 'queue_full', e.message, { 'Retry-After': String(e.retryAfterSeconds) });
  if (e instanceof DeadlineError) return new HttpError(504, 'deadline_exceeded', e.message);
  // nginx's "client closed request": nobody reads it, but logs and metrics say what happened
  if (e instanceof ClientGoneError) return new HttpError(499, 'client_closed_request', e.message);
  if (e instanceof WinnowError) {
    const status = e.code === 'bad_input' ? 400 : e.code === 'not_found' ? 404 : e.code === 'unavailable' ? 503 : 500;
    return new HttpError(status, e.code, status === 500 ? `internal error: ${e.message}` : e.message);
  }
  return new HttpError(500, 'internal', 'internal error; see the server log');
}

/** `application/json`, or a `+json` type such as `application/vnd.api+json`, with any parameters. */
function isJson(type: string | undefined): boolean {
  return type !== undefined && /^\s*application\/(?:[\w.!#$&^-]+\+)?json\s*(?:;|$)/i.test(type);
}

/**
 * X-Request-Deadline-Ms in milliseconds; absent gives undefined, anything but a positive integer
 * a 400 (or undefined with `lenient`, for checks that run before the one that answers it).
 */
function headerDeadline(header: string | string[] | undefined, lenient = false): number | undefined {
  if (typeof header !== 'string') return undefined;
  if (/^\s*\d+\s*$/.test(header) && Number(header) >= 1) return Number(header);
  if (lenient) return undefined;
  throw new HttpError(400, 'invalid_deadline', `X-Request-Deadline-Ms must be a positive integer of milliseconds, got "${header}"`);
}

function serverBusy(maxBuffered: number): HttpError {
  return new HttpError(503, 'server_busy', `the server holds as many request bodies as it may (maxBufferedBytes ${maxBuffered} across requests); retry later`, { 'Retry-After': '1' });
}

interface BodyLimits {
  maxBytes: number;
  maxBuffered: number;
  idleMs: number;
  reserve(bytes: number): boolean;
}

/**
 * Reads a JSON body: 413 over `maxBytes`, 503 when the server-wide body budget has no room
 * (a declared Content-Length is reserved whole before the first byte, so what every request
 * may still send is already paid for), 408 after `idleMs` without a byte, 400 when it is not JSON.
 */
function readJson(req: http.IncomingMessage, { maxBytes, maxBuffered, idleMs, reserve }: BodyLimits): Promise<unknown> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) {
    return Promise.reject(new HttpError(413, 'body_too_large', `request body is ${declared} bytes; the limit (maxBodyBytes) is ${maxBytes}`));
  }
  let reserved = 0;
  if (Number.isFinite(declared) && declared > 0) {
    if (!reserve(declared)) return Promise.reject(serverBusy(maxBuffered));
    reserved = declared;
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const fail = (e: HttpError): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      chunks.length = 0;
      reject(e);
    };
    const timer = setTimeout(() => fail(new HttpError(408, 'body_timeout', `no request body bytes for ${idleMs} ms (the limit, bodyTimeoutMs); send the body without pausing`)), idleMs);
    req.on('data', (chunk: Buffer) => {
      if (settled) return;
      timer.refresh();
      size += chunk.length;
      if (size > maxBytes) {
        fail(new HttpError(413, 'body_too_large', `request body is over ${maxBytes} bytes, the limit (maxBodyBytes)`));
        return;
      }
      // a chunked body has no Content-Length: it takes its budget as it comes
      if (size > reserved) {
        if (!reserve(size - reserved)) {
          fail(serverBusy(maxBuffered));
          return;
        }
        reserved = size;
      }
      chunks.push(chunk);
    });
    req.on('error', (e) => fail(new HttpError(400, 'bad_request', `could not read the request body: ${e.message}`)));
    // the connection went away mid-body (the client, or Node's requestTimeout): nobody to answer
    req.on('close', () => fail(new HttpError(400, 'bad_request', 'the connection closed before the request body was complete')));
    req.on('end', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('utf8');
      try {
        resolve(JSON.parse(text));
      } catch (e) {
        reject(new HttpError(400, 'invalid_json', `request body is not valid JSON: ${(e as Error).message}`));
      }
    });
  });
}
