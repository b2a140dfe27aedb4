import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { WinnowError } from '../core/errors.js';
import { costKind } from '../core/costs.js';
import type { TraceRow } from '../core/stage.js';
import type { Doc, DocLookup, Hit } from '../core/types.js';
import { ScoreCache } from '../cascade/cache.js';
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
  /** time budget when the request names none, ms */
  defaultDeadlineMs: number;
}

export const DEFAULT_LIMITS: ServeLimits = {
  maxBodyBytes: 10 * 1024 * 1024,
  maxDocs: 1000,
  maxDocChars: 100_000,
  maxQueryChars: 4096,
  defaultDeadlineMs: 30_000,
};

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
  /** one JSON object per request; default: a line on stdout; `false`: no request log */
  log?: ((entry: Record<string, unknown>) => void) | false;
  version?: string;
}

export interface WinnowServer {
  /** resolves with the base URL once listening; port 0 picks a free port */
  listen(port?: number, host?: string): Promise<string>;
  /** stops accepting, lets in-flight requests finish, then resolves */
  close(): Promise<void>;
  readonly url: string;
  readonly http: http.Server;
  readonly metrics: Registry;
  /** requests being handled now */
  readonly inFlight: number;
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
  headers: http.IncomingHttpHeaders;
  start: number;
  /** cancelled if the client disconnects before the response is written */
  gone: Cancellation;
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

  const keyHashes = (opts.apiKeys ?? []).filter((k) => k !== '').map(sha256);
  const log = opts.log === false ? undefined : (opts.log ?? ((e: Record<string, unknown>) => process.stdout.write(JSON.stringify(e) + '\n')));
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
      limits: { ...limits },
      models: [...runners.keys()],
    }),
  );

  let inFlight = 0;
  let closing = false;
  let url = '';
  const idle: (() => void)[] = [];

  // ---- cascade plumbing shared by the routes ----

  const pick = (model: string | undefined): CascadeRunner => {
    const name = model ?? defaultName;
    const r = runners.get(name);
    if (!r) throw new HttpError(404, 'unknown_model', `unknown model "${name}"; known: ${[...runners.keys()].join(', ')}`);
    return r;
  };

  const deadlineOf = (req: RequestInfo, bodyMs: number | undefined): number => {
    let ms = bodyMs;
    const header = req.headers['x-request-deadline-ms'];
    if (ms === undefined && typeof header === 'string') {
      if (!/^\d+$/.test(header.trim()) || Number(header) < 1) {
        throw new HttpError(400, 'invalid_deadline', `X-Request-Deadline-Ms must be a positive integer of milliseconds, got "${header}"`);
      }
      ms = Number(header);
    }
    return req.start + (ms ?? limits.defaultDeadlineMs);
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
    const result = await runner.run({ id: req.id, text: b.query }, undefined, { docs: opts.docs, cache, start: req.start, deadline: deadlineOf(req, b.deadline_ms), gone: req.gone });
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
    return { route: path, ...(await route(await readJson(req, limits.maxBodyBytes), info)) };
  };

  const server = http.createServer((req, res) => {
    const start = performance.now();
    const given = req.headers['x-request-id'];
    const id = typeof given === 'string' && /^[\x21-\x7e]{1,128}$/.test(given) ? given : randomUUID();
    const path = (req.url ?? '/').split('?')[0];
    inFlight++;
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
      done();
    });
    // Only known routes get their own label; anything else would let clients grow the series.
    const routeLabel = path in posts || ['/health', '/ready', '/metrics', '/openapi.json'].includes(path) ? path : 'other';

    if (closing && req.method === 'POST') {
      req.resume();
      finish({ route: routeLabel, status: 503, body: { error: { code: 'shutting_down', message: 'the server is shutting down' } }, headers: { 'Retry-After': '1' } });
      return;
    }
    if (keyHashes.length > 0 && req.method === 'POST' && !authorized(req.headers.authorization, keyHashes)) {
      req.resume();
      finish({ route: routeLabel, status: 401, body: { error: { code: 'unauthorized', message: 'missing or invalid bearer token (Authorization: Bearer <key>)' } }, headers: { 'WWW-Authenticate': 'Bearer' } });
      return;
    }
    handle(req, { id, headers: req.headers, start, gone })
      .then(finish)
      .catch((e: unknown) => {
        const err = toHttpError(e);
        if (err.status === 413) {
          // Do not read the rest of an oversized body: answer and close the connection.
          res.shouldKeepAlive = false;
        }
        if (err.status === 429) {
          const b = e instanceof BackpressureError ? e : undefined;
          if (b) metrics.rejected.inc({ scorer: b.scorer });
        }
        finish({
          route: routeLabel,
          status: err.status,
          body: { error: { code: err.code, message: err.message } },
          headers: err.headers,
          error: err.status >= 500 ? String((e as Error)?.stack ?? e) : err.code,
        });
      });
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
    async close() {
      closing = true;
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      if (inFlight > 0) await new Promise<void>((resolve) => idle.push(resolve));
      // Every accepted request is answered. What is left is idle keep-alive connections and
      // connections that never sent a request, which Node counts as active, so
      // closeIdleConnections() would leave them to hold shutdown up until the client's timeout.
      server.closeAllConnections();
      await stopped;
      for (const b of batchers) await b.close();
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

/** Reads a JSON body of at most `max` bytes; 413 beyond, 400 when it is not JSON. */
function readJson(req: http.IncomingMessage, max: number): Promise<unknown> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > max) {
    return Promise.reject(new HttpError(413, 'body_too_large', `request body is ${declared} bytes; the limit (maxBodyBytes) is ${max}`));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > max) {
        failed = true;
        reject(new HttpError(413, 'body_too_large', `request body is over ${max} bytes, the limit (maxBodyBytes)`));
        return;
      }
      chunks.push(chunk);
    });
    req.on('error', (e) => {
      if (!failed) reject(new HttpError(400, 'bad_request', `could not read the request body: ${e.message}`));
      failed = true;
    });
    req.on('end', () => {
      if (failed) return;
      const text = Buffer.concat(chunks).toString('utf8');
      try {
        resolve(JSON.parse(text));
      } catch (e) {
        reject(new HttpError(400, 'invalid_json', `request body is not valid JSON: ${(e as Error).message}`));
      }
    });
  });
}
