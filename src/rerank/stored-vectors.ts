import { STORED_PAIRS, type Costs } from '../core/costs.js';
import type { Doc, Hit } from '../core/types.js';
import type { StoredVectors } from '../retrieve/collection/vectors.js';
import { sqNorm, type BiEncoder } from './bi-encoder.js';
import type { Scorer } from './scorer.js';

/**
 * A bi-encoder over a collection that stores its document vectors: a hit found there costs a
 * dot product against the stored row, so a stage pays one query embedding plus a dot product
 * per candidate and never reads or embeds the documents. Hits that are not stored (inline
 * candidates, documents of a segment without this model) go to the bi-encoder as before.
 */
export class StoredVectorScorer implements Scorer {
  readonly kind = 'similarity' as const;
  /** pairs served from stored vectors and pairs handed to the model, since creation */
  stored = 0;
  embedded = 0;
  private seg = new Int32Array(0);
  private row = new Int32Array(0);

  constructor(
    /** what scores the documents that are not stored (the bi-encoder, or the server's batching around it) */
    readonly inner: Scorer,
    readonly model: BiEncoder,
    readonly vectors: StoredVectors,
    /** documents given inline win over the collection's, so their ids are never read from it */
    private readonly inline?: ReadonlyMap<string, Doc>,
  ) {}

  /** The same numbers as the bi-encoder's, so score caches and calibrations carry over. */
  get id(): string {
    return this.inner.id;
  }

  get maxLength(): number {
    return this.model.maxLength;
  }

  async score(query: string, docs: readonly Doc[], costs?: Costs): Promise<Float32Array> {
    this.embedded += docs.length;
    return this.inner.score(query, docs, costs);
  }

  async scoreStored(query: string, hits: readonly Hit[], costs?: Costs): Promise<Float32Array | undefined> {
    const n = hits.length;
    if (this.seg.length < n) {
      this.seg = new Int32Array(n);
      this.row = new Int32Array(n);
    }
    const { seg, row } = this;
    const found = this.vectors.locate(
      hits.map((h) => h.docId),
      seg,
      row,
    );
    if (found === 0) return undefined;
    for (let i = 0; i < n; i++) if (seg[i] >= 0 && (hits[i].doc || this.inline?.has(hits[i].docId))) seg[i] = -1;
    const q = await this.model.embedQuery(query);
    const qq = sqNorm(q, 0, q.length);
    const out = new Float32Array(n);
    const dim = this.vectors.dim;
    const segments = this.vectors.segments;
    let stored = 0;
    for (let i = 0; i < n; i++) {
      const s = seg[i];
      if (s < 0) {
        out[i] = NaN;
        continue;
      }
      const v = segments[s]!;
      out[i] = this.model.pairScore(q, qq, v.vectors, row[i] * dim, v.sqNorms[row[i]]);
      stored++;
    }
    this.stored += stored;
    costs?.add(STORED_PAIRS, stored);
    return out;
  }

  close(): Promise<void> {
    return this.inner.close?.() ?? Promise.resolve();
  }
}
