import * as fs from 'node:fs';
import * as path from 'node:path';
import { WinnowError } from '../../core/errors.js';
import { Progress } from '../../core/progress.js';
import type { Doc, DocLookup } from '../../core/types.js';
import { readIndexFile } from '../bm25/format.js';
import { DEFAULT_BM25_PARAMS, type Bm25Params } from '../bm25/similarity.js';
import { AnnIndex, DEFAULT_ANN_PARAMS, checkAnnParams, type AnnParams } from '../dense/ann.js';
import { checkDim, normalizeRows, type Embedder } from '../dense/embedder.js';
import { exactSearch } from '../dense/exact.js';
import { updateAnn } from './ann.js';
import { HitHeap, SegmentedBm25 } from './bm25.js';
import { REBUILD_HINT } from './files.js';
import { repairHint } from './manifest.js';
import { checkSizes, rememberVerified, verifyGeneration, VERIFY_CACHE } from './integrity.js';
import { Journal, journaledFiles, sweepJournals } from './journal.js';
import { LOCK_FILE, WriterLock } from './lock.js';
import {
  COLLECTION_FORMAT,
  COLLECTION_VERSION,
  IDENTITY,
  MANIFEST,
  checkCreatable,
  commitManifest,
  filesOf,
  readManifest,
  writeIdentity,
  type CollectionConfig,
  type Manifest,
  type SegmentEntry,
  type StoredModel,
} from './manifest.js';
import { maybeMerge } from './merge.js';
import { readFloat32s, readInt32s, writeSegment, writeTombstones, type ModelVectorSource } from './segment-writer.js';
import { DocStore, readMeta } from './store.js';
import { SegmentVectors, StoredVectors, docOf, embedMatrix, locOf, segOf, writeModelVectors, type Loc } from './vectors.js';

// The collection is split by concern; this file is the facade most callers need.
export { COLLECTION_FORMAT, COLLECTION_VERSION, collectionDir, readManifest, type CollectionConfig, type Manifest, type StoredModel } from './manifest.js';
export { StoredVectors } from './vectors.js';
export { DEFAULT_LOCK_TIMEOUT_MS } from './lock.js';
export { checkFiles, type FileCheck } from './integrity.js';
export { repairCollection, type RepairReport } from './repair.js';

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
  /** how long to wait for another writer's lock (default 30 s; 0 fails at once) */
  lockTimeoutMs?: number;
}

export interface OpenOptions {
  /** required to add documents or search densely in a collection built with a model */
  embedder?: Embedder;
  /** embedders of the models added with `--add-model`: required to add documents, which get their vectors too */
  models?: readonly Embedder[];
  /**
   * Every file is checked against the manifest's sha256 before use. 'cached' (default) trusts
   * a file hashed before whose size, mtime, ctime and inode are unchanged (`verified.json`);
   * 'full' hashes everything again. 'size' is read as 'cached': sizes alone let damaged bytes
   * through, and the cache makes full checks cheap.
   */
  verify?: 'cached' | 'full' | 'size';
  /** how long a write waits for another writer's lock (default 30 s; 0 fails at once) */
  lockTimeoutMs?: number;
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


interface LoadedSegment {
  entry: SegmentEntry;
  bm25Data: ReturnType<typeof readIndexFile>;
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
  private stored = new Map<string, StoredVectors | undefined>();

  private constructor(
    readonly dir: string,
    private manifest: Manifest,
    private readonly opts: OpenOptions,
  ) {}

  /**
   * Creates an empty collection in `dir`, which must be new or empty: a collection owns its
   * folder, and refusing anything else is what keeps clean-up from touching files it did not write.
   */
  static create(dir: string, opts: CreateOptions = {}): Collection {
    checkCreatable(dir);
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
    const name = opts.name ?? path.basename(path.resolve(dir));
    fs.mkdirSync(dir, { recursive: true });
    const lock = WriterLock.acquireSync(dir, { timeoutMs: opts.lockTimeoutMs });
    try {
      // Checked again under the lock: another process may have created it meanwhile.
      checkCreatable(dir, [LOCK_FILE]);
      const identity = writeIdentity(dir, { format: COLLECTION_FORMAT, version: COLLECTION_VERSION, name, created: new Date().toISOString(), config });
      const manifest: Manifest = {
        format: COLLECTION_FORMAT,
        version: COLLECTION_VERSION,
        name,
        generation: 0,
        config,
        nextKey: 0,
        nextSegment: 1,
        segments: [],
        ann: null,
        files: { [IDENTITY]: identity },
      };
      lock.check();
      commitManifest(dir, manifest);
    } finally {
      lock.release();
    }
    return Collection.open(dir, { embedder: e, lockTimeoutMs: opts.lockTimeoutMs });
  }

