import type { StageDescription } from '../../core/stage.js';
import type { Doc, Hit, Query } from '../../core/types.js';
import type { Scorer } from '../../rerank/scorer.js';
import { Retriever } from '../retriever.js';
import type { Bm25Index } from './index.js';
import { registry } from '../../core/registry.js';
import { WinnowError } from '../../core/errors.js';
import { collectionRetriever } from '../collection/env.js';
import type { Bm25Params } from './index.js';

/** BM25 as a first pass: the top k of the whole index. */
export class Bm25Retriever extends Retriever {
  constructor(
    readonly index: Bm25Index,
    k?: number,
    name = 'bm25',
  ) {
    super(name, k);
  }

  withK(k: number): Bm25Retriever {
    return new Bm25Retriever(this.index, k, this.name);
  }

  async retrieve(query: Query, k: number): Promise<Hit[]> {
    return this.toHits(this.index.search(query.text, k, this.name));
  }

  describe(): StageDescription {
    const { k1, b } = this.index.params;
    return { retrieve: this.name, k: this.k, k1, b };
  }
}

/**
 * BM25 as a reranker over supplied candidates, with the index's collection statistics
 * (N, avgdl, df), so a document scores exactly what the retriever would give it.
 */
export class Bm25Scorer implements Scorer {
  readonly kind = 'unbounded' as const;
  readonly id: string;

  constructor(readonly index: Bm25Index) {
    const { k1, b } = index.params;
    this.id = `bm25(k1=${k1},b=${b},N=${index.size})`;
  }

  async score(query: string, docs: readonly Doc[]): Promise<Float32Array> {
    return this.index.scoreDocs(query, docs as Doc[]);
  }
}

/** BM25 parameters from a spec entry (`k1`, `b`); anything else is refused. */
export function bm25Params(options: Record<string, unknown>, where: string): Partial<Bm25Params> {
  const params: Partial<Bm25Params> = {};
  for (const [key, value] of Object.entries(options)) {
    if ((key === 'k1' || key === 'b') && typeof value === 'number') params[key] = value;
    else throw new WinnowError('bad_spec', `${where}: unknown BM25 option "${key}"`, 'BM25 takes k1 and b');
  }
  return params;
}

registry.defineRetriever(
  'bm25',
  async (_ref, options, { env, where }) =>
    env.collection ? (collectionRetriever(env.collection, 'bm25', options, where) as Retriever) : new Bm25Retriever(await env.bm25(bm25Params(options, where))),
  "BM25 over the collection, or over the corpus (built once per k1/b): `k1`, `b`",
);

registry.defineScorer(
  'bm25',
  async (_ref, options, { env, where }) => new Bm25Scorer(await env.bm25(bm25Params(options, where))),
  "BM25 over supplied candidates, with the corpus's (or the candidates') collection statistics",
);
