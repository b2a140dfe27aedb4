import { Client, errors } from '@opensearch-project/opensearch';
import { defineCost } from '../../core/costs.js';
import { WinnowError } from '../../core/errors.js';

/**
 * Where an OpenSearch (or Elasticsearch `_search`-compatible) index lives:
 * - `opensearch://host:port/INDEX` (plain HTTP), `opensearch+https://host:port/INDEX`;
 * - `opensearch:http://host:port/INDEX`, `opensearch:https://user:pass@host:port/INDEX`;
 * - several nodes of one cluster: `opensearch://h1:9200,h2:9200/INDEX` (the client spreads
 *   requests over them and moves off a node that stops answering).
 */
export interface OpenSearchTarget {
  /** node base URLs, credentials included when given */
  nodes: string[];
  index: string;
}

export const OPENSEARCH_REQUESTS = defineCost({
  name: 'opensearch.requests',
  label: 'os req',
  unit: 'requests',
  help: 'HTTP requests sent to OpenSearch (an _msearch counts once, retries count again)',
  role: 'work',
});
export const OPENSEARCH_PARTIAL = defineCost({
  name: 'opensearch.partial',
  label: 'os partial',
  unit: 'queries',
  help: 'OpenSearch result lists accepted although a shard failed or the engine timed out (allowPartial)',
  role: 'note',
});
export const OPENSEARCH_REJECTED = defineCost({
  name: 'opensearch.rejected',
  label: 'os 429',
  unit: 'requests',
  help: 'OpenSearch answers of 429 Too Many Requests (retried with backoff)',
  role: 'note',
});

const EXAMPLE = 'opensearch://localhost:9200/INDEX';

/** Parses a target reference; every malformed one names what was wrong and shows the form. */
export function parseOpenSearchTarget(ref: string, where = 'opensearch'): OpenSearchTarget {
  let scheme = 'http';
  let rest: string;
  const m = /^opensearch(?:\+(https?))?:\/\/(.*)$/.exec(ref);
  const explicit = /^opensearch:(https?):\/\/(.*)$/.exec(ref);
  if (m) {
    scheme = m[1] ?? 'http';
    rest = m[2];
  } else if (explicit) {
    scheme = explicit[1];
    rest = explicit[2];
  } else {
    throw new WinnowError('bad_spec', `${where}: "${ref}" is not an OpenSearch reference`, `write ${EXAMPLE} (or opensearch:https://user:pass@host:port/INDEX)`);
  }
  const slash = rest.indexOf('/');
  const hosts = slash < 0 ? rest : rest.slice(0, slash);
  const index = slash < 0 ? '' : decodeURIComponent(rest.slice(slash + 1).replace(/\/+$/, ''));
  if (!index) throw new WinnowError('bad_spec', `${where}: "${ref}" names no index`, `write ${EXAMPLE}`);
  // OpenSearch's own index-name rules, checked here so a typo fails before any request.
  if (!/^[a-z0-9][a-z0-9._+-]*$/.test(index) || index.length > 255 || index === '.' || index === '..') {
    throw new WinnowError('bad_spec', `${where}: "${index}" is not a valid index name`, 'index names are lowercase letters, digits, and . _ + - (not starting with them)');
  }
  const nodes = hosts.split(',').map((h) => {
    const url = `${scheme}://${h.trim()}`;
    try {
      const u = new URL(url);
      if (!u.hostname || u.pathname !== '/') throw new Error('bad');
    } catch {
      throw new WinnowError('bad_spec', `${where}: "${h}" in "${ref}" is not a host[:port]`, `write ${EXAMPLE}`);
    }
    return url;
  });
  return { nodes, index };
}

/** The reference back, without credentials (for describe(), tables and errors). */
export function targetLabel(t: OpenSearchTarget): string {
  const hosts = t.nodes.map((n) => {
    const u = new URL(n);
    return `${u.protocol === 'https:' ? 'https://' : ''}${u.host}`;
  });
  const secure = hosts.some((h) => h.startsWith('https://'));
  return secure ? `opensearch:${hosts.join(',')}/${t.index}` : `opensearch://${hosts.join(',')}/${t.index}`;
}

export interface ClientOptions {
  /** client-side limit for one request, ms */
  requestTimeoutMs?: number;
  /** how often the client retries a request on another node after a connection failure */
  maxRetries?: number;
}

export function openSearchClient(t: OpenSearchTarget, opts: ClientOptions = {}): Client {
  return new Client({
    nodes: t.nodes,
    requestTimeout: opts.requestTimeoutMs ?? 30_000,
    maxRetries: opts.maxRetries ?? 3,
    // A node that refused a connection is retried later by a ping, not on the next request.
    resurrectStrategy: 'ping',
  });
}