  /**
   * Removes a collection: only the files it wrote (those its manifest and journals name, its
   * identity, lock and verification cache), then the folder if nothing else is left in it.
   */
  static remove(dir: string): void {
    let named: string[] = [];
    try {
      named = Object.keys(readManifest(dir).files);
    } catch {
      // no readable manifest: the journals and fixed names below are all we know to be ours
    }
    for (const f of [...named, ...journaledFiles(dir), MANIFEST, IDENTITY, VERIFY_CACHE, LOCK_FILE]) {
      if (f && !f.includes('/') && f !== '.' && f !== '..') fs.rmSync(path.join(dir, f), { force: true });
    }
    try {
      fs.rmdirSync(dir);
    } catch {
      // not empty: someone else's files are in it, and they stay
    }
  }

  /** Opens the generation `manifest.json` names, checking every file it lists. */
  static open(dir: string, opts: OpenOptions = {}): Collection {
    for (let attempt = 0; ; attempt++) {
      const manifest = readManifest(dir);
      const c = new Collection(dir, manifest, opts);
      c.checkEmbedder();
      try {
        c.load();
        return c;
      } catch (e) {
        c.close();
        // A writer that committed while we verified may have removed the old generation's
        // files: that is a newer collection, not a damaged one.
        const moved = e instanceof WinnowError && e.code === 'corrupt_index' && attempt < 3 && readManifest(dir).generation !== manifest.generation;
        if (!moved) throw e;
      }
    }
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

  /** `check`: verify every sha256 first; 'own' after this process's commit (it hashed the files as it wrote them). */
  private load(check: 'verify' | 'own' = 'verify'): void {
    const m = this.manifest;
    if (check === 'own') checkSizes(this.dir, m.files);
    else verifyGeneration(this.dir, m.files, this.opts.verify !== 'full');
    this.close();
    this.segments = [];
    this.stored = new Map();
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
      const models = new Map<string, SegmentVectors>();
      for (const [id, v] of Object.entries(entry.models ?? {})) {
        const dim = m.models?.find((x) => x.id === id)?.dim;
        if (dim === undefined) throw new WinnowError('corrupt_index', `segment ${entry.id} holds vectors of model "${id}", which the manifest does not list`, repairHint(this.dir));
        models.set(id, new SegmentVectors(path.join(this.dir, v.vectors), entry.docs, dim));
      }
      const seg: LoadedSegment = { entry, bm25Data, keys, store: new DocStore(path.join(this.dir, entry.store), offsets), deleted, models };
      // Open now: a later writer's garbage collection may unlink the file, and an open
      // descriptor keeps this reader's generation readable.
      seg.store.open();
      for (const v of models.values()) v.open();
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
    for (const s of this.segments) {
      s.store.close();
      for (const v of s.models.values()) v.close();
    }
  }

  /** The models whose document vectors this collection stores: the one it was built with, then added ones. */
  get storedModels(): StoredModel[] {
    const c = this.manifest.config;
    return [...(c.model ? [c.model] : []), ...(this.manifest.models ?? [])];
  }

  /**
   * The stored document vectors of the model with scorer id `modelId`, or undefined when the
   * collection holds none. The build model's vectors are unit length (stored for cosine
   * search), added models' are as the model returns them.
   */
  storedVectors(modelId: string): StoredVectors | undefined {
    if (this.stored.has(modelId)) return this.stored.get(modelId);
    const c = this.manifest.config;
    let out: StoredVectors | undefined;
    if (c.model?.id === modelId) {
      const dim = c.model.dim;
      out = new StoredVectors(
        c.model,
        this.ids,
        this.segments.map((s) => new SegmentVectors(path.join(this.dir, s.entry.vectors!), s.entry.docs, dim, this.vectorsOf(s))),
      );
    } else {
      const model = this.manifest.models?.find((m) => m.id === modelId);
      if (model) out = new StoredVectors(model, this.ids, this.segments.map((s) => s.models.get(modelId)));
    }
    this.stored.set(modelId, out);
    return out;
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
      const v = readFloat32s(path.join(this.dir, s.entry.vectors!));
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

  private requireModelEmbedder(model: StoredModel): Embedder {
    const e = this.opts.models?.find((x) => x.id === model.id);
    if (!e) {
      throw new WinnowError(
        'usage',
        `collection "${this.manifest.name}" stores vectors of model "${model.id}" (added with --add-model), so adding documents needs that model too`,
        `open it with an embedder for ${model.ref} (winnow index loads it)`,
      );
    }
    if (e.dim !== model.dim) throw new WinnowError('version_mismatch', `model "${model.id}" now has dimension ${e.dim}, the collection stores dimension ${model.dim}`);
    return e;
  }

  // ---------------------------------------------------------------- writes

  /**
   * Embeds every document already in the collection with `embedder` and stores the vectors
   * per segment, so a bi-encoder stage with this model reads them instead of embedding
   * candidates. Later writes embed their documents with it too. One commit.
   */
  async addModel(embedder: Embedder, ref: string, opts: { progress?: boolean } = {}): Promise<{ documents: number; segments: number; generation: number }> {
    const lock = await WriterLock.acquire(this.dir, { timeoutMs: this.opts.lockTimeoutMs });
    let journal: Journal | undefined;
    try {
      const onDisk = readManifest(this.dir);
      if (onDisk.generation !== this.manifest.generation) {
        this.manifest = onDisk;
        this.load();
      }
      sweepJournals(this.dir, onDisk);
      const base = this.manifest;
      if (this.storedModels.some((m) => m.id === embedder.id)) {
        throw new WinnowError('bad_input', `collection "${base.name}" already stores vectors of model "${embedder.id}"`, 'nothing to add');
      }
      if (!(embedder.dim > 0)) throw new WinnowError('model_error', `model ${ref} reports no embedding dimension`);
      const model: StoredModel = { ref, id: embedder.id, dim: embedder.dim };
      const next: Manifest = structuredClone(base);
      next.generation = base.generation + 1;
      next.models = [...(base.models ?? []), model];
      journal = new Journal(this.dir, next.generation);
      const progress = opts.progress === false ? undefined : new Progress(`add model to ${base.name}`, this.liveCount, 'docs');
      let documents = 0;
      for (let si = 0; si < this.segments.length; si++) {
        const s = this.segments[si];
        // Rows stay aligned with local document numbers; deleted documents keep a zero row.
        const live: number[] = [];
        for (let d = 0; d < s.entry.docs; d++) if (!s.deleted?.[d]) live.push(d);
        const liveVectors = await embedMatrix(embedder, live.map((d) => s.store.get(d)), model.dim, (n) => progress?.tick(n));
        let vectors = liveVectors;
        if (live.length !== s.entry.docs) {
          vectors = new Float32Array(s.entry.docs * model.dim);
          live.forEach((d, i) => vectors.set(liveVectors.subarray(i * model.dim, (i + 1) * model.dim), d * model.dim));
        }
        const entry = next.segments[si];
        (entry.models ??= {})[model.id] = writeModelVectors(this.dir, entry.id, entry.docs, model, vectors, next.files, journal);
        documents += live.length;
      }
      progress?.finish();
      next.files = filesOf(next);
      lock.check();
      commitManifest(this.dir, next);
      this.manifest = next;
      rememberVerified(this.dir, next.files);
      this.opts.models = [...(this.opts.models ?? []), embedder];
      this.load('own');
      return { documents, segments: next.segments.length, generation: next.generation };
    } finally {
      if (journal) closeJournal(journal, this.dir);
      lock.release();
    }
  }

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
    const lock = await WriterLock.acquire(this.dir, { timeoutMs: this.opts.lockTimeoutMs });
    let journal: Journal | undefined;
    try {
      // Another writer may have committed since this reader opened: write on top of the newest.
      const onDisk = readManifest(this.dir);
      if (onDisk.generation !== this.manifest.generation) {
        this.manifest = onDisk;
        this.load();
      }
      // Leftovers of writers killed before (or right after) their commit.
      sweepJournals(this.dir, onDisk);
      const base = this.manifest;
      const c = base.config;
      const embedder = c.model ? this.requireEmbedder('adding documents') : undefined;
      // Looked up when documents arrive: deleting needs no model.
      let added: ModelVectorSource[] | undefined;
      const next: Manifest = structuredClone(base);
      next.generation = base.generation + 1;
      const report: WriteReport = { added: 0, replaced: 0, deleted: 0, missing: [], skippedEmpty: 0, segmentsWritten: 0, merged: 0, generation: next.generation };
      journal = new Journal(this.dir, next.generation);
      const j = journal;

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
        added ??= (base.models ?? []).map((model) => ({ model, source: { embedder: this.requireModelEmbedder(model) } }));
        const segId = next.nextSegment++;
        const entry = await writeSegment(this.dir, c, segId, next.generation, batch, Float64Array.from(batchKeys), embedder ? { embedder } : null, next.files, j, [], added);
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
        writeTombstones(this.dir, seg, Int32Array.from([...tomb.get(seg.id)!].sort((a, b) => a - b)), next.generation, next.files, j);
      }
      // Segments whose every document is deleted are dropped outright.
      next.segments = next.segments.filter((s) => s.deleted < s.docs);

      report.merged = await maybeMerge(this.dir, next, j);
      updateAnn(this.dir, base, next, removedKeys, j);

      next.files = filesOf(next);
      j.obsolete(Object.keys(base.files).filter((f) => !(f in next.files)));
      lock.check();
      commitManifest(this.dir, next);
      this.manifest = next;
      rememberVerified(this.dir, next.files);
      this.load('own');
      return report;
    } finally {
      // Committed or not, the journal's rule removes exactly this write's leftovers.
      if (journal) closeJournal(journal, this.dir);
      lock.release();
    }
  }
}

function* indicesOf(bits: Uint8Array): IterableIterator<number> {
  for (let i = 0; i < bits.length; i++) if (bits[i]) yield i;
}

/** A clean-up failure must not hide why the write failed; the next writer's sweep retries it. */
function closeJournal(journal: Journal, dir: string): void {
  let committed: Manifest;
  try {
    committed = readManifest(dir);
  } catch {
    return;
  }
  journal.close(committed);
}
