import { WinnowError } from '../../core/errors.js';
import { Progress } from '../../core/progress.js';
import type { Doc } from '../../core/types.js';
import { DEFAULT_BM25_PARAMS, type Bm25Params } from '../bm25/similarity.js';
import { toMatrix, type Embedder } from '../dense/embedder.js';
import { engineError, engineReason, openSearchClient, parseOpenSearchTarget, retryRejected, targetLabel, type OpenSearchTarget } from './connect.js';

export interface OpenSearchLoadOptions {
  /** `opensearch://host:port/INDEX` or a parsed target */
  to: string | OpenSearchTarget;
  docs: AsyncIterable<Doc> | Iterable<Doc>;
  /** for the progress bar's total and ETA (0 or absent: a count and rate only) */
  expectedCount?: number;
  /** adds a `knn_vector` field (Lucene HNSW) filled with this model's document embeddings */
  embedder?: Embedder;
  /** BM25 parameters of the index (default Winnow's: k1 0.9, b 0.4, not OpenSearch's 1.2/0.75) */
  bm25?: Partial<Bm25Params>;
  shards?: number;
  replicas?: number;
  /** HNSW graph parameters of the vector field */
  hnsw?: { m?: number; efConstruction?: number };
  vectorField?: string;
  /** documents per _bulk request (default 500) */
  batchDocs?: number;
  /** stop after reading this many documents of `docs` (a bounded load; a later full run resumes it) */
  limit?: number;
  /** documents with no title and text are skipped (else an error) */
  skipEmpty?: boolean;
  progress?: boolean;
}

export interface OpenSearchLoadReport {
  index: string;
  /** the index was created by this load (else it existed and was resumed) */
  created: boolean;
  indexed: number;
  /** ids already in the index (an earlier, interrupted load): not embedded or sent again */
  skippedExisting: number;
  skippedEmpty: number;
  /** documents in the index after the final refresh */
  count: number;
  ms: number;
}

/** Resends of documents a full write queue rejected, before the load gives up (it resumes when run again). */
const BULK_RETRIES = 5;

/** What Winnow records in the mapping's `_meta`, so a resumed load refuses a different model or BM25. */
interface WinnowMeta {
  bm25: Bm25Params;
  model?: { id: string; dim: number };
  vectorField?: string;
}

/**
 * The analysis chain of Winnow's own BM25 (`text/analyzer.ts`) in OpenSearch terms: Lucene's
 * standard tokenizer, lowercase, Lucene's English stop words, Porter stemming. Title and text are
 * also copied into `contents`, one field like the one Winnow's BM25 indexes, so the two
 * engines score the same terms over the same document lengths.
 */
export function indexBody(meta: WinnowMeta, opts: { shards: number; replicas: number; hnsw?: { m?: number; efConstruction?: number } }): Record<string, unknown> {
  const text = { type: 'text', analyzer: 'winnow_english' };
  const properties: Record<string, unknown> = {
    title: { ...text, copy_to: 'contents' },
    text: { ...text, copy_to: 'contents' },
    contents: text,
  };
  if (meta.model && meta.vectorField) {
    properties[meta.vectorField] = {
      type: 'knn_vector',
      dimension: meta.model.dim,
      // Lucene's HNSW: the engine this plugin build supports without native libraries (faiss and nmslib need them).
      method: { name: 'hnsw', engine: 'lucene', space_type: 'cosinesimil', parameters: { m: opts.hnsw?.m ?? 16, ef_construction: opts.hnsw?.efConstruction ?? 128 } },
    };
  }
  return {
    settings: {
      index: {
        number_of_shards: opts.shards,
        number_of_replicas: opts.replicas,
        ...(meta.model ? { knn: true } : {}),
        // Lucene's BM25 (no (k1 + 1) factor in the numerator) with the chosen k1 and b, for every text field.
        similarity: { default: { type: 'BM25', k1: meta.bm25.k1, b: meta.bm25.b } },
      },
      analysis: {
        filter: { winnow_stop: { type: 'stop', stopwords: '_english_' } },
        analyzer: { winnow_english: { type: 'custom', tokenizer: 'standard', filter: ['lowercase', 'winnow_stop', 'porter_stem'] } },
      },
    },
    mappings: { dynamic: 'false', _meta: { winnow: meta }, properties },
  };
}