/** What OpenSearch says in an error body: `{error: {type, reason, root_cause}, status}`. */
export function engineReason(body: unknown): string | undefined {
  if (!body || typeof body !== 'object') return typeof body === 'string' && body ? body.slice(0, 300) : undefined;
  const err = (body as { error?: unknown }).error;
  if (typeof err === 'string') return err;
  if (err && typeof err === 'object') {
    const e = err as { type?: string; reason?: string; root_cause?: { type?: string; reason?: string }[] };
    const root = e.root_cause?.[0];
    const first = root?.reason && root.reason !== e.reason ? `; ${root.type}: ${root.reason}` : '';
    return `${e.type ?? 'error'}: ${e.reason ?? 'no reason given'}${first}`;
  }
  return undefined;
}

/** A status the engine answered with, from a thrown client error or an _msearch/_bulk item. */
export function statusOf(e: unknown): number | undefined {
  return e instanceof errors.ResponseError ? e.statusCode : undefined;
}

/**
 * Maps a client failure to a WinnowError a person can act on: unreachable nodes, timeouts,
 * 429s, a missing index, a query the engine refused. `what` says what was being done.
 */
export function engineError(e: unknown, t: OpenSearchTarget, what: string): WinnowError {
  if (e instanceof WinnowError) return e;
  const at = targetLabel(t);
  if (e instanceof errors.NoLivingConnectionsError || e instanceof errors.ConnectionError) {
    return new WinnowError('unavailable', `${what}: cannot reach OpenSearch at ${t.nodes.map((n) => new URL(n).host).join(', ')} (${e.message})`, 'is the cluster up and the address right? every node listed was tried');
  }
  if (e instanceof errors.TimeoutError) {
    return new WinnowError('unavailable', `${what}: OpenSearch (${at}) did not answer in time`, 'raise timeoutMs, or check the cluster');
  }
  if (e instanceof errors.ResponseError) {
    const reason = engineReason(e.body) ?? e.message;
    if (e.statusCode === 429) {
      return new WinnowError('unavailable', `${what}: OpenSearch (${at}) rejected the request: 429 Too Many Requests (${reason})`, 'the cluster is overloaded: retry later, send fewer concurrent queries, or raise retries');
    }
    if (e.statusCode === 404 && /index_not_found/.test(reason)) {
      return new WinnowError('not_found', `${what}: no index "${t.index}" in OpenSearch at ${at}`, `create it with \`winnow index --to ${at} --corpus corpus.jsonl\``);
    }
    if (e.statusCode === 401 || e.statusCode === 403) {
      return new WinnowError('unavailable', `${what}: OpenSearch (${at}) refused the credentials (${e.statusCode}: ${reason})`, 'give user:password in the URL: opensearch:https://user:pass@host:9200/INDEX');
    }
    if (e.statusCode === 400) return new WinnowError('bad_spec', `${what}: OpenSearch (${at}) refused the request: ${reason}`);
    return new WinnowError('unavailable', `${what}: OpenSearch (${at}) answered ${e.statusCode}: ${reason}`);
  }
  if (e instanceof errors.OpenSearchClientError) return new WinnowError('unavailable', `${what}: OpenSearch client error (${at}): ${e.message}`);
  return new WinnowError('internal', `${what}: ${(e as Error)?.message ?? String(e)}`);
}

/** Retry-After in ms (seconds or an HTTP date), capped; undefined when absent. */
function retryAfterMs(e: unknown, capMs: number): number | undefined {
  const h = e instanceof errors.ResponseError ? (e.headers?.['retry-after'] as string | undefined) : undefined;
  if (!h) return undefined;
  const secs = Number(h);
  const ms = Number.isFinite(secs) ? secs * 1000 : Date.parse(h) - Date.now();
  return Number.isFinite(ms) ? Math.min(Math.max(ms, 0), capMs) : undefined;
}

export interface RetryOptions {
  /** retries after a 429 (default 3) */
  retries?: number;
  /** first backoff; doubles each retry (default 200 ms) */
  baseMs?: number;
  /** no single wait longer than this, whatever Retry-After says (default 5 s) */
  capMs?: number;
  /** called on every 429 (to count it) */
  onRejected?: () => void;
}

/** Thrown from inside `fn` to ask for a retry: an _msearch/_bulk item said 429 although the request succeeded. */
export class Rejected extends Error {
  constructor(readonly detail: string) {
    super(detail);
  }
}

/**
 * Runs `fn`, retrying when OpenSearch answers 429 (the client itself never retries those):
 * exponential backoff from `baseMs`, or the engine's Retry-After when it sends one.
 */
export async function retryRejected<T>(fn: () => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const retries = opts.retries ?? 3;
  const base = opts.baseMs ?? 200;
  const cap = opts.capMs ?? 5000;
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      const rejected = e instanceof Rejected || statusOf(e) === 429;
      if (!rejected) throw e;
      opts.onRejected?.();
      if (attempt >= retries) {
        if (e instanceof Rejected) throw new WinnowError('unavailable', `OpenSearch rejected the request ${attempt + 1} times: 429 Too Many Requests (${e.detail})`, 'the cluster is overloaded: retry later, send fewer concurrent queries, or raise retries');
        throw e;
      }
      const wait = retryAfterMs(e, cap) ?? Math.min(base * 2 ** attempt, cap);
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

