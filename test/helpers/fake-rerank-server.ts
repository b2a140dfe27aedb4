import { randomUUID } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A loopback server that speaks one hosted rerank API's wire format, for tests. It validates
 * the request fields the real API requires (and rejects what it rejects), scores pairs with a
 * deterministic function, returns results best first (so clients must map `index` back), and
 * honours the provider's limit field (so a client that forgets to ask for all scores loses
 * some). Scripted replies (`replies`) are served first to simulate 429s, 5xx, hangs, error
 * bodies with status 200 and malformed JSON.
 */
export type FakeShape =
  | 'cohere-v1'
  | 'cohere-v2'
  | 'voyage'
  | 'jina'
  | 'mixedbread'
  | 'pinecone'
  | 'tei'
  | 'vllm'
  | 'infinity'
  | 'winnow';

export interface FakeReply {
  status?: number;
  headers?: Record<string, string>;
  /** an object is sent as JSON, a string as is */
  body?: unknown;
  /** never answer (the client must time out) */
  hang?: boolean;
}

export interface FakeRerankServerOptions {
  shape: FakeShape;
  /** documents accepted per request; more → 413 for TEI (like `--max-client-batch-size`), 400 elsewhere */
  maxDocs?: number;
  /** when set, requests must carry it (`Authorization: Bearer`, or `Api-Key` for Pinecone) */
  apiKey?: string;
  /** the raw relevance of a pair; default `fakeLogit` */
  logit?: (query: string, text: string) => number;
  /** scripted replies served before normal answers, one per request */
  replies?: FakeReply[];
  /** return only this many results whatever was asked (a server that caps results) */
  capResults?: number;
  /** winnow shape: mark answers as degraded */
  degraded?: boolean;
}

export interface FakeRequest {
  path: string;
  headers: IncomingHttpHeaders;
  body: Record<string, unknown>;
}

export interface FakeRerankServer {
  readonly url: string;
  readonly requests: FakeRequest[];
  readonly replies: FakeReply[];
  close(): Promise<void>;
}

const ROUTES: Record<FakeShape, string[]> = {
  'cohere-v1': ['/v1/rerank'],
  'cohere-v2': ['/v2/rerank'],
  voyage: ['/v1/rerank'],
  jina: ['/v1/rerank'],
  mixedbread: ['/v1/reranking'],
  pinecone: ['/rerank'],
  tei: ['/rerank'],
  vllm: ['/rerank', '/v1/rerank', '/v2/rerank'],
  infinity: ['/rerank'],
  winnow: ['/v1/cascade'],
};

/** Deterministic pair relevance: query-term overlap, plus a small text hash to break ties. */
export function fakeLogit(query: string, text: string): number {
  const words = new Set(text.toLowerCase().split(/\W+/).filter(Boolean));
  const terms = new Set(query.toLowerCase().split(/\W+/).filter(Boolean));
  let overlap = 0;
  for (const t of terms) if (words.has(t)) overlap++;
  let h = 0;
  for (let i = 0; i < text.length; i++) h = (h * 31 + text.charCodeAt(i)) >>> 0;
  return overlap * 2 - 3 + (h % 1000) / 10_000;
}

export function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

/** Whitespace tokens, the fake's stand-in for a tokenizer in usage counts. */
export function fakeTokens(text: string): number {
  return text.split(/\s+/).filter(Boolean).length;
}

/** What a shape reports as the score of a pair (raw = the client asked for raw scores). */
export function fakeScore(shape: FakeShape, query: string, text: string, raw = false, logit = fakeLogit): number {
  const x = logit(query, text);
  if (shape === 'winnow') return x;
  if ((shape === 'tei' || shape === 'infinity') && raw) return x;
  return sigmoid(x);
}

/** The usage a shape reports for one request: Cohere/Pinecone units, everyone else tokens. */
export function fakeUsage(shape: FakeShape, query: string, texts: string[]): { searchUnits: number; tokens: number } {
  if (shape === 'cohere-v1' || shape === 'cohere-v2') return { searchUnits: Math.ceil(texts.length / 100), tokens: 0 };
  if (shape === 'pinecone') return { searchUnits: 1, tokens: 0 };
  if (shape === 'tei' || shape === 'winnow') return { searchUnits: 0, tokens: 0 };
  const q = fakeTokens(query);
  return { searchUnits: 0, tokens: texts.reduce((s, t) => s + q + fakeTokens(t), 0) };
}

