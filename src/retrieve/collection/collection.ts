import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { WinnowError } from '../../core/errors.js';
import { Progress } from '../../core/progress.js';
import type { Doc, DocLookup } from '../../core/types.js';
import { Bm25Index } from '../bm25/index.js';
import { readIndexFile } from '../bm25/format.js';
import { DEFAULT_BM25_PARAMS, type Bm25Params } from '../bm25/similarity.js';
import { AnnIndex, DEFAULT_ANN_PARAMS, checkAnnParams, type AnnParams } from '../dense/ann.js';
import { checkDim, normalizeRows, toMatrix, type Embedder } from '../dense/embedder.js';
import { exactSearch } from '../dense/exact.js';
import { HitHeap, SegmentedBm25 } from './bm25.js';
import { REBUILD_HINT, acquireLock, bytesOf, fsyncDir, sealFile, verifyFile, writeDurable, type FileEntry } from './files.js';
import { DocStore, encodeDocs, encodeMeta, readMeta } from './store.js';

export const COLLECTION_FORMAT = 'winnow-collection';
export const COLLECTION_VERSION = 1;
const MANIFEST = 'manifest.json';

/** Everything fixed when a collection is created. */
export interface CollectionConfig {
  bm25: Bm25Params;
  stem: boolean;
  stopWords: boolean;
  lossyNorms: boolean;
  /** the bi-encoder the vectors come from; null: a BM25-only collection */
  model: { ref: string; id: string; dim: number } | null;
  ann: AnnParams;
  /** documents per segment: the bound on what one add holds in memory before flushing */
  segmentDocs: number;
  /** more segments than this after a write: the smallest are merged into one */
  maxSegments: number;
}

interface SegmentEntry {
  id: number;
  docs: number;
  bm25: string;
  store: string;
  meta: string;
  vectors: string | null;
  /** tombstones (sorted local doc numbers, Int32), null when none */
  deletes: string | null;
  deleted: number;
}

/** The versioned manifest: a reader opens only the files one complete manifest names. */
export interface Manifest {
  format: typeof COLLECTION_FORMAT;
  version: number;
  name: string;
  generation: number;
  config: CollectionConfig;
  nextKey: number;
  nextSegment: number;
  segments: SegmentEntry[];
  ann: string | null;
  files: Record<string, FileEntry>;
}

export interface CreateOptions {
  name?: string;
  bm25?: Partial<Bm25Params>;
  stem?: boolean;
  stopWords?: boolean;
  lossyNorms?: boolean;
  /** embeds documents at add time; its id and dimension are recorded */
  embedder?: Embedder;
  /** how to find the model again (a path or a model ref), recorded for `open` callers */
  modelRef?: string;
  ann?: Partial<AnnParams>;
  segmentDocs?: number;
  maxSegments?: number;
}

export interface OpenOptions {
  /** required to add documents or search densely in a collection built with a model */
  embedder?: Embedder;
  /** 'full' (default) checks every file's sha256; 'size' only sizes, for very large collections */
  verify?: 'full' | 'size';
  /** override efSearch for this reader */
  efSearch?: number;
}

export interface WriteOptions {
  /** an id that already exists replaces the old document instead of being rejected */
  upsert?: boolean;
  /** documents with no title and no text are skipped (and counted) instead of rejected */
  skipEmpty?: boolean;
  progress?: boolean;
  expectedCount?: number;
  /** called after each new segment is durably written (tests use it to crash mid-write) */
  onSegment?: (segmentId: number) => void;
}

export interface WriteReport {
  added: number;
  replaced: number;
  deleted: number;
  /** ids asked to be deleted that were not in the collection */
  missing: string[];
  skippedEmpty: number;
  segmentsWritten: number;
  merged: number;
  generation: number;
}

/** A document's place: segment number in the manifest's list and local document number. */
type Loc = number;
const SEG_SHIFT = 2 ** 32;
const locOf = (seg: number, doc: number): Loc => seg * SEG_SHIFT + doc;
const segOf = (loc: Loc): number => Math.floor(loc / SEG_SHIFT);
const docOf = (loc: Loc): number => loc % SEG_SHIFT;

