import type { Client } from '@opensearch-project/opensearch';
import { Fusion } from '../../cascade/fusion.js';
import { Costs } from '../../core/costs.js';
import { WinnowError } from '../../core/errors.js';
import { registry } from '../../core/registry.js';
import type { StageContext, StageDescription } from '../../core/stage.js';
import { checkOptions } from '../../core/suggest.js';
import { compareHits, type Doc, type Hit, type Query, type Ranking, type ScoreKind } from '../../core/types.js';
import { num, posInt, str } from '../../core/values.js';
import { DEFAULT_RRF_K } from '../collection/stages.js';
import type { Embedder } from '../dense/embedder.js';
import { loadEmbedder } from '../dense/load.js';
import { Retriever } from '../retriever.js';
import {
  engineError,
  engineReason,
  OPENSEARCH_PARTIAL,
  OPENSEARCH_REJECTED,
  OPENSEARCH_REQUESTS,
  openSearchClient,
  parseOpenSearchTarget,
  Rejected,
  retryRejected,
  statusOf,
  targetLabel,
  type OpenSearchTarget,
} from './connect.js';

export type OpenSearchMode = 'bm25' | 'knn' | 'hybrid';
export type MatchType = 'best_fields' | 'most_fields' | 'cross_fields';

export interface OpenSearchRetrieverOptions {
  /** `bm25` (multi_match), `knn` (knn_vector), or `hybrid` (both, fused by Winnow's RRF) */
  mode?: OpenSearchMode;
  /**
   * BM25 fields with optional boosts (`title^2`). Default: `contents` when the index has it
   * (indexes made by `winnow index --to`: title and text in one field, like Winnow's own BM25),
   * else `title` and `text`.
   */
  fields?: string[];
  /** how multi_match combines fields (default best_fields, OpenSearch's own default) */
  matchType?: MatchType;
  /** the knn_vector field (default `embedding`) */
  vectorField?: string;
  /** embeds queries for knn; its dimension must match the vector field */
  embedder?: Embedder;
  /**
   * instead of `embedder`: an ML-commons model deployed in the cluster embeds the query
   * (`neural` query); needs the neural-search plugin
   */
  engineModel?: string;
  /** hybrid: RRF constant (default 60) and each list's depth (default the hybrid's k) */
  rrfK?: number;
  bm25K?: number;
  knnK?: number;
  /** `_source` fields that become the hit's document (default `text` and `title`) */
  textField?: string;
  titleField?: string;
  /** engine-side search timeout; the client waits a little longer for the engine's answer */
  timeoutMs?: number;
  /**
   * accept lists from a search that timed out or lost shards (counted under
   * `opensearch.partial`); default false: such a search is an error, never a silently short list
   */
  allowPartial?: boolean;
  /** retries after a 429 (default 3, backoff 200 ms doubling, or the engine's Retry-After) */
  retries?: number;
  /** score with index-wide term statistics (dfs_query_then_fetch): BM25 that does not depend on the shard count */
  dfs?: boolean;
}

/** One client and one look at the index's mapping, shared by a retriever and its copies at other depths. */
export class OpenSearchConnection {
  readonly client: Client;
  private mapping?: Promise<Record<string, MappingField>>;
  private closed = false;

  constructor(
    readonly target: OpenSearchTarget,
    readonly timeoutMs: number,
  ) {
    // The engine's own timeout answers first (with timed_out: true); the client's is the backstop.
    this.client = openSearchClient(target, { requestTimeoutMs: timeoutMs * 2 + 1000 });
  }

  get label(): string {
    return targetLabel(this.target);
  }

  /** The index's fields (flattened: `a.b`), read once; a missing index fails here with a clear message. */
  fields(costs: Costs): Promise<Record<string, MappingField>> {
    this.mapping ??= (async () => {
      costs.add(OPENSEARCH_REQUESTS);
      try {
        const res = await this.client.transport.request({ method: 'GET', path: `/${encodeURIComponent(this.target.index)}/_mapping` });
        return flattenMapping(res.body as MappingResponse);
      } catch (e) {
        throw engineError(e, this.target, `reading the mapping of ${this.label}`);
      }
    })();
    // A failed look is not cached: the next query tries again (the cluster may be back).
    this.mapping.catch(() => (this.mapping = undefined));
    return this.mapping;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.client.close();
  }
}

