import { WinnowError } from '../../core/errors.js';
import { intAtLeast } from '../../core/values.js';
import { checkScoreCount } from '../scorer.js';
import { type Costs, SEARCH_UNITS, TOKENS } from '../../core/costs.js';
import type { Doc, ScoreKind } from '../../core/types.js';
import type { Scorer } from '../scorer.js';
import { HttpClient, RemoteError, type HttpOptions } from './http.js';

/** Options every remote scorer takes on top of its provider's own. */
export interface RemoteOptions extends HttpOptions {
  /** overrides the provider's default base URL (or its `*_BASE_URL` / `*_URL` env var) */
  baseUrl?: string;
  /** overrides the provider's API key env var */
  apiKey?: string;
  /** documents per sub-request; defaults to the provider's documented cap */
  maxDocsPerRequest?: number;
  /** sub-requests in flight at once for one `score` call; default 4 */
  concurrency?: number;
  /** where API keys and URLs are read from; default `process.env` (tests pass their own) */
  env?: Record<string, string | undefined>;
}

/** What one sub-request's answer contributes: a score per document of that sub-request. */
export interface Parsed {
  scores: Float32Array;
  searchUnits?: number;
  tokens?: number;
}

/**
 * One provider's wire format: how to build a request for a slice of documents and how to read
 * its answer. `RemoteScorer` does everything else (splitting, concurrency, merging, costs) once.
 */
export interface WireFormat {
  provider: string;
  url: string;
  headers: Record<string, string>;
  /** key of the results container, or `array` for a bare array answer */
  resultsKey: string;
  keyHint?: string;
  body(query: string, docs: readonly Doc[]): unknown;
  /** `docs` are the documents sent; must throw unless every index 0..n-1 got a score */
  parse(json: unknown, docs: readonly Doc[]): Parsed;
  /**
   * Extra splitting beyond the document cap (Voyage's token budget). Returns slice sizes
   * that sum to `docs.length`.
   */
  split?(query: string, docs: readonly Doc[]): number[];
}

/**
 * A pointwise scorer behind an HTTP API. Larger calls are split into sub-requests of at most
 * `maxDocs` documents; each sub-request asks for every score (the cascade needs one per
 * candidate) and its indexes are shifted back to the caller's positions. Splitting is exact
 * because every provider here scores pairs independently.
 */
export class RemoteScorer implements Scorer {
  private readonly http: HttpClient;
  private readonly concurrency: number;

  constructor(
    readonly id: string,
    readonly kind: ScoreKind,
    private readonly format: WireFormat,
    readonly maxDocs: number,
    opts: RemoteOptions,
  ) {
    intAtLeast(maxDocs, `${format.provider}: maxDocsPerRequest`);
    this.http = new HttpClient(opts);
    this.concurrency = intAtLeast(opts.concurrency ?? 4, `${format.provider}: concurrency`);
  }

  async score(query: string, docs: readonly Doc[], costs?: Costs): Promise<Float32Array> {
    const out = new Float32Array(docs.length);
    if (docs.length === 0) return out;
    const slices = this.slices(query, docs);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < slices.length) {
        const [start, end] = slices[next++];
        await this.scoreSlice(query, docs, start, end, out, costs);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.concurrency, slices.length) }, worker));
    return out;
  }

  /** [start, end) ranges: the provider's extra split first, then balanced chunks under the cap. */
  private slices(query: string, docs: readonly Doc[]): Array<[number, number]> {
    const sizes = this.format.split ? this.format.split(query, docs) : [docs.length];
    const out: Array<[number, number]> = [];
    let start = 0;
    for (const size of sizes) {
      // Balanced chunks (70 under a cap of 32 → 24+23+23) keep sub-request latencies even.
      const parts = Math.ceil(size / this.maxDocs);
      for (let p = 0; p < parts; p++) {
        const from = start + Math.floor((p * size) / parts);
        const to = start + Math.floor(((p + 1) * size) / parts);
        out.push([from, to]);
      }
      start += size;
    }
    if (start !== docs.length) throw new WinnowError('internal', `${this.format.provider}: split covers ${start} of ${docs.length} documents`);
    return out;
  }

  private async scoreSlice(query: string, docs: readonly Doc[], start: number, end: number, out: Float32Array, costs?: Costs): Promise<void> {
    const slice = docs.slice(start, end);
    let json: unknown;
    try {
      json = await this.http.postJson({
        provider: this.format.provider,
        url: this.format.url,
        headers: this.format.headers,
        body: this.format.body(query, slice),
        resultsKey: this.format.resultsKey,
        keyHint: this.format.keyHint,
      });
    } catch (e) {
      // A 413 means the server's cap is below ours (TEI's --max-client-batch-size): halve
      // and try again rather than fail the whole cascade.
      if (e instanceof RemoteError && e.status === 413 && slice.length > 1) {
        const mid = start + Math.floor(slice.length / 2);
        await this.scoreSlice(query, docs, start, mid, out, costs);
        await this.scoreSlice(query, docs, mid, end, out, costs);
        return;
      }
      throw e;
    }
    const parsed = this.format.parse(json, slice);
    checkScoreCount(this.format.provider, parsed.scores.length, slice.length);
    out.set(parsed.scores, start);
    if (costs) {
      costs.add(SEARCH_UNITS, parsed.searchUnits ?? 0);
      costs.add(TOKENS, parsed.tokens ?? 0);
    }
  }
}

/**
 * Reads `[{index, <scoreField>}]` into a score per document, insisting on every index exactly
 * once: a provider that silently drops candidates would otherwise hand the cascade zeros.
 */
