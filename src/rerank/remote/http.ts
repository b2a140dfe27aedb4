import { setTimeout as wait } from 'node:timers/promises';
import { WinnowError, type ErrorCode } from '../../core/errors.js';

/**
 * Transport settings shared by every remote scorer. Defaults suit hosted APIs: a slow answer
 * is retried rather than waited on forever, and a 429 waits as long as the provider asks
 * (up to `retryAfterMaxMs`) instead of hammering it.
 */
export interface HttpOptions {
  /** per attempt, including reading the body; default 30 000 ms */
  timeoutMs?: number;
  /** attempts in total (first try included); default 4 */
  maxAttempts?: number;
  /** first backoff ceiling; doubles each retry (full jitter picks in [0, ceiling]); default 500 ms */
  backoffBaseMs?: number;
  /** largest backoff ceiling; default 20 000 ms */
  backoffMaxMs?: number;
  /** longest wait honoured from a Retry-After header; default 60 000 ms */
  retryAfterMaxMs?: number;
  /** injectable for tests so retries do not slow them down */
  sleep?: (ms: number) => Promise<void>;
  /** clock for HTTP-date Retry-After values */
  now?: () => number;
  /** jitter source in [0, 1) */
  random?: () => number;
  /** defaults to Node's global fetch */
  fetch?: typeof fetch;
  /** cancels the whole call, retries included */
  signal?: AbortSignal;
}

export interface JsonPost {
  /** names the provider in every message, e.g. "cohere" */
  provider: string;
  url: string;
  headers?: Record<string, string>;
  body: unknown;
  /**
   * The key that holds results in a good answer (`results`, `data`), or `array` for servers that
   * answer with a bare array (TEI). An object without it that carries `error`, `message` or
   * `detail` is an error even when the status is 200.
   */
  resultsKey: string;
  /** names the env var or option holding the key, for the hint on 401/403 */
  keyHint?: string;
}

/**
 * An HTTP failure with its status. `status` is 0 for network errors and timeouts, so callers
 * can react to specific statuses (a 413 means "send fewer documents").
 */
export class RemoteError extends WinnowError {
  readonly status: number;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, status: number, retryable: boolean, hint?: string) {
    super(code, message, hint);
    this.status = status;
    this.retryable = retryable;
  }
}

const SNIPPET = 200;

export class HttpClient {
  private readonly timeoutMs: number;
  private readonly maxAttempts: number;
  private readonly backoffBaseMs: number;
  private readonly backoffMaxMs: number;
  private readonly retryAfterMaxMs: number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly fetch: typeof fetch;
  private readonly signal?: AbortSignal;

  constructor(opts: HttpOptions = {}) {
    this.timeoutMs = positive(opts.timeoutMs, 30_000, 'timeoutMs');
    this.maxAttempts = Math.floor(positive(opts.maxAttempts, 4, 'maxAttempts'));
    this.backoffBaseMs = positive(opts.backoffBaseMs, 500, 'backoffBaseMs');
    this.backoffMaxMs = positive(opts.backoffMaxMs, 20_000, 'backoffMaxMs');
    this.retryAfterMaxMs = positive(opts.retryAfterMaxMs, 60_000, 'retryAfterMaxMs');
    // A cancelled call stops waiting at once, not after a Retry-After of up to a minute.
    this.sleep = opts.sleep ?? ((ms) => wait(ms, undefined, { signal: opts.signal }).catch(() => undefined));
    this.now = opts.now ?? Date.now;
    this.random = opts.random ?? Math.random;
    this.fetch = opts.fetch ?? globalThis.fetch;
    this.signal = opts.signal;
  }