export interface MappingField {
  type?: string;
  dimension?: number;
}
type MappingProps = Record<string, { type?: string; dimension?: number; properties?: MappingProps; fields?: MappingProps }>;
type MappingResponse = Record<string, { mappings?: { properties?: MappingProps } }>;

function flattenMapping(res: MappingResponse): Record<string, MappingField> {
  const out: Record<string, MappingField> = {};
  const walk = (props: MappingProps | undefined, prefix: string): void => {
    for (const [name, f] of Object.entries(props ?? {})) {
      const key = prefix + name;
      out[key] = { type: f.type, dimension: f.dimension };
      walk(f.properties, `${key}.`);
      walk(f.fields, `${key}.`);
    }
  };
  // An alias over several indexes answers one entry per index; their fields are merged.
  for (const entry of Object.values(res)) walk(entry.mappings?.properties, '');
  return out;
}

/** What a search returns, as far as Winnow reads it (an _msearch item adds `error` and `status`). */
interface SearchResponse {
  took?: number;
  timed_out?: boolean;
  _shards?: { total?: number; successful?: number; failed?: number; failures?: { index?: string; shard?: number; reason?: { type?: string; reason?: string } }[] };
  hits?: { hits?: { _id: string; _score: number | null; _source?: Record<string, unknown> }[] };
  error?: unknown;
  status?: number;
}

/** Queries per _msearch request: large enough to amortise the round trip, small enough to stay under the engine's queue. */
const MSEARCH_CHUNK = 64;

/**
 * First pass from an OpenSearch (or Elasticsearch-compatible) index: BM25 over configurable
 * fields (`multi_match` with boosts), k-NN over a `knn_vector` field with the query embedded by
 * a Winnow bi-encoder (or by a model deployed in the cluster), or both fused by Winnow's RRF.
 * A following top-k becomes the request's `size`; `_source` text rides on the hits, so
 * rerankers need no second lookup. A search that timed out, lost shards, was rejected (429,
 * after retries) or could not reach any node is an error, or with `allowPartial` a list counted
 * under `opensearch.partial`, never a silently short list.
 */
export class OpenSearchRetriever extends Retriever {
  override readonly scoreKind: ScoreKind;
  readonly mode: OpenSearchMode;
  private readonly fusion?: Fusion;

  constructor(
    readonly connection: OpenSearchConnection,
    readonly options: OpenSearchRetrieverOptions = {},
    k?: number,
    name = 'opensearch',
  ) {
    super(name, k);
    this.mode = options.mode ?? 'bm25';
    if ((this.mode === 'knn' || this.mode === 'hybrid') && !options.embedder && !options.engineModel) {
      throw new WinnowError('bad_spec', `${name}: mode ${this.mode} needs a model to embed the query`, 'give model: REF (a bi-encoder folder or reference), or engineModel: ID for a model deployed in the cluster');
    }
    // Lucene's k-NN scores are similarities in (0, 1]; BM25 and RRF sums have no fixed range.
    this.scoreKind = this.mode === 'knn' ? 'similarity' : 'unbounded';
    if (this.mode === 'hybrid') {
      const { bm25K, knnK, ...rest } = options;
      this.fusion = new Fusion(
        name,
        [
          new OpenSearchRetriever(connection, { ...rest, mode: 'bm25' }, bm25K ?? this.k, `${name}.bm25`),
          new OpenSearchRetriever(connection, { ...rest, mode: 'knn' }, knnK ?? this.k, `${name}.knn`),
        ],
        { kind: 'rrf', k: options.rrfK ?? DEFAULT_RRF_K },
      );
    }
  }

  override get label(): string {
    return `${this.name} ${this.mode} k=${this.k}`;
  }

  withK(k: number): OpenSearchRetriever {
    return new OpenSearchRetriever(this.connection, this.options, k, this.name);
  }

  describe(): StageDescription {
    const o = this.options;
    const d: StageDescription = { retrieve: this.connection.label, k: this.k, mode: this.mode };
    if (this.mode !== 'knn') Object.assign(d, { fields: o.fields ?? 'default', matchType: o.matchType ?? 'best_fields', dfs: o.dfs ?? false });
    if (this.mode !== 'bm25') Object.assign(d, { vectorField: o.vectorField ?? 'embedding', model: o.embedder?.id ?? `engine:${o.engineModel}` });
    if (this.mode === 'hybrid') Object.assign(d, { rrfK: o.rrfK ?? DEFAULT_RRF_K, bm25K: o.bm25K ?? this.k, knnK: o.knnK ?? this.k });
    return d;
  }