export function indexedScores(
  list: unknown,
  n: number,
  scoreField: string,
  provider: string,
  missingHint = 'the server returned fewer results than documents sent; does it ignore top_n/top_k or cap results?',
): Float32Array {
  if (!Array.isArray(list)) throw new WinnowError('model_error', `${provider}: expected a list of results, got ${typeName(list)}`);
  const scores = new Float32Array(n);
  const seen = new Uint8Array(n);
  for (let i = 0; i < list.length; i++) {
    const r = list[i] as Record<string, unknown> | null;
    const index = r?.index;
    const score = r?.[scoreField];
    if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index >= n) {
      throw new WinnowError('model_error', `${provider}: result ${i} has index ${JSON.stringify(index)}, expected an integer in [0, ${n})`);
    }
    if (typeof score !== 'number' || !Number.isFinite(score)) {
      throw new WinnowError('model_error', `${provider}: result ${i} (index ${index}) has ${scoreField} ${JSON.stringify(score)}, expected a number`);
    }
    if (seen[index]) throw new WinnowError('model_error', `${provider}: index ${index} appears twice in the results`);
    seen[index] = 1;
    scores[index] = score;
  }
  if (list.length !== n) {
    const missing: number[] = [];
    for (let i = 0; i < n && missing.length < 5; i++) if (!seen[i]) missing.push(i);
    throw new WinnowError(
      'model_error',
      `${provider}: ${n - list.length} of ${n} documents have no score (missing index ${missing.join(', ')}${n - list.length > missing.length ? ', …' : ''})`,
      missingHint,
    );
  }
  return scores;
}

/** `obj.a.b.c` as a number when present, else undefined (usage fields are optional everywhere). */
export function numberAt(obj: unknown, ...path: string[]): number | undefined {
  let v: unknown = obj;
  for (const k of path) {
    if (!v || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[k];
  }
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

export function field(json: unknown, key: string, provider: string): unknown {
  if (!json || typeof json !== 'object' || Array.isArray(json)) {
    throw new WinnowError('model_error', `${provider}: expected a JSON object with "${key}", got ${typeName(json)}`);
  }
  const v = (json as Record<string, unknown>)[key];
  if (v === undefined) throw new WinnowError('model_error', `${provider}: answer has no "${key}" (keys: ${Object.keys(json).join(', ') || 'none'})`);
  return v;
}

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}

/** Resolves base URL and key: explicit option, then env vars in order, then the default. */
export function setting(opt: string | undefined, env: Record<string, string | undefined>, names: string[], fallback?: string): string | undefined {
  if (opt !== undefined && opt !== '') return opt;
  for (const n of names) {
    const v = env[n];
    if (v !== undefined && v !== '') return v;
  }
  return fallback;
}

export function requireKey(key: string | undefined, provider: string, envNames: string[]): string {
  if (!key) {
    throw new WinnowError('usage', `${provider}: no API key`, `set ${envNames.join(' or ')} or pass apiKey`);
  }
  return key;
}

/** Joins a base URL and a route without doubling or losing slashes. */
export function joinUrl(base: string, route: string): string {
  let u: URL;
  try {
    u = new URL(base);
  } catch {
    throw new WinnowError('bad_spec', `not a URL: "${base}"`, 'write it with a scheme, e.g. http://localhost:8080');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new WinnowError('bad_spec', `not an http(s) URL: "${base}"`);
  return `${u.origin}${u.pathname.replace(/\/+$/, '')}/${route.replace(/^\/+/, '')}`;
}

/**
 * The scorer id: provider, endpoint host (and path prefix), model and every option that changes
 * the numbers. It keys the score cache, so anything missing here would let a model swap or a
 * truncation change serve stale scores.
 */
export function remoteId(provider: string, model: string | undefined, baseUrl: string, options: Record<string, string | number | boolean | undefined>): string {
  const u = new URL(baseUrl);
  const where = `${u.host}${u.pathname.replace(/\/+$/, '')}`;
  const opts = Object.entries(options)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(',');
  return `${provider}:${model ?? '(server default)'}@${where}${opts ? `[${opts}]` : ''}`;
}

export function posIntOption(v: number | undefined, fallback: number, name: string, provider: string): number {
  return v === undefined ? fallback : intAtLeast(v, `${provider}: ${name}`);
}

/** Where a provider is and how to authenticate to it. */
export interface ProviderAccess {
  /** env vars naming the base URL, first found wins */
  urlEnv: string[];
  /** hosted APIs have one; a self-hosted server without a URL is an error that says `urlHint` */
  defaultUrl?: string;
  urlHint?: string;
  /** env vars holding the API key, first found wins */
  keyEnv: string[];
  /** self-hosted servers may run without a key; hosted APIs may not */
  keyOptional?: boolean;
}

/**
 * The preamble every remote scorer shares: base URL and key from the options, then the env
 * vars, then the default; a missing one is a usage error naming the variables to set.
 * `bearer` is the `authorization` header (empty without a key).
 */
export function providerAccess(
  provider: string,
  opts: RemoteOptions,
  a: ProviderAccess,
): { base: string; key: string | undefined; bearer: Record<string, string>; keyHint: string } {
  const env = opts.env ?? process.env;
  const base = setting(opts.baseUrl, env, a.urlEnv, a.defaultUrl);
  if (!base) throw new WinnowError('usage', `${provider}: no server URL`, a.urlHint ?? `set ${a.urlEnv.join(' or ')} or pass baseUrl`);
  const found = setting(opts.apiKey, env, a.keyEnv);
  const key = a.keyOptional ? found : requireKey(found, provider, a.keyEnv);
  return { base, key, bearer: key ? { authorization: `Bearer ${key}` } : {}, keyHint: a.keyEnv.join(' or ') };
}