class BadRequest extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function startFakeRerankServer(opts: FakeRerankServerOptions): Promise<FakeRerankServer> {
  const requests: FakeRequest[] = [];
  const replies = [...(opts.replies ?? [])];
  const logit = opts.logit ?? fakeLogit;

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = (req.url ?? '/').split('?')[0];
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
      } catch {
        // recorded as {} and rejected below
      }
      requests.push({ path, headers: req.headers, body });
      const scripted = replies.shift();
      if (scripted) {
        if (scripted.hang) return; // the socket stays open until close()
        send(res, scripted.status ?? 200, scripted.body ?? {}, scripted.headers);
        return;
      }
      try {
        if (req.method !== 'POST' || !ROUTES[opts.shape].includes(path)) throw new BadRequest(404, `no route ${req.method} ${path}`);
        checkAuth(opts, req.headers);
        send(res, 200, answer(opts, body, logit));
      } catch (e) {
        if (!(e instanceof BadRequest)) throw e;
        send(res, e.status, errorBody(opts.shape, e.status, e.message));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    replies,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': typeof body === 'string' ? 'text/plain' : 'application/json', ...headers });
  res.end(text);
}

function checkAuth(opts: FakeRerankServerOptions, headers: IncomingHttpHeaders): void {
  if (opts.shape === 'pinecone' && !headers['x-pinecone-api-version']) throw new BadRequest(400, 'missing X-Pinecone-API-Version header');
  if (!opts.apiKey) return;
  const ok = opts.shape === 'pinecone' ? headers['api-key'] === opts.apiKey : headers.authorization === `Bearer ${opts.apiKey}`;
  if (!ok) throw new BadRequest(401, 'invalid api key');
}

/** Each provider's error body, as its docs and servers show them. */
export function errorBody(shape: FakeShape, status: number, message: string): unknown {
  switch (shape) {
    case 'cohere-v1':
    case 'cohere-v2':
    case 'mixedbread':
      return { message };
    case 'voyage':
    case 'jina':
      return { detail: message };
    case 'pinecone':
      return { error: { code: 'INVALID_ARGUMENT', message }, status };
    case 'tei':
      return { error: message, error_type: status === 413 ? 'Validation' : 'Backend' };
    case 'vllm':
      return { object: 'error', message, type: 'BadRequestError', param: null, code: status };
    case 'infinity':
      return { detail: [{ loc: ['body'], msg: message, type: 'value_error' }] };
    case 'winnow':
      return { error: { code: 'bad_input', message } };
  }
}

function str(body: Record<string, unknown>, key: string, required = true): string | undefined {
  const v = body[key];
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string' || v === '') throw new BadRequest(400, `"${key}" must be a non-empty string`);
  return v;
}

function int(body: Record<string, unknown>, key: string, min: number): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new BadRequest(key === 'top_n' ? 422 : 400, `"${key}" must be an integer >= ${min}`);
  return v;
}