  async retrieve(query: Query, k: number, ctx?: StageContext): Promise<Hit[]> {
    const context = ctx ?? { costs: new Costs() };
    if (this.fusion) {
      const [r] = await this.fusion.run([{ query, hits: [] }], context);
      return r.hits.slice(0, k);
    }
    const [hits] = await this.search([query], k, context);
    return hits;
  }

  override async run(batch: readonly Ranking[], ctx: StageContext): Promise<Ranking[]> {
    if (this.fusion) {
      const fused = await this.fusion.run(batch.map((r) => ({ query: r.query, hits: [] })), ctx);
      return fused.map((r) => ({ query: r.query, hits: r.hits.slice(0, this.k) }));
    }
    const out: Ranking[] = [];
    for (let i = 0; i < batch.length; i += MSEARCH_CHUNK) {
      const queries = batch.slice(i, i + MSEARCH_CHUNK).map((r) => r.query);
      const lists = await this.search(queries, this.k, ctx);
      queries.forEach((query, qi) => out.push({ query, hits: lists[qi] }));
    }
    return out;
  }

  async close(): Promise<void> {
    await this.connection.close();
  }

  /** One _msearch for the queries; each answer checked for errors, timeouts and failed shards. */
  private async search(queries: readonly Query[], size: number, ctx: StageContext): Promise<Hit[][]> {
    const o = this.options;
    const fields = await this.checkFields(ctx.costs);
    const vectors = this.mode === 'knn' && o.embedder ? await Promise.all(queries.map((q) => o.embedder!.embedQuery(q.text))) : undefined;
    const source = [o.textField ?? 'text', o.titleField ?? 'title'];
    const lines: unknown[] = [];
    queries.forEach((q, i) => {
      lines.push({});
      lines.push({ size, timeout: `${this.connection.timeoutMs}ms`, _source: source, query: this.queryBody(q, fields, size, vectors?.[i]) });
    });
    const what = `searching ${this.connection.label}`;
    const responses = await retryRejected(
      async () => {
        ctx.costs.add(OPENSEARCH_REQUESTS);
        let body: { responses?: SearchResponse[] };
        try {
          const res = await this.connection.client.transport.request({
            method: 'POST',
            path: `/${encodeURIComponent(this.connection.target.index)}/_msearch`,
            bulkBody: lines as Record<string, unknown>[],
            querystring: o.dfs ? { search_type: 'dfs_query_then_fetch' } : {},
          });
          body = res.body as typeof body;
        } catch (e) {
          // A 429 goes back to retryRejected as it is, to be retried.
          if (statusOf(e) === 429) throw e;
          throw engineError(e, this.connection.target, what);
        }
        const items = body.responses ?? [];
        if (items.length !== queries.length) {
          throw new WinnowError('unavailable', `${what}: OpenSearch answered ${items.length} results for ${queries.length} queries`);
        }
        const rejected = items.find((r) => r.status === 429);
        if (rejected) throw new Rejected(engineReason(rejected) ?? 'an _msearch item was rejected');
        return items;
      },
      { retries: o.retries, onRejected: () => ctx.costs.add(OPENSEARCH_REJECTED) },
    ).catch((e: unknown) => {
      throw engineError(e, this.connection.target, what);
    });
    return responses.map((r, i) => this.toHitList(r, queries[i], ctx.costs));
  }

  private queryBody(q: Query, fields: string[], size: number, vector?: Float32Array): unknown {
    const o = this.options;
    if (this.mode === 'bm25') return { multi_match: { query: q.text, fields, type: o.matchType ?? 'best_fields' } };
    const field = o.vectorField ?? 'embedding';
    if (vector) return { knn: { [field]: { vector: Array.from(vector), k: size } } };
    return { neural: { [field]: { query_text: q.text, model_id: o.engineModel, k: size } } };
  }