  /** POSTs JSON and returns the parsed answer, retrying what a retry can fix. */
  async postJson(req: JsonPost): Promise<unknown> {
    let last: RemoteError | undefined;
    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      let waitMs: number | undefined;
      try {
        return await this.once(req);
      } catch (e) {
        if (!(e instanceof RemoteError) || !e.retryable) throw e;
        last = e;
        waitMs = (e as RetryableWithDelay).retryAfterMs;
      }
      if (attempt === this.maxAttempts) break;
      const ceiling = Math.min(this.backoffMaxMs, this.backoffBaseMs * 2 ** (attempt - 1));
      await this.sleep(waitMs ?? Math.floor(this.random() * ceiling));
      if (this.signal?.aborted) break;
    }
    if (this.signal?.aborted) throw cancelled(req);
    throw new RemoteError(
      'unavailable',
      `${req.provider}: POST ${req.url} failed after ${this.maxAttempts} attempt${this.maxAttempts === 1 ? '' : 's'}: ${last?.message ?? 'unknown error'}`,
      last?.status ?? 0,
      false,
      'check that the service is up and reachable; raise timeoutMs or maxAttempts for slow servers',
    );
  }

  private async once(req: JsonPost): Promise<unknown> {
    if (this.signal?.aborted) throw cancelled(req);
    const timeout = AbortSignal.timeout(this.timeoutMs);
    const signal = this.signal ? AbortSignal.any([this.signal, timeout]) : timeout;
    let res: Response;
    let text: string;
    try {
      res = await this.fetch(req.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json', ...req.headers },
        body: JSON.stringify(req.body),
        signal,
      });
      // The body read is under the same signal: a server that sends headers and then stalls
      // is as dead as one that never answers.
      text = await res.text();
    } catch (e) {
      if (this.signal?.aborted) throw cancelled(req);
      if (timeout.aborted) throw new RemoteError('unavailable', `no answer within ${this.timeoutMs} ms`, 0, true);
      throw new RemoteError('unavailable', `network error: ${networkReason(e)}`, 0, true);
    }

    if (res.status === 408 || res.status === 429 || res.status >= 500) {
      const err = new RemoteError('unavailable', `HTTP ${res.status}: ${errorMessage(text)}`, res.status, true) as RetryableWithDelay;
      err.retryAfterMs = this.retryAfter(res.headers);
      throw err;
    }
    if (res.status < 200 || res.status >= 300) {
      const auth = res.status === 401 || res.status === 403;
      throw new RemoteError(
        auth || res.status === 404 ? 'unavailable' : 'bad_input',
        `${req.provider}: HTTP ${res.status} from ${req.url}: ${errorMessage(text)}`,
        res.status,
        false,
        auth ? `check the API key${req.keyHint ? ` (${req.keyHint})` : ''}` : res.status === 404 ? 'check the base URL, route and model name' : undefined,
      );
    }

    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      const type = res.headers.get('content-type') ?? 'no content-type';
      throw new RemoteError(
        'unavailable',
        `${req.provider}: response from ${req.url} is not JSON (HTTP ${res.status}, ${type}): ${JSON.stringify(snippet(text))}`,
        res.status,
        false,
        'is the base URL pointing at the rerank service rather than a proxy or web page?',
      );
    }
    const bodyError = errorInBody(json, req.resultsKey);
    if (bodyError !== undefined) {
      // Proxies and some gateways wrap rate limits and overloads in a 200; their embedded
      // status tells us whether waiting helps.
      const retryable = bodyError.status === 429 || (bodyError.status !== undefined && bodyError.status >= 500);
      const msg = `${req.provider}: error in a HTTP ${res.status} answer from ${req.url}: ${bodyError.message}`;
      throw new RemoteError(retryable ? 'unavailable' : bodyError.status !== undefined && bodyError.status < 500 ? 'bad_input' : 'unavailable', msg, res.status, retryable);
    }
    return json;
  }

  /** Retry-After as seconds or an HTTP date (plus the `retry-after-ms` some gateways send), capped. */
  private retryAfter(headers: Headers): number | undefined {
    const ms = headers.get('retry-after-ms');
    if (ms !== null && /^\d+(\.\d+)?$/.test(ms.trim())) return Math.min(this.retryAfterMaxMs, Math.ceil(Number(ms)));
    const v = headers.get('retry-after');
    if (v === null) return undefined;
    const s = v.trim();
    if (/^\d+(\.\d+)?$/.test(s)) return Math.min(this.retryAfterMaxMs, Math.ceil(Number(s) * 1000));
    const at = Date.parse(s);
    if (Number.isNaN(at)) return undefined;
    return Math.min(this.retryAfterMaxMs, Math.max(0, at - this.now()));
  }
}

interface RetryableWithDelay extends RemoteError {
  retryAfterMs?: number;
}

function cancelled(req: JsonPost): RemoteError {
  return new RemoteError('unavailable', `${req.provider}: request to ${req.url} was cancelled`, 0, false);
}

function positive(v: number | undefined, fallback: number, name: string): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new WinnowError('bad_spec', `${name}: expected a positive number, got ${String(v)}`);
  return v;
}

function networkReason(e: unknown): string {
  // undici hides the useful part (ECONNREFUSED, ENOTFOUND) in `cause`.
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  if (cause?.code) return `${cause.code}${cause.message ? ` (${cause.message})` : ''}`;
  return cause?.message ?? (e as Error).message ?? String(e);
}

function snippet(text: string): string {
  return text.length > SNIPPET ? `${text.slice(0, SNIPPET)}…` : text;
}

/** The provider's own words from an error body: JSON `error`/`message`/`detail`, else the raw text. */
export function errorMessage(text: string): string {
  if (text.trim() === '') return '(empty body)';
  try {
    const found = messageOf(JSON.parse(text));
    if (found) return found;
  } catch {
    // not JSON: fall through to the raw text
  }
  return snippet(text.trim());
}

function messageOf(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    // FastAPI validation errors: [{loc: [...], msg: "..."}]
    const parts = v.map((x) => {
      const o = x as { msg?: unknown; loc?: unknown };
      if (typeof o?.msg !== 'string') return undefined;
      return Array.isArray(o.loc) ? `${o.loc.join('.')}: ${o.msg}` : o.msg;
    });
    return parts.every((p) => p !== undefined) && parts.length ? parts.join('; ') : undefined;
  }
  if (!v || typeof v !== 'object') return undefined;
  const o = v as Record<string, unknown>;
  for (const key of ['error', 'message', 'detail', 'msg']) {
    if (o[key] !== undefined && o[key] !== null) {
      const m = messageOf(o[key]);
      if (m) return m;
    }
  }
  return undefined;
}

/**
 * Finds an error hiding in a 2xx answer: a body without the results container that carries
 * `error`, `message`, `detail` or `object: "error"`.
 */
export function errorInBody(json: unknown, resultsKey: string): { message: string; status?: number } | undefined {
  if (resultsKey === 'array' && Array.isArray(json)) return undefined;
  if (!json || typeof json !== 'object' || Array.isArray(json)) return undefined;
  const o = json as Record<string, unknown>;
  if (resultsKey !== 'array' && Array.isArray(o[resultsKey])) return undefined;
  if (!('error' in o) && !('message' in o) && !('detail' in o) && o.object !== 'error') return undefined;
  const inner = o.error && typeof o.error === 'object' ? (o.error as Record<string, unknown>) : o;
  const statusLike = [inner.code, inner.status, o.code, o.status, o.status_code].find(
    (x) => typeof x === 'number' && x >= 100 && x < 600,
  ) as number | undefined;
  return { message: messageOf(o) ?? snippet(JSON.stringify(o)), status: statusLike };
}
