import type { StageDescription } from '../../core/stage.js';
import type { Doc, Hit, Query } from '../../core/types.js';
import type { Scorer } from '../../rerank/scorer.js';
import { Retriever } from '../retriever.js';
import type { Bm25Index } from './index.js';

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