function bool(body: Record<string, unknown>, key: string): boolean | undefined {
  const v = body[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw new BadRequest(400, `"${key}" must be a boolean`);
  return v;
}

/** Reads the documents field in the forms the shape accepts. */
function texts(shape: FakeShape, body: Record<string, unknown>): string[] {
  const key = shape === 'tei' ? 'texts' : shape === 'mixedbread' ? 'input' : 'documents';
  const list = body[key];
  if (!Array.isArray(list) || list.length === 0) throw new BadRequest(400, `"${key}" must be a non-empty list`);
  const objectsOk = shape === 'cohere-v1' || shape === 'jina' || shape === 'mixedbread' || shape === 'pinecone' || shape === 'winnow';
  const objectsOnly = shape === 'pinecone';
  return list.map((d, i) => {
    if (typeof d === 'string' && !objectsOnly) return d;
    if (objectsOk && d && typeof d === 'object' && typeof (d as { text?: unknown }).text === 'string') {
      const o = d as { text: string; title?: string };
      return shape === 'winnow' && o.title ? `${o.title} ${o.text}` : o.text;
    }
    throw new BadRequest(400, `${key}[${i}]: expected ${objectsOnly ? '{text}' : objectsOk ? 'a string or {text}' : 'a string'}`);
  });
}

function answer(opts: FakeRerankServerOptions, body: Record<string, unknown>, logit: (q: string, t: string) => number): unknown {
  const shape = opts.shape;
  const query = str(body, 'query')!;
  // Required model fields, as the real APIs enforce them.
  if (shape === 'cohere-v2' || shape === 'voyage' || shape === 'jina' || shape === 'mixedbread' || shape === 'pinecone') str(body, 'model');
  const docs = texts(shape, body);
  if (opts.maxDocs !== undefined && docs.length > opts.maxDocs) {
    throw new BadRequest(shape === 'tei' ? 413 : 400, `batch size ${docs.length} > maximum allowed batch size ${opts.maxDocs}`);
  }
  if (shape === 'voyage' && docs.length > 1000) throw new BadRequest(400, 'The number of documents cannot exceed 1000');
  for (const k of ['truncate', 'raw_scores', 'return_text', 'return_documents', 'truncation', 'return_input']) bool(body, k);
  if (shape === 'tei' && body.truncation_direction !== undefined && body.truncation_direction !== 'Left' && body.truncation_direction !== 'Right') {
    throw new BadRequest(422, `truncation_direction: unknown variant \`${String(body.truncation_direction)}\`, expected \`Left\` or \`Right\``);
  }
  if (shape === 'pinecone') {
    const p = body.parameters as { truncate?: unknown } | undefined;
    if (p?.truncate !== undefined && p.truncate !== 'END' && p.truncate !== 'NONE') throw new BadRequest(400, 'parameters.truncate must be END or NONE');
  }
  const limitKey = shape === 'voyage' || shape === 'mixedbread' ? 'top_k' : 'top_n';
  // vLLM reads top_n = 0 as "all"; Infinity rejects anything below 1.
  let limit = int(body, limitKey, shape === 'vllm' ? 0 : 1);
  if (limit === 0 || limit === undefined) limit = docs.length;
  if (opts.capResults !== undefined) limit = Math.min(limit, opts.capResults);

  const raw = body.raw_scores === true;
  const ranked = docs
    .map((text, index) => ({ index, text, score: fakeScore(shape, query, text, raw, logit) }))
    .sort((a, b) => b.score - a.score)
    .slice(0, limit);
  const usage = fakeUsage(shape, query, docs);
  const model = typeof body.model === 'string' ? body.model : 'fake-model';

  switch (shape) {
    case 'cohere-v1':
    case 'cohere-v2':
      return {
        id: randomUUID(),
        results: ranked.map((r) => ({
          index: r.index,
          relevance_score: r.score,
          ...(shape === 'cohere-v1' && body.return_documents === true ? { document: { text: r.text } } : {}),
        })),
        meta: { api_version: { version: shape === 'cohere-v1' ? '1' : '2' }, billed_units: { search_units: usage.searchUnits } },
      };
    case 'voyage':
      return { object: 'list', data: ranked.map((r) => ({ index: r.index, relevance_score: r.score })), model, usage: { total_tokens: usage.tokens } };
    case 'jina':
      return { model, usage: { total_tokens: usage.tokens }, results: ranked.map((r) => ({ index: r.index, document: { text: r.text }, relevance_score: r.score })) };
    case 'mixedbread':
      return {
        usage: { prompt_tokens: usage.tokens, total_tokens: usage.tokens },
        model,
        data: ranked.map((r) => ({ index: r.index, score: r.score, object: 'rank_result' })),
        object: 'list',
        top_k: limit,
        return_input: false,
      };
    case 'pinecone':
      return { model, data: ranked.map((r) => ({ index: r.index, score: r.score })), usage: { rerank_units: usage.searchUnits } };
    case 'tei':
      return ranked.map((r) => ({ index: r.index, score: r.score }));
    case 'vllm':
      return {
        id: `rerank-${randomUUID()}`,
        model,
        usage: { total_tokens: usage.tokens },
        results: ranked.map((r) => ({ index: r.index, document: { text: r.text }, relevance_score: r.score })),
      };
    case 'infinity':
      return {
        object: 'rerank',
        results: ranked.map((r) => ({ relevance_score: r.score, index: r.index, document: body.return_documents ? r.text : null })),
        model,
        usage: { prompt_tokens: usage.tokens, total_tokens: usage.tokens },
        id: `infinity-${randomUUID()}`,
        created: Math.floor(Date.now() / 1000),
      };
    case 'winnow': {
      const list = body.documents as Array<string | { id?: string }>;
      const idOf = (i: number): string => {
        const d = list[i];
        return typeof d === 'string' || d.id === undefined ? String(i) : d.id;
      };
      return {
        results: ranked.map((r) => ({ index: r.index, id: idOf(r.index), score: r.score, scores: { fake: r.score } })),
        stages: [{ stage: 'fake', in: docs.length, out: ranked.length, ms: 0 }],
        ...(opts.degraded ? { degraded: true, skipped_stage: 'heavy' } : {}),
      };
    }
  }
}