interface LoadedSegment {
  entry: SegmentEntry;
  bm25Data: ReturnType<typeof readIndexFile>;
  keys: Float64Array;
  store: DocStore;
  deleted?: Uint8Array;
  vectors?: Float32Array;
}

export interface CollectionHit {
  docId: string;
  score: number;
}

/**
 * A named, persistent collection: document store, segmented BM25 and (with a bi-encoder)
 * vectors plus an HNSW graph, in one folder. Writes are copy-on-write: every add, update or
 * delete writes new immutable files and then atomically replaces `manifest.json`, so a reader
 * (or a process killed mid-write) always sees one complete generation.
 */
export class Collection implements DocLookup {
  private segments: LoadedSegment[] = [];
  private ids = new Map<string, Loc>();
  private keyLocs = new Map<number, Loc>();
  private bm25View!: SegmentedBm25;
  private ann: AnnIndex | null = null;
  private liveCount = 0;

  private constructor(
    readonly dir: string,
    private manifest: Manifest,
    private readonly opts: OpenOptions,
  ) {}

  /** Creates an empty collection in `dir` (which must not hold one already). */
  static create(dir: string, opts: CreateOptions = {}): Collection {
    if (fs.existsSync(path.join(dir, MANIFEST))) {
      throw new WinnowError('bad_input', `a collection already exists in ${dir}`, 'add to it with `winnow index NAME --add FILE`, or delete the folder first');
    }
    fs.mkdirSync(dir, { recursive: true });
    const bm25 = { ...DEFAULT_BM25_PARAMS, ...opts.bm25 };
    const ann = checkAnnParams({ ...DEFAULT_ANN_PARAMS, ...opts.ann }, 'collection ANN parameters');
    const e = opts.embedder;
    const config: CollectionConfig = {
      bm25,
      stem: opts.stem ?? true,
      stopWords: opts.stopWords ?? true,
      lossyNorms: opts.lossyNorms ?? true,
      model: e ? { ref: opts.modelRef ?? e.id, id: e.id, dim: e.dim } : null,
      ann,
      segmentDocs: opts.segmentDocs ?? 50_000,
      maxSegments: opts.maxSegments ?? 16,
    };
    if (!(config.segmentDocs >= 1) || !(config.maxSegments >= 1)) throw new WinnowError('bad_input', 'segmentDocs and maxSegments must be >= 1');
    const manifest: Manifest = {
      format: COLLECTION_FORMAT,
      version: COLLECTION_VERSION,
      name: opts.name ?? path.basename(path.resolve(dir)),
      generation: 0,
      config,
      nextKey: 0,
      nextSegment: 1,
      segments: [],
      ann: null,
      files: {},
    };
    const release = acquireLock(dir);
    try {
      commitManifest(dir, manifest);
    } finally {
      release();
    }
    return Collection.open(dir, { embedder: e });
  }

  /** Opens the generation `manifest.json` names, checking every file it lists. */
  static open(dir: string, opts: OpenOptions = {}): Collection {
    const manifest = readManifest(dir);
    const c = new Collection(dir, manifest, opts);
    c.checkEmbedder();
    c.load();
    return c;
  }

  get name(): string {
    return this.manifest.name;
  }
  get generation(): number {
    return this.manifest.generation;
  }
  get config(): CollectionConfig {
    return this.manifest.config;
  }
  get size(): number {
    return this.liveCount;
  }
  get segmentCount(): number {
    return this.segments.length;
  }
  get hasVectors(): boolean {
    return this.manifest.config.model !== null;
  }
  /** whether dense search goes through the HNSW graph (false: exact scan) */
  get usesAnn(): boolean {
    return this.ann !== null;
  }
  get embedder(): Embedder | undefined {
    return this.opts.embedder;
  }
  get bm25(): SegmentedBm25 {
    return this.bm25View;
  }

