/**
 * HTTP plumbing shared by the model sources: resumable downloads to `<file>.part` then rename,
 * a progress bar for big files, and one readable error when the network is not there.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { WinnowError } from '../../core/errors.js';
import { Progress } from '../../core/progress.js';

/** Error codes from undici/libuv that mean "no network path to the host", not "the host said no". */
const OFFLINE_CODES = new Set([
  'ENOTFOUND', 'EAI_AGAIN', 'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH',
  'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_SOCKET', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT',
]);

/** Tells the person what to do when a model cannot be fetched: where the files would go. */
export interface FetchContext {
  ref: string;
  dest: string;
}

export function offlineError(url: string, err: unknown, ctx: FetchContext): WinnowError {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const why = cause?.code ?? cause?.message ?? (err as Error).message;
  return new WinnowError('unavailable',
    `cannot download ${ctx.ref}: ${new URL(url).host} is unreachable (${why})`,
    `on a machine with network run: winnow models pull ${ctx.ref}, then copy the folder to ${ctx.dest}; ` +
      'or pass the path of a local model folder instead of the reference');
}

function isNetworkError(err: unknown): boolean {
  if (err instanceof WinnowError) return false;
  const e = err as { name?: string; code?: string; cause?: { code?: string } };
  if (e.name === 'AbortError' || e.name === 'TimeoutError') return true;
  const code = e.cause?.code ?? e.code;
  // undici reports DNS/connect failures as TypeError('fetch failed') with the errno on `cause`.
  return (code !== undefined && OFFLINE_CODES.has(code)) || (err instanceof TypeError && e.cause !== undefined);
}

function timeoutMs(): number {
  const raw = Number(process.env.WINNOW_HTTP_TIMEOUT_MS);
  return Number.isFinite(raw) && raw > 0 ? raw : 60_000;
}

/** GET with the network failures turned into `unavailable`; HTTP statuses are the caller's. */
export async function httpGet(url: string, ctx: FetchContext, headers: Record<string, string> = {},
  signal: AbortSignal = AbortSignal.timeout(timeoutMs())): Promise<Response> {
  try {
    return await fetch(url, { headers, redirect: 'follow', signal });
  } catch (err) {
    if (isNetworkError(err)) throw offlineError(url, err, ctx);
    throw err;
  }
}

export function httpStatusError(url: string, res: Response, ctx: FetchContext): WinnowError {
  if (res.status === 401 || res.status === 403) {
    return new WinnowError('unavailable', `${url} answered ${res.status} ${res.statusText}: access denied for ${ctx.ref}`,
      'for a gated or private Hugging Face model set HF_TOKEN to a token that has access');
  }
  if (res.status === 404) {
    return new WinnowError('not_found', `${url} answered 404: ${ctx.ref} has no such file`,
      'check the name and version of the model');
  }
  return new WinnowError('unavailable', `${url} answered ${res.status} ${res.statusText} while fetching ${ctx.ref}`,
    'try again later');
}

export async function fetchText(url: string, ctx: FetchContext, headers: Record<string, string> = {}): Promise<string> {
  const res = await httpGet(url, ctx, headers);
  if (!res.ok) throw httpStatusError(url, res, ctx);
  try {
    return await res.text();
  } catch (err) {
    if (isNetworkError(err)) throw offlineError(url, err, ctx);
    throw err;
  }
}

export interface DownloadOptions {
  headers?: Record<string, string>;
  /** A 404 returns false instead of throwing (files a model may or may not have). */
  optional?: boolean;
  /** Label for the progress bar; files under 1 MB never draw one. */
  label?: string;
}

export interface DownloadResult {
  /** False when an optional file was absent. */
  found: boolean;
  /** Response headers of the last request, e.g. the hub's `x-repo-commit`. */
  headers?: Headers;
}

/**
 * Downloads `url` to `dest`. Bytes go to `dest.part`, which a later call resumes with a Range
 * request if the server supports it; `dest` appears only when the body is complete and its
 * length matches what the server announced.
 */
