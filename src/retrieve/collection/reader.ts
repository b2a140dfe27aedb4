import * as path from 'node:path';
import { WinnowError } from '../../core/errors.js';
import type { Doc } from '../../core/types.js';
import { LRUCache } from 'lru-cache';
import { openBm25Source, postingsBytes, type Bm25Source, type Postings, type PostingsCache } from '../bm25/paged.js';
import { AnnIndex } from '../dense/ann.js';
import { checkDim } from '../dense/embedder.js';
import { exactSearch } from '../dense/exact.js';
import { HitHeap, SegmentedBm25 } from './bm25.js';
import { REBUILD_HINT } from './files.js';
import { repairHint, type Manifest, type SegmentEntry } from './manifest.js';
import { readFloat32s, readInt32s } from './segment-writer.js';
import { DocStore, readMeta } from './store.js';
import { IdTable } from '../ids.js';
import { SegmentVectors, StoredVectors, docOf, locOf, segOf, type IdLookup, type Loc } from './vectors.js';

/**
 * The read side of a collection: one generation's segments opened for lookups and search
 * (document stores, BM25 over all segments, the HNSW graph or the vectors for an exact scan).
 * `Collection` holds one and replaces it after each commit.
 */

export interface LoadedSegment {
  entry: SegmentEntry;
  /** the segment's BM25 index file, postings read on demand */
  bm25: Bm25Source;
  keys: Float64Array;
  store: DocStore;
  deleted?: Uint8Array;
  vectors?: Float32Array;
  /** added models' vectors, by model id */
  models: Map<string, SegmentVectors>;
}

export interface CollectionHit {
  docId: string;
  score: number;
}

/** Where a live document is: its segment's id, its local number and its vector key. */
export interface DocPlace {
  segId: number;
  local: number;
  key: number;
}

/** default bound of the postings blocks one open generation keeps in memory */
export const DEFAULT_POSTINGS_CACHE_BYTES = 256 * 2 ** 20;

export class OpenGeneration {
  readonly segments: LoadedSegment[] = [];
  /** id and key lookups, built on first use: a generation that only searches never pays for them */
  private idTable?: IdTable;
  private keyMap?: Map<number, Loc>;
  /** the first ordinal of each segment in the id table (one more entry: the total) */
  private readonly ordStarts: number[] = [0];
  /** live id -> location, for the stored vectors' lookups */
  private readonly idLookup: IdLookup = { get: (id) => this.locOfId(id) };
  private readonly postingsCache: PostingsCache;
  readonly bm25: SegmentedBm25;
  readonly ann: AnnIndex | null = null;
  liveCount = 0;
  private readonly stored = new Map<string, StoredVectors | undefined>();

  /** Opens every file of `m` (already verified by the caller); `efSearch` overrides the graph's. */
  constructor(
    private readonly dir: string,
    private readonly m: Manifest,
    efSearch?: number,
    postingsCacheBytes = DEFAULT_POSTINGS_CACHE_BYTES,
  ) {
    this.postingsCache = new LRUCache<string, Postings>({ maxSize: Math.max(1, postingsCacheBytes), sizeCalculation: postingsBytes });
    try {
      m.segments.forEach((entry, si) => this.openSegment(entry, si));
      const c = m.config;
      this.bm25 = new SegmentedBm25(
        this.segments.map((s) => ({ source: s.bm25, deleted: s.deleted })),
        c.bm25,
        { stem: c.stem, stopWords: c.stopWords, lossyNorms: c.lossyNorms },
      );
      if (m.ann && c.model) {
        this.ann = AnnIndex.load(path.join(dir, m.ann), c.model.dim, { ...c.ann, efSearch: efSearch ?? c.ann.efSearch });
      } else if (c.model) {
        // Exact search scans the vectors; load them now for the same reason the stores open now.
        for (const s of this.segments) this.vectorsOf(s);
      }
    } catch (e) {
      this.close();
      throw e;
    }
  }

