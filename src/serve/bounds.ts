/**
 * What one client may cost the server: limits on requests, bodies, time, connections and
 * deadlines, and the reading of a request body within them.
 */
import type http from 'node:http';
import { WinnowError } from '../core/errors.js';
import type { Doc } from '../core/types.js';
import { HttpError } from './errors.js';

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
 * The defaults with `given` over them, checked; a default deadline above MAX_DEADLINE_MS is
 * lowered to it and reported in `clampedFrom` so the server can say so once at start.
 */
export function resolveLimits(given: Partial<ServeLimits> = {}): { limits: ServeLimits; clampedFrom?: number } {
  const limits: ServeLimits = { ...DEFAULT_LIMITS, ...given };
  for (const [k, v] of Object.entries(limits)) {
    if (!Number.isInteger(v) || v < 1) throw new WinnowError('usage', `serve limit ${k} must be a positive integer, got ${v}`);
  }
  if (limits.maxBufferedBytes < limits.maxBodyBytes) {
    throw new WinnowError('usage', `serve limit maxBufferedBytes (${limits.maxBufferedBytes}) is below maxBodyBytes (${limits.maxBodyBytes}): a request of the allowed size could never be read`);
  }
  if (limits.headersTimeoutMs > limits.requestTimeoutMs) {
    throw new WinnowError('usage', `serve limit headersTimeoutMs (${limits.headersTimeoutMs}) is above requestTimeoutMs (${limits.requestTimeoutMs}), which includes the headers`);
  }
  const asked = limits.defaultDeadlineMs;
  limits.defaultDeadlineMs = Math.min(asked, MAX_DEADLINE_MS);
  return { limits, clampedFrom: asked > MAX_DEADLINE_MS ? asked : undefined };
}

/**
 * X-Request-Deadline-Ms in milliseconds; absent gives undefined, anything but a positive integer
 * a 400 (or undefined with `lenient`, for checks that run before the one that answers it).
 */
export function headerDeadline(header: string | string[] | undefined, lenient = false): number | undefined {
  if (typeof header !== 'string') return undefined;
  if (/^\s*\d+\s*$/.test(header) && Number(header) >= 1) return Number(header);
  if (lenient) return undefined;
  throw new HttpError(400, 'invalid_deadline', `X-Request-Deadline-Ms must be a positive integer of milliseconds, got "${header}"`);
}

/** Query length, document count and document length against the limits, each refusal naming its limit. */
export function checkCandidates(limits: ServeLimits, query: string, docs: readonly Doc[]): void {
  checkQuery(limits, query);
  if (docs.length > limits.maxDocs) {
    throw new HttpError(400, 'too_many_documents', `${docs.length} documents; the limit (maxDocs) is ${limits.maxDocs} per request`);
  }
  docs.forEach((d, i) => {
    const n = d.text.length + (d.title?.length ?? 0);
    if (n > limits.maxDocChars) {
      throw new HttpError(400, 'document_too_long', `document ${i} has ${n} characters; the limit (maxDocChars) is ${limits.maxDocChars}`);
    }
  });
}

export function checkQuery(limits: ServeLimits, query: string): void {
  if (query.length > limits.maxQueryChars) {
    throw new HttpError(400, 'query_too_long', `query has ${query.length} characters; the limit (maxQueryChars) is ${limits.maxQueryChars}`);
  }
}

/**
 * Request body bytes held across all requests (maxBufferedBytes). A request takes bytes with
 * `reserve` and gives back everything it took with `release` once its connection is done with it.
 */
export class BodyBudget {
  held = 0;
  constructor(readonly max: number) {}
  reserve(bytes: number): boolean {
    if (this.held + bytes > this.max) return false;
    this.held += bytes;
    return true;
  }
  release(bytes: number): void {
    this.held -= bytes;
  }
}

export function serverBusy(maxBuffered: number): HttpError {
  return new HttpError(503, 'server_busy', `the server holds as many request bodies as it may (maxBufferedBytes ${maxBuffered} across requests); retry later`, { 'Retry-After': '1' });
}

export interface BodyLimits {
  maxBytes: number;
  maxBuffered: number;
  idleMs: number;
  /** takes body bytes from the server-wide budget for this request; false when there is not enough left */
  reserve(bytes: number): boolean;
}

/**
 * Reads a JSON body: 413 over `maxBytes`, 503 when the server-wide body budget has no room
 * (a declared Content-Length is reserved whole before the first byte, so what every request
 * may still send is already paid for), 408 after `idleMs` without a byte, 400 when it is not JSON.
 * Hand-written, as fastify's JSON content-type parser: fastify's own has no budget across requests and no idle timeout.
 */
export function readJson(req: http.IncomingMessage, { maxBytes, maxBuffered, idleMs, reserve }: BodyLimits): Promise<unknown> {
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