/**
 * Bulk-loads documents (a BEIR corpus) into an OpenSearch index, creating it with Winnow's
 * analysis and the chosen BM25 parameters, shard and replica counts, plus a Lucene HNSW
 * `knn_vector` field when an embedder is given. Resumable: ids already in the index are neither
 * embedded nor sent again (checked per batch with _mget, which sees unrefreshed writes), so a
 * load killed halfway is finished by running it again. Refreshes at the end.
 */
export async function loadOpenSearch(opts: OpenSearchLoadOptions): Promise<OpenSearchLoadReport> {
  const t0 = Date.now();
  const target = typeof opts.to === 'string' ? parseOpenSearchTarget(opts.to, '--to') : opts.to;
  const at = targetLabel(target);
  const client = openSearchClient(target, { requestTimeoutMs: 120_000 });
  const vectorField = opts.vectorField ?? 'embedding';
  const meta: WinnowMeta = {
    bm25: { k1: opts.bm25?.k1 ?? DEFAULT_BM25_PARAMS.k1, b: opts.bm25?.b ?? DEFAULT_BM25_PARAMS.b },
    ...(opts.embedder ? { model: { id: opts.embedder.id, dim: opts.embedder.dim }, vectorField } : {}),
  };
  if (!(meta.bm25.k1 >= 0) || !(meta.bm25.b >= 0 && meta.bm25.b <= 1)) {
    throw new WinnowError('usage', `BM25 parameters out of range: k1=${meta.bm25.k1} (needs >= 0), b=${meta.bm25.b} (needs 0..1)`);
  }
  const index = encodeURIComponent(target.index);
  const request = async <T>(what: string, params: Parameters<typeof client.transport.request>[0]): Promise<T> => {
    try {
      return (await retryRejected(() => client.transport.request(params), { retries: 5 })).body as T;
    } catch (e) {
      throw engineError(e, target, what);
    }
  };

  try {
    let created = false;
    const exists = await client.transport.request({ method: 'HEAD', path: `/${index}` }, { ignore: [404] }).catch((e: unknown) => {
      throw engineError(e, target, `checking ${at}`);
    });
    if (exists.statusCode === 404) {
      const body = indexBody(meta, { shards: opts.shards ?? 1, replicas: opts.replicas ?? 0, hnsw: opts.hnsw });
      try {
        await client.transport.request({ method: 'PUT', path: `/${index}`, body });
        created = true;
      } catch (e) {
        // Another loader created it between our check and our create: resume into it.
        if (!/resource_already_exists/.test(engineReason((e as { body?: unknown }).body) ?? '')) throw engineError(e, target, `creating ${at}`);
      }
    }
    if (!created) checkResumable(await request(`reading the mapping of ${at}`, { method: 'GET', path: `/${index}/_mapping` }), meta, at, opts);

    const batchDocs = opts.batchDocs ?? 500;
    const progress = opts.progress ? new Progress(`indexing ${target.index}`, opts.expectedCount ?? 0, 'docs') : undefined;
    const report = { indexed: 0, skippedExisting: 0, skippedEmpty: 0 };
    let batch: Doc[] = [];
    const limit = opts.limit ?? Infinity;
    let read = 0;
    const flush = async (): Promise<void> => {
      const docs = batch;
      batch = [];
      if (docs.length === 0) return;
      const found = await request<{ docs: { _id: string; found?: boolean }[] }>(`checking ids in ${at}`, {
        method: 'POST',
        path: `/${index}/_mget`,
        body: { ids: docs.map((d) => d.id) },
        querystring: { _source: 'false' },
      });
      const present = new Set(found.docs.filter((d) => d.found).map((d) => d._id));
      const fresh = docs.filter((d) => !present.has(d.id));
      report.skippedExisting += docs.length - fresh.length;
      progress?.tick(docs.length - fresh.length);
      if (fresh.length === 0) return;
      const vectors = opts.embedder ? toMatrix(await opts.embedder.embedDocs(fresh), fresh.length, opts.embedder.dim, opts.embedder.id) : undefined;
      const sources = fresh.map((d, i) => {
        const source: Record<string, unknown> = { text: d.text };
        if (d.title) source.title = d.title;
        if (vectors) source[vectorField] = Array.from(vectors.subarray(i * opts.embedder!.dim, (i + 1) * opts.embedder!.dim));
        return { id: d.id, source };
      });
      const { created, conflicts } = await bulkCreate(sources);
      report.indexed += created;
      report.skippedExisting += conflicts;
      progress?.tick(fresh.length);
    };
    /** Sends `create` actions; items the engine's full write queue rejected (429) go again after a backoff. */
    const bulkCreate = async (sources: { id: string; source: Record<string, unknown> }[], attempt = 0): Promise<{ created: number; conflicts: number }> => {
      const lines: Record<string, unknown>[] = [];
      // `create` never overwrites: a document another loader wrote meanwhile comes back as a 409, counted as present.
      for (const s of sources) lines.push({ create: { _id: s.id } }, s.source);
      const res = await request<{ items: { create?: { _id: string; status: number; error?: unknown } }[] }>(`bulk-loading ${at}`, {
        method: 'POST',
        path: `/${index}/_bulk`,
        bulkBody: lines,
      });
      let conflicts = 0;
      const rejected: typeof sources = [];
      for (const [i, item] of res.items.entries()) {
        const r = item.create;
        if (!r || r.status < 300) continue;
        if (r.status === 409) conflicts++;
        else if (r.status === 429) rejected.push(sources[i]);
        else throw new WinnowError('bad_input', `OpenSearch refused document "${r._id}" in ${at}: ${r.status} ${engineReason({ error: r.error }) ?? ''}`);
      }
      let created = sources.length - conflicts - rejected.length;
      if (rejected.length) {
        if (attempt >= BULK_RETRIES) {
          throw new WinnowError('unavailable', `OpenSearch (${at}) rejected ${rejected.length} documents ${attempt + 1} times (429: write queue full)`, 'run the load again later: documents already loaded are skipped');
        }
        await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
        const again = await bulkCreate(rejected, attempt + 1);
        created += again.created;
        conflicts += again.conflicts;
      }
      return { created, conflicts };
    };
    for await (const doc of opts.docs as AsyncIterable<Doc>) {
      if (!doc.text && !doc.title) {
        if (!opts.skipEmpty) throw new WinnowError('bad_input', `document "${doc.id}" has no title and no text`, 'pass --skip-empty to leave such documents out');
        report.skippedEmpty++;
        continue;
      }
      batch.push(doc);
      if (batch.length >= batchDocs) await flush();
      if (++read >= limit) break;
    }
    await flush();
    progress?.finish();
    await request(`refreshing ${at}`, { method: 'POST', path: `/${index}/_refresh` });
    const count = await request<{ count: number }>(`counting ${at}`, { method: 'GET', path: `/${index}/_count` });
    return { index: target.index, created, ...report, count: count.count, ms: Date.now() - t0 };
  } finally {
    await client.close();
  }
}