  private openSegment(entry: SegmentEntry, si: number): void {
    const bm25 = openBm25Source(path.join(this.dir, entry.bm25), this.postingsCache, String(si));
    try {
      this.openSegmentFiles(entry, bm25);
    } catch (e) {
      bm25.close();
      throw e;
    }
  }

  private openSegmentFiles(entry: SegmentEntry, bm25: Bm25Source): void {
    if (bm25.numDocs !== entry.docs) {
      throw new WinnowError('corrupt_index', `segment file ${path.join(this.dir, entry.bm25)} holds ${bm25.numDocs} documents, the manifest says ${entry.docs}`, REBUILD_HINT);
    }
    const { offsets, keys } = readMeta(path.join(this.dir, entry.meta), entry.docs);
    let deleted: Uint8Array | undefined;
    if (entry.deletes) {
      deleted = new Uint8Array(entry.docs);
      for (const d of readInt32s(path.join(this.dir, entry.deletes))) deleted[d] = 1;
    }
    const models = new Map<string, SegmentVectors>();
    for (const [id, v] of Object.entries(entry.models ?? {})) {
      const dim = this.m.models?.find((x) => x.id === id)?.dim;
      if (dim === undefined) throw new WinnowError('corrupt_index', `segment ${entry.id} holds vectors of model "${id}", which the manifest does not list`, repairHint(this.dir));
      models.set(id, new SegmentVectors(path.join(this.dir, v.vectors), entry.docs, dim));
    }
    const seg: LoadedSegment = { entry, bm25, keys, store: new DocStore(path.join(this.dir, entry.store), offsets), deleted, models };
    // Open now: a later writer's garbage collection may unlink the file, and an open
    // descriptor keeps this reader's generation readable.
    seg.store.open();
    for (const v of models.values()) v.open();
    this.segments.push(seg);
    this.ordStarts.push(this.ordStarts[this.ordStarts.length - 1] + entry.docs);
    let dead = 0;
    if (deleted) for (let d = 0; d < entry.docs; d++) dead += deleted[d];
    this.liveCount += entry.docs - dead;
  }

  /** The location of a live id, or undefined. The id table is built on first use (about a second per ten million documents). */
  private locOfId(id: string): Loc | undefined {
    const ord = (this.idTable ??= this.buildIdTable()).find(Buffer.from(id, 'utf8'));
    if (ord < 0) return undefined;
    const si = this.segmentOfOrd(ord);
    return locOf(si, ord - this.ordStarts[si]);
  }

  private buildIdTable(): IdTable {
    const t = new IdTable((ord, key) => {
      const si = this.segmentOfOrd(ord);
      return this.segments[si].bm25.docIdEquals(ord - this.ordStarts[si], key);
    }, this.liveCount);
    this.segments.forEach((s, si) => {
      const base = this.ordStarts[si];
      for (let d = 0; d < s.entry.docs; d++) if (!s.deleted?.[d]) t.addNew(s.bm25.docIdHash(d), base + d);
    });
    return t;
  }

  private segmentOfOrd(ord: number): number {
    let lo = 0;
    let hi = this.segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.ordStarts[mid] <= ord) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** live vector key -> location, built on first use (dense search through the graph) */
  private get keyLocs(): Map<number, Loc> {
    if (!this.keyMap) {
      const m = new Map<number, Loc>();
      this.segments.forEach((s, si) => {
        for (let d = 0; d < s.entry.docs; d++) if (!s.deleted?.[d]) m.set(s.keys[d], locOf(si, d));
      });
      this.keyMap = m;
    }
    return this.keyMap;
  }

  /** Releases open file descriptors. */
  close(): void {
    for (const s of this.segments) {
      s.bm25.close();
      s.store.close();
      for (const v of s.models.values()) v.close();
    }
    this.postingsCache.clear();
  }

