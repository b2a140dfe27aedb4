import { WinnowError } from '../core/errors.js';
import { BackpressureError } from './batcher.js';
import { ClientGoneError, DeadlineError } from './run.js';

/**
 * A response the server decided on: status, error code, message and extra headers. Every error
 * body has the same shape on every route, `{"error": {"code", "message"}}`: the provider SDKs we
 * imitate (Cohere, Jina, TEI clients) act on the status and show the message, and one shape lets
 * a client of several routes handle them alike.
 */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.statusCode = status;
  }
  /** what fastify reads (and writes: a plain field) when a hook or validator hands it this error */
  statusCode: number;
}

export function errorBody(code: string, message: string): { error: { code: string; message: string } } {
  return { error: { code, message } };
}

/** Errors after which the rest of the request body is not read: the connection closes with the answer. */
export function closesConnection(e: HttpError): boolean {
  return e.status === 408 || e.status === 413 || e.status === 415 || e.code === 'server_busy';
}

/** Fastify's own errors, by code, in Winnow's words (the routes' checks never raise these). */
function fromFastify(e: { code?: string; statusCode?: number; message: string }): HttpError | undefined {
  switch (e.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      // A cross-site form or fetch can send text/plain without a CORS preflight; JSON needs one.
      return new HttpError(415, 'unsupported_media_type', 'request bodies must be JSON (Content-Type: application/json or a +json type)', { 'Accept-Post': 'application/json' });
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new HttpError(413, 'body_too_large', e.message);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new HttpError(400, 'invalid_json', 'request body is empty; send a JSON object');
  }
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) return new HttpError(e.statusCode, 'bad_request', e.message);
  return undefined;
}

export function toHttpError(e: unknown): HttpError {
  if (e instanceof HttpError) return e;
  if (e instanceof BackpressureError) return new HttpError(429, 'queue_full', e.message, { 'Retry-After': String(e.retryAfterSeconds) });
  if (e instanceof DeadlineError) return new HttpError(504, 'deadline_exceeded', e.message);
  // nginx's "client closed request": nobody reads it, but logs and metrics say what happened
  if (e instanceof ClientGoneError) return new HttpError(499, 'client_closed_request', e.message);
  if (e instanceof WinnowError) {
    const status = e.code === 'bad_input' ? 400 : e.code === 'not_found' ? 404 : e.code === 'unavailable' ? 503 : 500;
    return new HttpError(status, e.code, status === 500 ? `internal error: ${e.message}` : e.message);
  }
  if (e instanceof Error) {
    const f = fromFastify(e as Error & { code?: string; statusCode?: number });
    if (f) return f;
  }
  return new HttpError(500, 'internal', 'internal error; see the server log');
}