  private checkEmbedder(): void {
    const model = this.manifest.config.model;
    const e = this.opts.embedder;
    if (!e) return;
    if (!model) {
      throw new WinnowError('bad_input', `collection "${this.manifest.name}" has no vectors (it was built without a model), but model "${e.id}" was given`);
    }
    if (model.id !== e.id || model.dim !== e.dim) {
      throw new WinnowError(
        'version_mismatch',
        `collection "${this.manifest.name}" was built with model "${model.id}" (dimension ${model.dim}), but the configured model is "${e.id}" (dimension ${e.dim})`,
        'search with the model the collection was built with, or re-index it with the new model',
      );
    }
  }

  /** `full`: check every sha256; after this process's own commit the sizes suffice (it just hashed them). */
  private load(full = (this.opts.verify ?? 'full') === 'full'): void {
    const m = this.manifest;
    for (const [name, entry] of Object.entries(m.files)) verifyFile(this.dir, name, entry, full);
    this.close();
    this.segments = [];
    this.ids = new Map();
    this.keyLocs = new Map();
    this.liveCount = 0;
    m.segments.forEach((entry, si) => {
      const bm25Data = readIndexFile(path.join(this.dir, entry.bm25));
      if (bm25Data.docIds.length !== entry.docs) {
        throw new WinnowError('corrupt_index', `segment file ${path.join(this.dir, entry.bm25)} holds ${bm25Data.docIds.length} documents, the manifest says ${entry.docs}`, REBUILD_HINT);
      }
      const { offsets, keys } = readMeta(path.join(this.dir, entry.meta), entry.docs);
      let deleted: Uint8Array | undefined;
      if (entry.deletes) {
        deleted = new Uint8Array(entry.docs);
        for (const d of readInt32s(path.join(this.dir, entry.deletes))) deleted[d] = 1;
      }
      const seg: LoadedSegment = { entry, bm25Data, keys, store: new DocStore(path.join(this.dir, entry.store), offsets), deleted };
      // Open now: a later writer's garbage collection may unlink the file, and an open
      // descriptor keeps this reader's generation readable.
      seg.store.open();
      this.segments.push(seg);
      for (let d = 0; d < entry.docs; d++) {
        if (deleted?.[d]) continue;
        this.ids.set(bm25Data.docIds[d], locOf(si, d));
        this.keyLocs.set(keys[d], locOf(si, d));
        this.liveCount++;
      }
    });
    const c = m.config;
    this.bm25View = new SegmentedBm25(
      this.segments.map((s) => ({ data: s.bm25Data, deleted: s.deleted })),
      c.bm25,
      { stem: c.stem, stopWords: c.stopWords, lossyNorms: c.lossyNorms },
    );
    this.ann = null;
    if (m.ann && c.model) {
      const params = { ...c.ann, efSearch: this.opts.efSearch ?? c.ann.efSearch };
      this.ann = AnnIndex.load(path.join(this.dir, m.ann), c.model.dim, params);
    } else if (c.model) {
      // Exact search scans the vectors; load them now for the same reason the stores open now.
      for (const s of this.segments) this.vectorsOf(s);
    }
  }

  /** Releases open file descriptors. */
  close(): void {
    for (const s of this.segments) s.store.close();
  }

  has(id: string): boolean {
    return this.ids.has(id);
  }

  get(id: string): Doc | undefined {
    const loc = this.ids.get(id);
    return loc === undefined ? undefined : this.segments[segOf(loc)].store.get(docOf(loc));
  }

  /** Live document ids, in segment order. */
  *docIds(): IterableIterator<string> {
    for (const s of this.segments) {
      for (let d = 0; d < s.entry.docs; d++) if (!s.deleted?.[d]) yield s.bm25Data.docIds[d];
    }
  }

  /** Live documents, in segment order (reads the document store). */
  *docs(): IterableIterator<Doc> {
    for (const s of this.segments) {
      for (let d = 0; d < s.entry.docs; d++) if (!s.deleted?.[d]) yield s.store.get(d);
    }
  }

  /** BM25 top k with collection-wide statistics. */
  searchBm25(queryText: string, k: number): CollectionHit[] {
    return this.bm25View.search(queryText, k).map((h) => ({ docId: this.idAt(h), score: h.score }));
  }