  /**
   * The stored document vectors of the model with scorer id `modelId`, or undefined when the
   * collection holds none. The build model's vectors are unit length (stored for cosine
   * search), added models' are as the model returns them.
   */
  storedVectors(modelId: string): StoredVectors | undefined {
    if (this.stored.has(modelId)) return this.stored.get(modelId);
    const c = this.m.config;
    let out: StoredVectors | undefined;
    if (c.model?.id === modelId) {
      const dim = c.model.dim;
      out = new StoredVectors(
        c.model,
        this.idLookup,
        this.segments.map((s) => new SegmentVectors(path.join(this.dir, s.entry.vectors!), s.entry.docs, dim, this.vectorsOf(s))),
      );
    } else {
      const model = this.m.models?.find((m) => m.id === modelId);
      if (model) out = new StoredVectors(model, this.idLookup, this.segments.map((s) => s.models.get(modelId)));
    }
    this.stored.set(modelId, out);
    return out;
  }

  has(id: string): boolean {
    return this.locOfId(id) !== undefined;
  }

  get(id: string): Doc | undefined {
    const loc = this.locOfId(id);
    return loc === undefined ? undefined : this.segments[segOf(loc)].store.get(docOf(loc));
  }

  /** Where a live id is in this generation, or undefined. */
  place(id: string): DocPlace | undefined {
    const loc = this.locOfId(id);
    if (loc === undefined) return undefined;
    const s = this.segments[segOf(loc)];
    return { segId: s.entry.id, local: docOf(loc), key: s.keys[docOf(loc)] };
  }

  *docIds(): IterableIterator<string> {
    for (const s of this.segments) {
      for (let d = 0; d < s.entry.docs; d++) if (!s.deleted?.[d]) yield s.bm25.docId(d);
    }
  }

  *docs(): IterableIterator<Doc> {
    for (const s of this.segments) {
      for (let d = 0; d < s.entry.docs; d++) if (!s.deleted?.[d]) yield s.store.get(d);
    }
  }

  searchBm25(queryText: string, k: number): CollectionHit[] {
    return this.bm25.search(queryText, k).map((h) => ({ docId: this.idAt(h), score: h.score }));
  }

  /** Dense top k for a query vector of a collection with a model: HNSW, or an exact scan without a graph. */
  searchVector(query: Float32Array, k: number, dim: number): CollectionHit[] {
    checkDim(query, dim, 'the query vector');
    if (k <= 0 || this.liveCount === 0) return [];
    if (!this.ann) return this.exactVector(query, k, dim);
    // Removed nodes no longer come back from usearch, but a graph node whose document was
    // deleted by a later generation is filtered here too; over-fetch so k live ones remain.
    let fetch = Math.min(k + Math.ceil(k / 4), this.ann.size);
    for (;;) {
      const { keys, scores } = this.ann.search(query, fetch);
      const out: CollectionHit[] = [];
      for (let i = 0; i < keys.length && out.length < k; i++) {
        const loc = this.keyLocs.get(Number(keys[i]));
        if (loc !== undefined) out.push({ docId: this.idAt({ seg: segOf(loc), doc: docOf(loc) }), score: scores[i] });
      }
      if (out.length >= k || fetch >= this.ann.size) return out;
      fetch = Math.min(fetch * 2, this.ann.size);
    }
  }

  private exactVector(query: Float32Array, k: number, dim: number): CollectionHit[] {
    const heap = new HitHeap(k);
    this.segments.forEach((s, si) => {
      const { rows, scores } = exactSearch(this.vectorsOf(s), dim, query, k, s.deleted ? (r) => s.deleted![r] === 1 : undefined);
      for (let i = 0; i < rows.length; i++) heap.offer(scores[i], si, rows[i]);
    });
    return heap.drain().map((h) => ({ docId: this.idAt(h), score: h.score }));
  }

  private vectorsOf(s: LoadedSegment): Float32Array {
    if (!s.vectors) {
      const v = readFloat32s(path.join(this.dir, s.entry.vectors!));
      if (v.length !== s.entry.docs * this.m.config.model!.dim) {
        throw new WinnowError('corrupt_index', `vector file ${path.join(this.dir, s.entry.vectors!)} has the wrong length`, REBUILD_HINT);
      }
      s.vectors = v;
    }
    return s.vectors;
  }

  private idAt(h: { seg: number; doc: number }): string {
    return this.segments[h.seg].bm25.docId(h.doc);
  }
}