  /** BM25 fields to search, after checking they (and the vector field) exist with the right shape. */
  private async checkFields(costs: Costs): Promise<string[]> {
    const mapping = await this.connection.fields(costs);
    const o = this.options;
    const at = this.connection.label;
    if (this.mode === 'knn') {
      const field = o.vectorField ?? 'embedding';
      const f = mapping[field];
      if (!f || f.type !== 'knn_vector') {
        const vectors = Object.keys(mapping).filter((k) => mapping[k].type === 'knn_vector');
        throw new WinnowError('bad_spec', `${this.name}: ${at} has no knn_vector field "${field}"`, vectors.length ? `its vector fields: ${vectors.join(', ')} (set vectorField)` : 'the index has no vectors: build it with `winnow index --to ... --model REF`');
      }
      if (o.embedder && f.dimension !== undefined && f.dimension !== o.embedder.dim) {
        throw new WinnowError('bad_spec', `${this.name}: "${field}" in ${at} holds vectors of dimension ${f.dimension}, the model ${o.embedder.id} makes ${o.embedder.dim}`, 'embed queries with the model the index was built with');
      }
      return [];
    }
    if (o.fields) {
      for (const spec of o.fields) {
        const name = spec.replace(/\^[\d.]+$/, '');
        if (!name.includes('*') && !mapping[name]) {
          throw new WinnowError('bad_spec', `${this.name}: ${at} has no field "${name}"`, `its text fields: ${textFields(mapping).join(', ') || 'none'}`);
        }
      }
      return o.fields;
    }
    if (mapping.contents?.type === 'text') return ['contents'];
    const fallback = ['title', 'text'].filter((f) => mapping[f]?.type === 'text');
    if (fallback.length === 0) {
      throw new WinnowError('bad_spec', `${this.name}: ${at} has neither "contents" nor "title"/"text" text fields`, `name the fields to search: fields: [${textFields(mapping).slice(0, 3).join(', ')}]`);
    }
    return fallback;
  }

  private toHitList(r: SearchResponse, query: Query, costs: Costs): Hit[] {
    const at = this.connection.label;
    if (r.error !== undefined) {
      const status = r.status ?? 500;
      const reason = engineReason(r) ?? 'unknown error';
      const code = status === 404 ? 'not_found' : status === 400 ? 'bad_spec' : 'unavailable';
      throw new WinnowError(code, `${this.name}: OpenSearch (${at}) failed query "${query.id}": ${status} ${reason}`);
    }
    const shards = r._shards;
    const failed = shards?.failed ?? 0;
    if (r.timed_out || failed > 0) {
      const why = r.timed_out
        ? `timed out after ${this.connection.timeoutMs} ms`
        : `${failed} of ${shards?.total ?? '?'} shards failed (${shards?.failures?.[0]?.reason?.type ?? 'error'}: ${shards?.failures?.[0]?.reason?.reason ?? 'no reason given'})`;
      if (!this.options.allowPartial) {
        throw new WinnowError(
          'unavailable',
          `${this.name}: OpenSearch (${at}) ${why} on query "${query.id}"; its ${r.hits?.hits?.length ?? 0} hits would be a partial list`,
          r.timed_out ? 'raise timeoutMs, or set allowPartial: true to accept partial lists (counted as opensearch.partial)' : 'check the cluster (replica shards answer when one node is down), or set allowPartial: true',
        );
      }
      costs.add(OPENSEARCH_PARTIAL);
    }
    const textField = this.options.textField ?? 'text';
    const titleField = this.options.titleField ?? 'title';
    const hits: Hit[] = (r.hits?.hits ?? []).map((h) => {
      const score = h._score ?? 0;
      const hit: Hit = { docId: h._id, score, scores: { [this.name]: score } };
      const text = h._source?.[textField];
      const title = h._source?.[titleField];
      if (typeof text === 'string') {
        const doc: Doc = typeof title === 'string' && title ? { id: h._id, title, text } : { id: h._id, text };
        hit.doc = doc;
      }
      return hit;
    });
    return hits.sort(compareHits);
  }
}

function textFields(mapping: Record<string, MappingField>): string[] {
  return Object.keys(mapping).filter((k) => mapping[k].type === 'text');
}

