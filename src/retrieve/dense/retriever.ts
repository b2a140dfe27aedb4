import type { StageDescription } from '../../core/stage.js';
import type { Hit, Query } from '../../core/types.js';
import type { Collection } from '../collection/collection.js';
import { Retriever } from '../retriever.js';

/**
 * Dense first pass over a collection: the query is embedded with the collection's model and
 * the nearest documents come from the HNSW graph (or an exact scan for small collections).
 */
export class DenseRetriever extends Retriever {
  override readonly scoreKind = 'similarity' as const;
  constructor(
    readonly collection: Collection,
    k?: number,
    name = 'dense',
  ) {
    super(name, k);
  }

  withK(k: number): DenseRetriever {
    return new DenseRetriever(this.collection, k, this.name);
  }

  async retrieve(query: Query, k: number): Promise<Hit[]> {
    return this.toHits(await this.collection.searchDense(query.text, k));
  }

  describe(): StageDescription {
    const c = this.collection.config;
    return {
      retrieve: this.name,
      k: this.k,
      collection: this.collection.name,
      model: c.model?.id,
      ann: this.collection.usesAnn ? { m: c.ann.m, efConstruction: c.ann.efConstruction, efSearch: c.ann.efSearch, quantization: c.ann.quantization } : 'exact',
    };
  }
}
