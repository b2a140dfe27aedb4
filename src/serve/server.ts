import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import swagger from '@fastify/swagger';
import { Ajv2020 } from 'ajv/dist/2020.js';
import Fastify, { type FastifyInstance } from 'fastify';
import { WinnowError } from '../core/errors.js';
import { costKind } from '../core/costs.js';
import type { TraceRow } from '../core/stage.js';
import type { Doc, DocLookup, Hit } from '../core/types.js';
import { ScoreCache } from '../cascade/cache.js';
import { addCacheMetrics } from './cache-metrics.js';
import type { Pipeline } from '../cascade/pipeline.js';
import { Admission } from './admission.js';
import { BearerAuth } from './auth.js';
import { BackpressureError, type BatchingScorer } from './batcher.js';
import { BodyBudget, MAX_DEADLINE_MS, readJson, resolveLimits, type ServeLimits } from './bounds.js';
import { Cancellation } from './cancel.js';
import { type RequestState, ServeContext } from './context.js';
import { closesConnection, errorBody, HttpError, toHttpError } from './errors.js';
import { type Collector, Gauge, type PromMetric, Registry } from './metrics.js';
import { cascadeRoutes } from './routes/cascade.js';
import { opsRoutes } from './routes/ops.js';
import { rerankRoutes } from './routes/rerank.js';
import { CascadeRunner } from './run.js';
import { openApiBase, schemas } from './schemas.js';

export { DEFAULT_LIMITS, MAX_DEADLINE_MS, type ServeLimits } from './bounds.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** set by the first hook on every request */
    winnow: RequestState;
  }
}

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
  /**
   * more series for /metrics (e.g. a cache tier's hits and errors): this module's Counter, Gauge
   * and Histogram, or prom-client metrics created with `registers: []`; `server.metrics.add()`
   * takes them later too
   */
  collectors?: Iterable<Collector | PromMetric>;
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
  /**
   * Runs one small request through every cascade (first model calls load and optimise their
   * graphs) with /ready answering 503 until it is done; a failure leaves the server not ready.
   */
  warmUp(): Promise<void>;
  /**
   * Starts a drain: /ready answers 503 from now on, everything else is served as before until
   * `close()`, so a load balancer stops sending before the server stops accepting.
   */
  drain(): void;
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

