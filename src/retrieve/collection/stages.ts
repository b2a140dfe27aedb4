import { Fusion, type FusionMethod } from '../../cascade/fusion.js';
import { WinnowError } from '../../core/errors.js';
import { isIntAtLeast } from '../../core/values.js';
import { Costs } from '../../core/costs.js';
import type { StageContext, StageDescription } from '../../core/stage.js';
import type { Hit, Query } from '../../core/types.js';
import { DenseRetriever } from '../dense/retriever.js';
import { Retriever } from '../retriever.js';
import type { Collection } from './collection.js';

/** BM25 over a collection's segments, scored with collection-wide statistics. */
export class CollectionBm25Retriever extends Retriever {
  constructor(
    readonly collection: Collection,
    k?: number,
    name = 'bm25',
  ) {
    super(name, k);
  }

  withK(k: number): CollectionBm25Retriever {
    return new CollectionBm25Retriever(this.collection, k, this.name);
  }

  async retrieve(query: Query, k: number): Promise<Hit[]> {
    return this.toHits(this.collection.searchBm25(query.text, k));
  }

  describe(): StageDescription {
    const { k1, b } = this.collection.config.bm25;
    return { retrieve: this.name, k: this.k, collection: this.collection.name, k1, b };
  }
}

/**
 * Our RRF default. Engines disagree (60 in Cormack et al. and Elasticsearch/OpenSearch, 2 in
 * some vector stores); 60 damps the top ranks less, which suits fusing two first passes of
 * similar quality. Always recorded in `describe()`.
 */
export const DEFAULT_RRF_K = 60;

export interface HybridOptions {
  /** `rrf` (default) or `union` (all candidates of both, for a reranker to order) */
  method?: 'rrf' | 'union';
  /** RRF constant; default 60 */
  rrfK?: number;
  /** depth of each input list; default the hybrid's own k */
  bm25K?: number;
  denseK?: number;
}

/**
 * BM25 + dense as one first pass: the two retrievers run through the cascade's `Fusion` stage
 * (RRF or union), and the fused list is cut to k. It is a `Retriever` so `retrieve: hybrid`
 * works wherever a retriever does and a following `top` pushes down into it.
 */
export class HybridRetriever extends Retriever {
  readonly method: 'rrf' | 'union';
  readonly rrfK: number;
  private readonly fusion: Fusion;

  constructor(
    readonly collection: Collection,
    k?: number,
    readonly options: HybridOptions = {},
    name = 'hybrid',
  ) {
    super(name, k);
    this.method = options.method ?? 'rrf';
    this.rrfK = options.rrfK ?? DEFAULT_RRF_K;
    const bm25K = options.bm25K ?? this.k;
    const denseK = options.denseK ?? this.k;
    const method: FusionMethod = this.method === 'rrf' ? { kind: 'rrf', k: this.rrfK } : { kind: 'union' };
    this.fusion = new Fusion(name, [new CollectionBm25Retriever(collection, bm25K), new DenseRetriever(collection, denseK)], method);
  }

  withK(k: number): HybridRetriever {
    return new HybridRetriever(this.collection, k, this.options, this.name);
  }

  async retrieve(query: Query, k: number, ctx?: StageContext): Promise<Hit[]> {
    const [r] = await this.fusion.run([{ query, hits: [] }], ctx ?? { costs: new Costs() });
    return r.hits.slice(0, k);
  }

  describe(): StageDescription {
    return { retrieve: this.name, k: this.k, fusion: this.fusion.describe() };
  }
}

/** Reads hybrid options from a spec stage (`retrieve: hybrid, fusion: rrf, rrfK: 60, bm25K: 1000, denseK: 1000`). */
export function hybridOptions(options: Record<string, unknown>, where: string): HybridOptions {
  const out: HybridOptions = {};
  for (const [key, value] of Object.entries(options)) {
    if (key === 'k' || key === 'collection') continue;
    if (key === 'fusion' && (value === 'rrf' || value === 'union')) out.method = value;
    else if (key === 'rrfK' && typeof value === 'number' && value >= 0) out.rrfK = value;
    else if ((key === 'bm25K' || key === 'denseK') && isIntAtLeast(value, 1)) out[key] = value;
    else throw new WinnowError('bad_spec', `${where}: bad hybrid option ${key}: ${JSON.stringify(value)}`, 'hybrid takes fusion (rrf|union), rrfK, bm25K, denseK');
  }
  return out;
}