export async function downloadFile(url: string, dest: string, ctx: FetchContext, opts: DownloadOptions = {}): Promise<DownloadResult> {
  await mkdir(path.dirname(dest), { recursive: true });
  const part = `${dest}.part`;
  let have = 0;
  try {
    have = (await stat(part)).size;
  } catch {
    have = 0;
  }
  // Identity encoding: byte offsets for Range and the Content-Length check must be of the file
  // itself, not of a gzip stream fetch would silently inflate.
  const headers: Record<string, string> = { 'Accept-Encoding': 'identity', ...opts.headers };
  if (have > 0) headers.Range = `bytes=${have}-`;
  // An idle timer rather than a total one: a 130 MB file on a slow link may take minutes, but
  // a connection that sends nothing for a minute is dead.
  const idle = new AbortController();
  let timer = setTimeout(() => idle.abort(), timeoutMs());
  const bump = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => idle.abort(), timeoutMs());
  };
  try {
    return await downloadBody(url, dest, part, have, headers, ctx, opts, idle.signal, bump);
  } finally {
    clearTimeout(timer);
  }
}

async function downloadBody(url: string, dest: string, part: string, have: number, headers: Record<string, string>,
  ctx: FetchContext, opts: DownloadOptions, signal: AbortSignal, bump: () => void): Promise<DownloadResult> {
  let res = await httpGet(url, ctx, headers, signal);
  if (res.status === 416 && have > 0) {
    // The partial file is not a prefix the server recognises (file changed upstream): restart.
    await rm(part, { force: true });
    have = 0;
    delete headers.Range;
    res = await httpGet(url, ctx, headers, signal);
  }
  if (res.status === 404 && opts.optional) {
    await res.body?.cancel();
    return { found: false };
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw httpStatusError(url, res, ctx);
  }
  const resumed = res.status === 206;
  if (resumed && Number(/^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '')?.[1]) !== have) {
    // Appending a range that does not start where our file ends would corrupt it: start over.
    await res.body?.cancel();
    await rm(part, { force: true });
    delete headers.Range;
    return downloadBody(url, dest, part, 0, headers, ctx, opts, signal, bump);
  }
  if (!resumed) have = 0;
  const length = Number(res.headers.get('content-length'));
  const sized = res.headers.has('content-length') && !res.headers.has('content-encoding');
  const total = sized && Number.isFinite(length) && length >= 0 ? have + length : -1;

  const label = opts.label ?? path.basename(dest);
  const progress = total > 1_000_000 ? new Progress(label, Math.ceil(total / 1024), 'KiB') : undefined;
  let received = have;
  let ticked = Math.floor(have / 1024);
  if (progress && ticked > 0) progress.tick(ticked);
  const meter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      received += chunk.length;
      bump();
      if (progress) {
        const kib = Math.floor(received / 1024);
        progress.tick(kib - ticked);
        ticked = kib;
      }
      done(null, chunk);
    },
  });
  if (!res.body) throw new WinnowError('unavailable', `${url} sent no body for ${ctx.ref}`);
  try {
    await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>), meter,
      createWriteStream(part, { flags: resumed ? 'a' : 'w' }));
  } catch (err) {
    progress?.finish();
    // The .part file stays: the next pull resumes from where this one stopped.
    if (isNetworkError(err) || (err as { code?: string }).code === 'ERR_STREAM_PREMATURE_CLOSE') {
      throw new WinnowError('unavailable', `download of ${url} was interrupted after ${received} bytes (${(err as Error).message})`,
        `run the pull again to resume; partial data is kept in ${path.dirname(part)}`);
    }
    throw err;
  }
  progress?.finish();
  if (total >= 0 && received !== total) {
    throw new WinnowError('unavailable', `download of ${url} ended after ${received} of ${total} bytes`,
      `run the pull again to resume; partial data is kept in ${path.dirname(part)}`);
  }
  await rename(part, dest);
  return { found: true, headers: res.headers };
}