const OPTION_KEYS = ['name', 'mode', 'fields', 'matchType', 'vectorField', 'model', 'engineModel', 'rrfK', 'bm25K', 'knnK', 'textField', 'titleField', 'timeoutMs', 'allowPartial', 'retries', 'dfs'];

/** Reads a spec entry's options (`retrieve: opensearch://host:9200/scifact`, `mode: hybrid`, ...). */
export async function openSearchOptions(options: Record<string, unknown>, where: string): Promise<OpenSearchRetrieverOptions & { name?: string }> {
  checkOptions(options, OPTION_KEYS, where, 'opensearch');
  const out: OpenSearchRetrieverOptions & { name?: string } = {};
  const o = options;
  if (o.name !== undefined) out.name = str(o.name, `${where}.name`);
  if (o.mode !== undefined) {
    if (o.mode !== 'bm25' && o.mode !== 'knn' && o.mode !== 'hybrid') throw new WinnowError('bad_spec', `${where}.mode: bm25, knn or hybrid, got ${JSON.stringify(o.mode)}`);
    out.mode = o.mode;
  }
  if (o.fields !== undefined) {
    const list = typeof o.fields === 'string' ? [o.fields] : o.fields;
    if (!Array.isArray(list) || list.length === 0 || !list.every((f) => typeof f === 'string' && /^[\w.*@-]+(\^\d+(\.\d+)?)?$/.test(f))) {
      throw new WinnowError('bad_spec', `${where}.fields: a list of field names with optional boosts, like [title^2, text]`);
    }
    out.fields = list as string[];
  }
  if (o.matchType !== undefined) {
    if (o.matchType !== 'best_fields' && o.matchType !== 'most_fields' && o.matchType !== 'cross_fields') throw new WinnowError('bad_spec', `${where}.matchType: best_fields, most_fields or cross_fields`);
    out.matchType = o.matchType;
  }
  for (const key of ['vectorField', 'engineModel', 'textField', 'titleField'] as const) if (o[key] !== undefined) out[key] = str(o[key], `${where}.${key}`);
  for (const key of ['bm25K', 'knnK', 'timeoutMs'] as const) if (o[key] !== undefined) out[key] = posInt(o[key], `${where}.${key}`);
  if (o.retries !== undefined) {
    const r = num(o.retries, `${where}.retries`);
    if (!Number.isInteger(r) || r < 0) throw new WinnowError('bad_spec', `${where}.retries: an integer >= 0`);
    out.retries = r;
  }
  if (o.rrfK !== undefined) {
    out.rrfK = num(o.rrfK, `${where}.rrfK`);
    if (out.rrfK < 0) throw new WinnowError('bad_spec', `${where}.rrfK: must be >= 0`);
  }
  for (const key of ['allowPartial', 'dfs'] as const) {
    if (o[key] === undefined) continue;
    if (typeof o[key] !== 'boolean') throw new WinnowError('bad_spec', `${where}.${key}: true or false`);
    out[key] = o[key] as boolean;
  }
  if (o.model !== undefined) {
    if (o.engineModel !== undefined) throw new WinnowError('bad_spec', `${where}: give model (Winnow embeds the query) or engineModel (the cluster does), not both`);
    out.embedder = await loadEmbedder(str(o.model, `${where}.model`));
  }
  if (out.mode === undefined && (out.embedder || out.engineModel)) out.mode = 'hybrid';
  return out;
}

/** Default engine-side timeout for one search. */
export const DEFAULT_OPENSEARCH_TIMEOUT_MS = 10_000;

/** A retriever for a reference and options, as `retrieve: opensearch://...` builds it. */
export async function openSearchRetriever(ref: string, options: Record<string, unknown>, where: string): Promise<OpenSearchRetriever> {
  const target = parseOpenSearchTarget(ref, where);
  const { name, ...opts } = await openSearchOptions(options, where);
  return new OpenSearchRetriever(new OpenSearchConnection(target, opts.timeoutMs ?? DEFAULT_OPENSEARCH_TIMEOUT_MS), opts, undefined, name);
}

registry.defineRetriever(
  'opensearch',
  (ref, options, { where }) => openSearchRetriever(ref, options, where),
  'an OpenSearch index: `retrieve: opensearch://host:9200/INDEX`, mode bm25|knn|hybrid, fields [title^2, text], model REF, vectorField, rrfK, timeoutMs, allowPartial',
);