/** An existing index takes more documents only with the BM25 parameters and model it was made with. */
function checkResumable(mapping: Record<string, { mappings?: { _meta?: { winnow?: WinnowMeta } } }>, meta: WinnowMeta, at: string, opts: OpenSearchLoadOptions): void {
  const found = Object.values(mapping)[0]?.mappings?._meta?.winnow;
  if (!found) {
    throw new WinnowError('bad_input', `${at} exists and was not made by winnow index`, 'load into a new index name, or delete this one first');
  }
  if (opts.bm25?.k1 !== undefined || opts.bm25?.b !== undefined) {
    if (found.bm25.k1 !== meta.bm25.k1 || found.bm25.b !== meta.bm25.b) {
      throw new WinnowError('bad_input', `${at} was made with BM25 k1=${found.bm25.k1} b=${found.bm25.b}, not k1=${meta.bm25.k1} b=${meta.bm25.b}`, 'resume with the same parameters, or load into a new index');
    }
  }
  if (Boolean(found.model) !== Boolean(meta.model) || (found.model && meta.model && found.model.id !== meta.model.id)) {
    throw new WinnowError(
      'bad_input',
      `${at} was made ${found.model ? `with the model ${found.model.id}` : 'without a model'}, this load ${meta.model ? `embeds with ${meta.model.id}` : 'has no model'}`,
      'resume with the same --model (or none), or load into a new index',
    );
  }
}