  /** Dense top k for a query vector: HNSW when the collection has a graph, an exact scan otherwise. */
  searchVector(query: Float32Array, k: number): CollectionHit[] {
    const model = this.requireModel('dense search');
    checkDim(query, model.dim, 'the query vector');
    if (k <= 0 || this.liveCount === 0) return [];
    if (!this.ann) return this.exactVector(query, k);
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

  async searchDense(queryText: string, k: number): Promise<CollectionHit[]> {
    const e = this.requireEmbedder('dense search');
    return this.searchVector(normalizeRows(Float32Array.from(await e.embedQuery(queryText)), e.dim), k);
  }

  private exactVector(query: Float32Array, k: number): CollectionHit[] {
    const dim = this.manifest.config.model!.dim;
    const heap = new HitHeap(k);
    this.segments.forEach((s, si) => {
      const { rows, scores } = exactSearch(this.vectorsOf(s), dim, query, k, s.deleted ? (r) => s.deleted![r] === 1 : undefined);
      for (let i = 0; i < rows.length; i++) heap.offer(scores[i], si, rows[i]);
    });
    return heap.drain().map((h) => ({ docId: this.idAt(h), score: h.score }));
  }

  private vectorsOf(s: LoadedSegment): Float32Array {
    if (!s.vectors) {
      const raw = fs.readFileSync(path.join(this.dir, s.entry.vectors!));
      const v = new Float32Array(raw.length / 4);
      Buffer.from(v.buffer).set(raw);
      if (v.length !== s.entry.docs * this.manifest.config.model!.dim) {
        throw new WinnowError('corrupt_index', `vector file ${path.join(this.dir, s.entry.vectors!)} has the wrong length`, REBUILD_HINT);
      }
      s.vectors = v;
    }
    return s.vectors;
  }

  private idAt(h: { seg: number; doc: number }): string {
    return this.segments[h.seg].bm25Data.docIds[h.doc];
  }

  private requireModel(what: string): NonNullable<CollectionConfig['model']> {
    const model = this.manifest.config.model;
    if (!model) throw new WinnowError('bad_input', `collection "${this.manifest.name}" has no vectors, so ${what} is not possible`, 're-index it with --model');
    return model;
  }

  private requireEmbedder(what: string): Embedder {
    const model = this.requireModel(what);
    if (!this.opts.embedder) {
      throw new WinnowError('usage', `collection "${this.manifest.name}" needs its model "${model.id}" for ${what}`, `open it with an embedder for ${model.ref}`);
    }
    return this.opts.embedder;
  }

  // ---------------------------------------------------------------- writes

  /** Adds documents; an id already present is rejected unless `upsert`. One commit. */
  add(docs: Iterable<Doc> | AsyncIterable<Doc>, opts: WriteOptions = {}): Promise<WriteReport> {
    return this.write(docs, [], opts.upsert ? 'upsert' : 'add', opts);
  }

  /** Replaces existing documents; an id not in the collection is an error. One commit. */
  update(docs: Iterable<Doc> | AsyncIterable<Doc>, opts: WriteOptions = {}): Promise<WriteReport> {
    return this.write(docs, [], 'update', opts);
  }

  /** Deletes documents by id (tombstones); unknown ids are reported, not an error. One commit. */
  delete(ids: readonly string[]): Promise<WriteReport> {
    return this.write([], ids, 'add', {});
  }

  private async write(
    input: Iterable<Doc> | AsyncIterable<Doc>,
    deleteIds: readonly string[],
    mode: 'add' | 'upsert' | 'update',
    opts: WriteOptions,
  ): Promise<WriteReport> {
    const release = acquireLock(this.dir);
    const created: string[] = [];
    let committed = false;
    try {
      // Another writer may have committed since this reader opened: write on top of the newest.
      const onDisk = readManifest(this.dir);
      if (onDisk.generation !== this.manifest.generation) {
        this.manifest = onDisk;
        this.load();
      }
      const base = this.manifest;
      const c = base.config;
      const embedder = c.model ? this.requireEmbedder('adding documents') : undefined;
      const next: Manifest = structuredClone(base);
      next.generation = base.generation + 1;
      const report: WriteReport = { added: 0, replaced: 0, deleted: 0, missing: [], skippedEmpty: 0, segmentsWritten: 0, merged: 0, generation: next.generation };

      // Tombstones per segment id, existing ones first; changed ones get a new file.
      const tomb = new Map<number, Set<number>>();
      const changed = new Set<number>();
      for (const s of this.segments) tomb.set(s.entry.id, new Set(s.deleted ? [...indicesOf(s.deleted)] : []));
      const removedKeys: number[] = [];
      const kill = (segId: number, local: number, key: number): void => {
        let set = tomb.get(segId);
        if (!set) tomb.set(segId, (set = new Set()));
        set.add(local);
        changed.add(segId);
        removedKeys.push(key);
      };
      /** live location of an id: committed (segment id, local, key) or pending in this write */
      const live = new Map<string, { segId: number; local: number; key: number }>();
      const lookup = (id: string): { segId: number; local: number; key: number } | undefined => {
        const p = live.get(id);
        if (p) return p;
        const loc = this.ids.get(id);
        if (loc === undefined) return undefined;
        const s = this.segments[segOf(loc)];
        if (tomb.get(s.entry.id)?.has(docOf(loc))) return undefined;
        return { segId: s.entry.id, local: docOf(loc), key: s.keys[docOf(loc)] };
      };

      for (const id of deleteIds) {
        const at = lookup(id);
        if (!at) {
          report.missing.push(id);
          continue;
        }
        kill(at.segId, at.local, at.key);
        live.delete(id);
        report.deleted++;
      }

      const newSegments: SegmentEntry[] = [];
      let batch: Doc[] = [];
      let batchKeys: number[] = [];
      const flush = async (): Promise<void> => {
        if (batch.length === 0) return;
        const segId = next.nextSegment++;
        const entry = await this.writeSegment(segId, batch, Float64Array.from(batchKeys), embedder, next.files, created);
        newSegments.push(entry);
        report.segmentsWritten++;
        batch = [];
        batchKeys = [];
        opts.onSegment?.(segId);
      };

      const progress = opts.progress === false ? undefined : new Progress(`index ${base.name}`, opts.expectedCount ?? 0, 'docs');
      let n = 0;
      const take = async (doc: Doc): Promise<void> => {
        n++;
        if (doc === null || typeof doc !== 'object' || typeof doc.id !== 'string' || doc.id === '') {
          throw new WinnowError('bad_input', `document #${n} has no string "id"`);
        }
        if (typeof doc.text !== 'string' || (doc.title !== undefined && doc.title !== null && typeof doc.title !== 'string')) {
          throw new WinnowError('bad_input', `document #${n} ("${doc.id}") has no string "text"`, 'every document needs a "text" field (it may be empty with --skip-empty)');
        }
        if (doc.text.trim() === '' && !(doc.title ?? '').trim()) {
          if (opts.skipEmpty) {
            report.skippedEmpty++;
            return;
          }
          throw new WinnowError('bad_input', `document #${n} ("${doc.id}") has no title and no text`, 'pass --skip-empty to skip such documents and count them');
        }
        const old = lookup(doc.id);
        if (mode === 'update' && !old) {
          throw new WinnowError('not_found', `cannot update document "${doc.id}" (document #${n}): it is not in collection "${base.name}"`, 'use --add (or --upsert) for new documents');
        }
        if (old) {
          if (mode === 'add') {
            throw new WinnowError(
              'bad_input',
              `duplicate document id "${doc.id}" (document #${n}): it is already in collection "${base.name}"`,
              'use --upsert to replace existing documents, or --update',
            );
          }
          report.replaced++;
          if (old.segId === next.nextSegment) {
            // Still in the unflushed batch: replace it there (one segment cannot hold an id twice).
            batch[old.local] = doc.title ? { id: doc.id, title: doc.title, text: doc.text } : { id: doc.id, text: doc.text };
            progress?.tick();
            return;
          }
          kill(old.segId, old.local, old.key);
        } else {
          report.added++;
        }
        const key = next.nextKey++;
        live.set(doc.id, { segId: next.nextSegment, local: batch.length, key });
        batch.push(doc.title ? { id: doc.id, title: doc.title, text: doc.text } : { id: doc.id, text: doc.text });
        batchKeys.push(key);
        progress?.tick();
        if (batch.length >= c.segmentDocs) await flush();
      };
      if (Symbol.asyncIterator in input) for await (const d of input as AsyncIterable<Doc>) await take(d);
      else for (const d of input as Iterable<Doc>) await take(d);
      await flush();
      progress?.finish();

      // Tombstones that landed on this write's own segments (upsert of an id twice in one input).
      next.segments = [...base.segments, ...newSegments];
      for (const seg of next.segments) {
        if (!changed.has(seg.id)) continue;
        const locals = Int32Array.from([...tomb.get(seg.id)!].sort((a, b) => a - b));
        const name = `seg-${pad(seg.id)}.g${pad(next.generation)}.del`;
        next.files[name] = writeDurable(this.dir, name, [bytesOf(locals)]);
        created.push(name);
        seg.deletes = name;
        seg.deleted = locals.length;
      }
      // Segments whose every document is deleted are dropped outright.
      next.segments = next.segments.filter((s) => s.deleted < s.docs);

      report.merged = await this.maybeMerge(next, created);
      await this.updateAnn(base, next, removedKeys, created);

      next.files = filesOf(next);
      commitManifest(this.dir, next);
      committed = true;
      this.manifest = next;
      this.load(false);
      collectGarbage(this.dir, next);
      return report;
    } catch (e) {
      if (!committed) for (const name of created) fs.rmSync(path.join(this.dir, name), { force: true });
      throw e;
    } finally {
      release();
    }
  }

  private async writeSegment(
    segId: number,
    docs: Doc[],
    keys: Float64Array,
    embedder: Embedder | undefined,
    files: Record<string, FileEntry>,
    created: string[],
  ): Promise<SegmentEntry> {
    const c = this.manifest.config;
    const stem = `seg-${pad(segId)}`;
    const entry: SegmentEntry = {
      id: segId,
      docs: docs.length,
      bm25: `${stem}.bm25`,
      store: `${stem}.docs`,
      meta: `${stem}.meta`,
      vectors: null,
      deletes: null,
      deleted: 0,
    };
    const index = await Bm25Index.build(docs, { params: c.bm25, stem: c.stem, stopWords: c.stopWords, lossyNorms: c.lossyNorms, progress: false });
    created.push(entry.bm25);
    index.save(path.join(this.dir, entry.bm25));
    files[entry.bm25] = sealFile(this.dir, entry.bm25);
    const { chunks, offsets } = encodeDocs(docs);
    created.push(entry.store, entry.meta);
    files[entry.store] = writeDurable(this.dir, entry.store, chunks);
    files[entry.meta] = writeDurable(this.dir, entry.meta, encodeMeta(offsets, keys));
    if (embedder) {
      const dim = c.model!.dim;
      const vectors = new Float32Array(docs.length * dim);
      const BATCH = 64;
      for (let i = 0; i < docs.length; i += BATCH) {
        const part = docs.slice(i, i + BATCH);
        vectors.set(toMatrix(await embedder.embedDocs(part), part.length, dim, `model "${embedder.id}"`), i * dim);
      }
      normalizeRows(vectors, dim);
      entry.vectors = `${stem}.vec`;
      created.push(entry.vectors);
      files[entry.vectors] = writeDurable(this.dir, entry.vectors, [bytesOf(vectors)]);
    }
    return entry;
  }

  /**
   * Tiered-merge-lite: past `maxSegments`, the smallest segments (by live documents) are
   * rewritten as one, dropping their deleted documents. Keys and vectors are carried over, so
   * the ANN graph is untouched; text is re-analysed from the document store.
   */
  private async maybeMerge(next: Manifest, created: string[]): Promise<number> {
    const c = next.config;
    if (next.segments.length <= c.maxSegments) return 0;
    const bySize = [...next.segments].sort((a, b) => a.docs - a.deleted - (b.docs - b.deleted) || a.id - b.id);
    const victims = new Set(bySize.slice(0, next.segments.length - c.maxSegments + 1).map((s) => s.id));
    const docs: Doc[] = [];
    const keys: number[] = [];
    const vecParts: Float32Array[] = [];
    const dim = c.model?.dim ?? 0;
    for (const entry of next.segments) {
      if (!victims.has(entry.id)) continue;
      const src = await this.openSegmentForMerge(entry);
      for (let d = 0; d < entry.docs; d++) {
        if (src.deleted?.[d]) continue;
        docs.push(src.store.get(d));
        keys.push(src.keys[d]);
        if (src.vectors) vecParts.push(src.vectors.subarray(d * dim, (d + 1) * dim));
      }
      src.store.close();
    }
    const segId = next.nextSegment++;
    const vectors = c.model ? concat(vecParts, docs.length * dim) : undefined;
    const merged = await this.writeSegment(segId, docs, Float64Array.from(keys), undefined, next.files, created);
    if (vectors) {
      merged.vectors = `seg-${pad(segId)}.vec`;
      created.push(merged.vectors);
      next.files[merged.vectors] = writeDurable(this.dir, merged.vectors, [bytesOf(vectors)]);
    }
    // The merged segment takes the place of the first victim so segment order stays stable.
    const out: SegmentEntry[] = [];
    let placed = false;
    for (const s of next.segments) {
      if (!victims.has(s.id)) out.push(s);
      else if (!placed) {
        out.push(merged);
        placed = true;
      }
    }
    next.segments = out;
    return victims.size;
  }

  private async openSegmentForMerge(entry: SegmentEntry): Promise<{ store: DocStore; keys: Float64Array; deleted?: Uint8Array; vectors?: Float32Array }> {
    const { offsets, keys } = readMeta(path.join(this.dir, entry.meta), entry.docs);
    let deleted: Uint8Array | undefined;
    if (entry.deletes) {
      deleted = new Uint8Array(entry.docs);
      for (const d of readInt32s(path.join(this.dir, entry.deletes))) deleted[d] = 1;
    }
    let vectors: Float32Array | undefined;
    if (entry.vectors) {
      const raw = fs.readFileSync(path.join(this.dir, entry.vectors));
      vectors = new Float32Array(raw.length / 4);
      Buffer.from(vectors.buffer).set(raw);
    }
    return { store: new DocStore(path.join(this.dir, entry.store), offsets), keys, deleted, vectors };
  }

  /**
   * Keeps the HNSW graph in step: below `exactBelow` live vectors there is none (exact scan);
   * crossing it builds one from every live vector; after that each write loads the previous
   * graph, inserts the new vectors, removes deleted keys and saves a new generation's file.
   */
  private async updateAnn(base: Manifest, next: Manifest, removedKeys: number[], created: string[]): Promise<void> {
    const c = next.config;
    next.ann = null;
    if (!c.model) return;
    const live = next.segments.reduce((n, s) => n + s.docs - s.deleted, 0);
    if (live < c.ann.exactBelow || live === 0) return;
    const dim = c.model.dim;
    const name = `ann.g${pad(next.generation)}.usearch`;
    let graph: AnnIndex;
    let sources: SegmentEntry[];
    if (base.ann) {
      graph = AnnIndex.load(path.join(this.dir, base.ann), dim, c.ann);
      graph.remove(BigUint64Array.from(removedKeys.map((k) => BigInt(k))));
      // New documents sit in this write's segments (possibly already merged): keys >= base.nextKey.
      sources = next.segments.filter((s) => s.id >= base.nextSegment);
    } else {
      graph = AnnIndex.create(dim, c.ann);
      sources = next.segments;
    }
    for (const entry of sources) {
      const src = await this.openSegmentForMerge(entry);
      src.store.close();
      const rows: number[] = [];
      for (let d = 0; d < entry.docs; d++) if (!src.deleted?.[d] && (!base.ann || src.keys[d] >= base.nextKey)) rows.push(d);
      const keys = new BigUint64Array(rows.length);
      const vecs = new Float32Array(rows.length * dim);
      rows.forEach((d, i) => {
        keys[i] = BigInt(src.keys[d]);
        vecs.set(src.vectors!.subarray(d * dim, (d + 1) * dim), i * dim);
      });
      graph.add(keys, vecs);
    }
    const tmp = `.${name}.${process.pid}.tmp`;
    created.push(tmp, name);
    graph.save(path.join(this.dir, tmp));
    next.files[name] = sealFile(this.dir, tmp);
    fs.renameSync(path.join(this.dir, tmp), path.join(this.dir, name));
    next.ann = name;
  }
}

// ---------------------------------------------------------------- manifest and files

function pad(n: number): string {
  return String(n).padStart(6, '0');
}

function* indicesOf(bits: Uint8Array): IterableIterator<number> {
  for (let i = 0; i < bits.length; i++) if (bits[i]) yield i;
}

function readInt32s(file: string): Int32Array {
  const raw = fs.readFileSync(file);
  const out = new Int32Array(raw.length >> 2);
  Buffer.from(out.buffer).set(raw.subarray(0, out.length * 4));
  return out;
}

function concat(parts: Float32Array[], length: number): Float32Array {
  const out = new Float32Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The files a manifest names, with their recorded entries (sizes and checksums). */
function filesOf(m: Manifest): Record<string, FileEntry> {
  const names: string[] = [];
  for (const s of m.segments) {
    names.push(s.bm25, s.store, s.meta);
    if (s.vectors) names.push(s.vectors);
    if (s.deletes) names.push(s.deletes);
  }
  const out: Record<string, FileEntry> = {};
  for (const n of names) {
    const e = m.files[n];
    if (!e) throw new WinnowError('internal', `manifest names ${n} without a checksum`);
    out[n] = e;
  }
  if (m.ann) {
    if (!m.files[m.ann]) throw new WinnowError('internal', `manifest names ${m.ann} without a checksum`);
    out[m.ann] = m.files[m.ann];
  }
  return out;
}

function commitManifest(dir: string, m: Manifest): void {
  writeDurable(dir, MANIFEST, [Buffer.from(`${JSON.stringify(m, null, 1)}\n`, 'utf8')]);
  fsyncDir(dir);
}

export function readManifest(dir: string): Manifest {
  const file = path.join(dir, MANIFEST);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new WinnowError('not_found', `no collection in ${dir} (${MANIFEST} not found)`, 'create it with `winnow index NAME --corpus FILE`');
  }
  let m: Manifest;
  try {
    m = JSON.parse(text) as Manifest;
  } catch {
    throw new WinnowError('corrupt_index', `collection manifest ${file} is not valid JSON`, REBUILD_HINT);
  }
  if (m.format !== COLLECTION_FORMAT || !Array.isArray(m.segments) || typeof m.files !== 'object') {
    throw new WinnowError('corrupt_index', `${file} is not a Winnow collection manifest`, REBUILD_HINT);
  }
  if (m.version !== COLLECTION_VERSION) {
    throw new WinnowError('version_mismatch', `collection ${dir} has format version ${m.version}, this Winnow reads version ${COLLECTION_VERSION}`, 'rebuild it with this version');
  }
  return m;
}

/** Removes every file the committed manifest does not name (older generations, crashed writes). */
function collectGarbage(dir: string, m: Manifest): void {
  const keep = new Set([MANIFEST, 'write.lock', ...Object.keys(m.files)]);
  for (const name of fs.readdirSync(dir)) {
    if (keep.has(name)) continue;
    fs.rmSync(path.join(dir, name), { force: true, recursive: true });
  }
}

/** `$WINNOW_HOME/collections/<name>`, or `name` itself when it is a path. */
export function collectionDir(nameOrPath: string): string {
  if (nameOrPath.includes('/') || nameOrPath.includes(path.sep) || nameOrPath.startsWith('.')) return path.resolve(nameOrPath);
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(nameOrPath)) {
    throw new WinnowError('usage', `bad collection name "${nameOrPath}"`, 'use letters, digits, ".", "_" and "-", or give a path');
  }
  const home = process.env.WINNOW_HOME ?? path.join(os.homedir(), '.cache', 'winnow');
  return path.join(home, 'collections', nameOrPath);
}