const POST_ROUTES = new Set(['/v2/rerank', '/v1/rerank', '/rerank', '/v1/cascade', '/v1/search']);
const GET_ROUTES = new Set(['/health', '/ready', '/metrics', '/openapi.json']);
/** `application/json`, or a `+json` type such as `application/vnd.api+json`, with any parameters. */
const JSON_TYPE = /^\s*application\/(?:[\w.!#$&^-]+\+)?json\s*(?:;|$)/i;

/**
 * The HTTP server behind `winnow serve`: provider-compatible rerank routes (Cohere v1/v2, Jina,
 * vLLM, TEI) and Winnow's own cascade and search routes over a set of compiled cascades, on
 * fastify. This function assembles the parts: limits and body reading (`bounds.ts`), admission
 * control (`admission.ts`), bearer auth (`auth.ts`), error answers (`errors.ts`), the routes
 * (`routes/`), metrics (`metrics.ts`) and the request log.
 *
 * Rerank routes give the request's documents to the cascade as its candidates, with ids "0".."n-1"
 * and a per-request document lookup, and skip the cascade's leading retrieval phases: one spec
 * can then serve both `/v1/search` (retrieve, then rerank) and the rerank routes (rerank only).
 */
export function createServer(opts: ServerOptions): WinnowServer {
  const { limits, clampedFrom } = resolveLimits(opts.limits);
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
  const log = opts.log === false ? undefined : (opts.log ?? ((e: Record<string, unknown>) => process.stdout.write(JSON.stringify(e) + '\n')));
  if (clampedFrom !== undefined) {
    log?.({ ts: new Date().toISOString(), event: 'warning', message: `default deadline ${clampedFrom} ms is above the maximum; using ${MAX_DEADLINE_MS} ms` });
  }
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
  const admission = new Admission(runners.values(), batchers, metrics, limits.defaultDeadlineMs);
  const ctx = new ServeContext(runners, defaultName, limits, admission, cache, opts.docs);
  const auth = new BearerAuth(opts.apiKeys);
  const budget = new BodyBudget(limits.maxBufferedBytes);

  let inFlight = 0;
  let closing = false;
  let draining = false;
  /** why /ready is false before the models are warm: `warming`, or `warm_up_failed` */
  let warming: { code: string; message: string } | undefined;
  let url = '';
  const idle: (() => void)[] = [];
  let connections = 0;

  metrics.add(new Gauge('winnow_queue_pairs', 'Pairs waiting for a model call, by scorer', () => [...batchers].map((b) => [{ scorer: b.id }, b.queueDepth])));
  metrics.add(new Gauge('winnow_inflight_requests', 'Requests being handled', () => [[{}, inFlight]]));
  metrics.add(
    new Gauge('winnow_score_cache_hit_ratio', 'Score cache hits / lookups since start', () =>
      cache ? [[{}, cache.hits + cache.misses > 0 ? cache.hits / (cache.hits + cache.misses) : 0]] : [],
    ),
  );
  metrics.add(new Gauge('winnow_score_cache_lookups_total', 'Score cache lookups by result (counter read at scrape time)', () => (cache ? [[{ result: 'hit' }, cache.hits], [{ result: 'miss' }, cache.misses]] : [])));
  addCacheMetrics(metrics);
  metrics.add(new Gauge('winnow_model_pairs_per_second', 'Measured model throughput (EWMA over recent calls), by scorer; admission control predicts queue waits from it', () => [...batchers].map((b) => [{ scorer: b.id }, b.pairsPerSecond])));
  metrics.add(new Gauge('winnow_open_connections', 'Open client connections (limit: maxConnections)', () => [[{}, connections]]));
  metrics.add(new Gauge('winnow_buffered_request_bytes', 'Request body bytes held across requests (limit: maxBufferedBytes)', () => [[{}, budget.held]]));
  for (const c of opts.collectors ?? []) metrics.add(c);
  metrics.add(new Gauge('winnow_ready', '1 when /ready answers 200; 0 while warming up or draining', () => [[{}, warming || draining || closing ? 0 : 1]]));

  const server = http.createServer({
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    // Node checks both timeouts on this interval (default 30 s, which would let a slow sender
    // keep its connection three times the timeout); a few checks per timeout cut it close to time.
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4))),
  });
  server.maxConnections = limits.maxConnections;
  server.on('drop', () => metrics.dropped.inc());
  server.on('connection', (socket) => {
    connections++;
    socket.once('close', () => connections--);
  });

  const app: FastifyInstance = Fastify({
    serverFactory: (handler) => server.on('request', handler),
    logger: false,
    // the request log below writes one JSON line per request; the id comes from the client when sane
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && /^[\x21-\x7e]{1,128}$/.test(given) ? given : randomUUID();
    },
    bodyLimit: limits.maxBodyBytes,
    // shutdown is ours (close() below): fastify's own answers 503 in its own body shape
    return503OnClosing: false,
  });
  app.decorateRequest('winnow', null as unknown as RequestState); // set by the first hook: never null in a route

  // ---- every request: bookkeeping, shutdown, auth, admission before the body ----
  // callback-style hooks: fastify runs them without a promise per request
  app.addHook('onRequest', (req, reply, done) => {
    const start = performance.now();
    const path = req.url.split('?')[0];
    // Only known routes get their own label; anything else would let clients grow the series.
    const route = POST_ROUTES.has(path) || GET_ROUTES.has(path) ? path : 'other';
    const state: RequestState = { start, route, gone: new Cancellation(), held: 0 };
    req.winnow = state;
    inFlight++;
    reply.raw.once('close', () => {
      // closed before the answer was written: the client hung up (or timed out)
      if (!reply.raw.writableFinished) state.gone.cancel();
      budget.release(state.held);
      state.held = 0;
      inFlight--;
      if (inFlight === 0) idle.splice(0).forEach((fn) => fn());
    });
    if (closing && req.method === 'POST') {
      req.raw.resume();
      return done(new HttpError(503, 'shutting_down', 'the server is shutting down', { 'Retry-After': '1' }));
    }
    // /metrics names the cascades, models and traffic: private with the rest unless asked otherwise
    const guarded = req.method === 'POST' || (path === '/metrics' && !opts.publicMetrics);
    if (auth.enabled && guarded && !auth.allows(req.headers.authorization)) {
      req.raw.resume();
      return done(new HttpError(401, 'unauthorized', 'missing or invalid bearer token (Authorization: Bearer <key>)', { 'WWW-Authenticate': 'Bearer' }));
    }
    try {
      if (req.method === 'POST' && POST_ROUTES.has(path)) admission.beforeBody(path, req.headers, start);
    } catch (e) {
      return done(e as Error);
    }
    done();
  });

  // ---- bodies: JSON only, within the body limits and the server-wide budget ----
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(JSON_TYPE, (req, payload, done) => {
    const reserve = (bytes: number): boolean => {
      if (!budget.reserve(bytes)) return false;
      req.winnow.held += bytes;
      return true;
    };
    readJson(payload, { maxBytes: limits.maxBodyBytes, maxBuffered: limits.maxBufferedBytes, idleMs: limits.bodyTimeoutMs, reserve }).then(
      (body) => done(null, body),
      (e: Error) => done(e, undefined),
    );
  });

  // Request bodies are validated by the same JSON Schemas (2020-12) that document them;
  // compiled when the server gets ready, not on a first request's deadline.
  const ajv = new Ajv2020({ allErrors: false, strict: false });
  const schemaNames = new Map(Object.entries(schemas).map(([name, s]) => [JSON.stringify(s), name]));
  app.setValidatorCompiler(({ schema, httpPart }) => {
    // headers are documented in the schema but checked where they are read, with errors naming them
    if (httpPart !== 'body') return () => true;
    const validate = ajv.compile(schema);
    const name = schemaNames.get(JSON.stringify(schema)) ?? 'request';
    return (body: unknown) => {
      if (validate(body)) return true;
      const e = validate.errors?.[0];
      const where = e ? `body${e.instancePath.replace(/\//g, '.')}` : 'body';
      return { error: new HttpError(422, 'invalid_request', `${where} ${e?.message ?? 'does not match the schema'} (schema ${name})`) };
    };
  });
  // response schemas are for the documentation; answers are written as built
  app.setSerializerCompiler(() => (data: unknown) => JSON.stringify(data));

  app.setErrorHandler((e, req, reply) => {
    const err = toHttpError(e);
    // do not read the rest of a body we will not use: answer and close the connection
    if (closesConnection(err)) reply.header('Connection', 'close');
    if (e instanceof BackpressureError) metrics.rejected.inc({ reason: 'queue_full', scorer: e.scorer });
    if (err.code === 'server_busy') metrics.rejected.inc({ reason: 'buffer_budget' });
    if (req.winnow) req.winnow.error = err.status >= 500 ? String((e as Error)?.stack ?? e) : err.code;
    return reply.code(err.status).headers(err.headers).send(errorBody(err.code, err.message));
  });

  app.setNotFoundHandler((req) => {
    const path = req.url.split('?')[0];
    if (POST_ROUTES.has(path) || GET_ROUTES.has(path)) {
      throw new HttpError(405, 'method_not_allowed', `${req.method} is not allowed on ${path}`, { Allow: POST_ROUTES.has(path) ? 'POST' : 'GET' });
    }
    throw new HttpError(404, 'not_found', `no route ${req.method} ${path}; see GET /openapi.json`);
  });

  // ---- every answer: request id, metrics, the request log ----
  app.addHook('onSend', (req, reply, payload, done) => {
    reply.header('X-Request-Id', req.id);
    if (closing) reply.header('Connection', 'close');
    const state = req.winnow;
    if (!state) return done(null, payload);
    const ms = performance.now() - state.start;
    const status = String(reply.statusCode);
    metrics.requests.inc({ route: state.route, status });
    metrics.requestSeconds.observe({ route: state.route, status }, ms / 1000);
    if (state.degraded) metrics.degraded.inc({ cascade: state.model ?? '', stage: state.degraded });
    if (state.route !== '/metrics' && state.route !== '/health' && state.route !== '/ready') {
      log?.({
        ts: new Date().toISOString(),
        request_id: req.id,
        method: req.method,
        route: state.route,
        status: reply.statusCode,
        ms: Math.round(ms * 100) / 100,
        docs: state.docs,
        model: state.model,
        ...(state.degraded ? { degraded: state.degraded } : {}),
        ...(state.error ? { error: state.error } : {}),
      });
    }
    done(null, payload);
  });

  // ---- routes, documented by @fastify/swagger from their schemas ----
  const doc = { auth: auth.enabled, publicMetrics: opts.publicMetrics };
  app.register(swagger, {
    openapi: openApiBase({ ...doc, title: 'Winnow', version: opts.version ?? '0.1.0', limits: { ...limits }, models: [...runners.keys()] }),
  });
  const readiness = {
    notReady: () =>
      closing || draining ? { code: 'shutting_down', message: 'the server is shutting down (draining)' } : warming,
    models: () => [...runners.keys()],
  };
  app.register(async (scope) => {
    rerankRoutes(scope, ctx, doc);
    cascadeRoutes(scope, ctx, doc);
    opsRoutes(scope, metrics, readiness, doc);
  });

  const warmUp = async (): Promise<void> => {
    warming = { code: 'warming', message: 'the server is loading and warming its models' };
    const texts = ['Winnow warms up its models.', 'A second document, so batches have more than one pair.'];
    try {
      for (const served of runners.values()) {
        // a runner of its own: the warm-up's slow first calls must not count in /metrics nor
        // teach the served runner's per-stage cost estimates (its deadline decisions)
        const r = new CascadeRunner(served.name, served.pipeline);
        const start = performance.now();
        const run = { cache: undefined, start, deadline: start + MAX_DEADLINE_MS, gone: new Cancellation() };
        if (r.ranksCandidates) {
          const docs = new Map<string, Doc>(texts.map((text, i) => [String(i), { id: String(i), text }]));
          const hits: Hit[] = texts.map((_, i) => ({ docId: String(i), score: texts.length - i, scores: {} }));
          await r.run({ id: 'warm-up', text: 'warm up' }, hits, { ...run, docs });
        } else {
          await r.run({ id: 'warm-up', text: 'warm up' }, undefined, { ...run, docs: opts.docs });
        }
      }
      warming = undefined;
      log?.({ ts: new Date().toISOString(), event: 'ready', models: [...runners.keys()] });
    } catch (e) {
      warming = { code: 'warm_up_failed', message: `warming up failed: ${(e as Error).message}` };
      log?.({ ts: new Date().toISOString(), event: 'error', message: warming.message });
      throw e;
    }
  };

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
      return budget.held;
    },
    warmUp,
    drain() {
      draining = true;
    },
    async listen(port = 0, host = '127.0.0.1') {
      await app.ready();
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
