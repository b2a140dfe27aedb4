import * as fs from 'node:fs';
import * as path from 'node:path';
import { WinnowError } from '../../core/errors.js';
import { Progress } from '../../core/progress.js';
import type { Doc, DocLookup } from '../../core/types.js';
import { DEFAULT_BM25_PARAMS, type Bm25Params } from '../bm25/similarity.js';
import { DEFAULT_ANN_PARAMS, checkAnnParams, type AnnParams } from '../dense/ann.js';
import { normalizeRows, type Embedder } from '../dense/embedder.js';
import type { SegmentedBm25 } from './bm25.js';
import { checkSizes, rememberVerified, sweepCacheTemps, verifyGeneration, VERIFY_CACHE } from './integrity.js';
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
  type StoredModel,
} from './manifest.js';
import { OpenGeneration, type CollectionHit } from './reader.js';
import { embedMatrix, writeModelVectors, type StoredVectors } from './vectors.js';
import { stageWrite, type WriteMode, type WriteOptions, type WriteReport } from './write.js';

// The collection is split by concern, each in its own file: manifest.ts (the generation's
// manifest and commit), reader.ts (a generation opened for search), write.ts (staging the next
// generation), segment-writer.ts, merge.ts, ann.ts (the HNSW graph's update), lock.ts,
// journal.ts, integrity.ts, repair.ts. This file is the facade most callers need.
export { COLLECTION_FORMAT, COLLECTION_VERSION, collectionDir, readManifest, type CollectionConfig, type Manifest, type StoredModel } from './manifest.js';
export { StoredVectors } from './vectors.js';
export { DEFAULT_LOCK_TIMEOUT_MS } from './lock.js';

/** documents per segment file unless a collection is created with another number */
export const DEFAULT_SEGMENT_DOCS = 50_000;
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
  /**
   * Bound of the BM25 postings blocks kept in memory (LRU; default 256 MiB). Postings are read
   * from the segment files as queries need them, so a reader's memory follows what its queries
   * touch, not the collection's size.
   */
  postingsCacheBytes?: number;
}

export type { CollectionHit } from './reader.js';
export type { WriteOptions, WriteReport } from './write.js';

/**
 * A named, persistent collection: document store, segmented BM25 and (with a bi-encoder)
 * vectors plus an HNSW graph, in one folder. Writes are copy-on-write: every add, update or
 * delete writes new immutable files and then atomically replaces `manifest.json`, so a reader
 * (or a process killed mid-write) always sees one complete generation.
 */
export class Collection implements DocLookup {
  private current?: OpenGeneration;

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
      segmentDocs: opts.segmentDocs ?? DEFAULT_SEGMENT_DOCS,
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
    return this.gen.liveCount;
  }
  get segmentCount(): number {
    return this.gen.segments.length;
  }
  get hasVectors(): boolean {
    return this.manifest.config.model !== null;
  }
  /** whether dense search goes through the HNSW graph (false: exact scan) */
  get usesAnn(): boolean {
    return this.gen.ann !== null;
  }
  get embedder(): Embedder | undefined {
    return this.opts.embedder;
  }
  get bm25(): SegmentedBm25 {
    return this.gen.bm25;
  }

  private get gen(): OpenGeneration {
    if (!this.current) throw new WinnowError('internal', `collection ${this.dir} is not loaded`);
    return this.current;
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
    this.current = undefined; // a failed open below leaves no closed generation in use
    this.current = new OpenGeneration(this.dir, m, this.opts.efSearch, this.opts.postingsCacheBytes);
  }

  /** Releases open file descriptors. */
  close(): void {
    this.current?.close();
  }

  /** The models whose document vectors this collection stores: the one it was built with, then added ones. */
  get storedModels(): StoredModel[] {
    const c = this.manifest.config;
    return [...(c.model ? [c.model] : []), ...(this.manifest.models ?? [])];
  }

  /** The stored document vectors of the model with scorer id `modelId` (see `OpenGeneration.storedVectors`). */
  storedVectors(modelId: string): StoredVectors | undefined {
    return this.gen.storedVectors(modelId);
  }

  has(id: string): boolean {
    return this.gen.has(id);
  }

  get(id: string): Doc | undefined {
    return this.gen.get(id);
  }

  /** Live document ids, in segment order. */
  docIds(): IterableIterator<string> {
    return this.gen.docIds();
  }

  /** Live documents, in segment order (reads the document store). */
  docs(): IterableIterator<Doc> {
    return this.gen.docs();
  }

  /** BM25 top k with collection-wide statistics. */
  searchBm25(queryText: string, k: number): CollectionHit[] {
    return this.gen.searchBm25(queryText, k);
  }

  /** Dense top k for a query vector: HNSW when the collection has a graph, an exact scan otherwise. */
  searchVector(query: Float32Array, k: number): CollectionHit[] {
    const model = this.requireModel('dense search');
    return this.gen.searchVector(query, k, model.dim);
  }

  async searchDense(queryText: string, k: number): Promise<CollectionHit[]> {
    const e = this.requireEmbedder('dense search');
    return this.searchVector(normalizeRows(Float32Array.from(await e.embedQuery(queryText)), e.dim), k);
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
    return this.commitWrite(async (base, journal) => {
      if (this.storedModels.some((m) => m.id === embedder.id)) {
        throw new WinnowError('bad_input', `collection "${base.name}" already stores vectors of model "${embedder.id}"`, 'nothing to add');
      }
      if (!(embedder.dim > 0)) throw new WinnowError('model_error', `model ${ref} reports no embedding dimension`);
      const model: StoredModel = { ref, id: embedder.id, dim: embedder.dim };
      const next: Manifest = structuredClone(base);
      next.generation = base.generation + 1;
      next.models = [...(base.models ?? []), model];
      const progress = opts.progress === false ? undefined : new Progress(`add model to ${base.name}`, this.gen.liveCount, 'docs');
      let documents = 0;
      for (let si = 0; si < this.gen.segments.length; si++) {
        const s = this.gen.segments[si];
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
        (entry.models ??= {})[model.id] = writeModelVectors(this.dir, entry.id, entry.docs, model, vectors, next.files, journal());
        documents += live.length;
      }
      progress?.finish();
      next.files = filesOf(next);
      return {
        next,
        result: { documents, segments: next.segments.length, generation: next.generation },
        beforeLoad: () => {
          this.opts.models = [...(this.opts.models ?? []), embedder];
        },
      };
    });
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

  private write(input: Iterable<Doc> | AsyncIterable<Doc>, deleteIds: readonly string[], mode: WriteMode, opts: WriteOptions): Promise<WriteReport> {
    return this.commitWrite(async (base, journal) => {
      const embedder = base.config.model ? this.requireEmbedder('adding documents') : undefined;
      const addedModels = () => (base.models ?? []).map((model) => ({ model, source: { embedder: this.requireModelEmbedder(model) } }));
      const { next, report } = await stageWrite(this.dir, base, this.gen, embedder, addedModels, input, deleteIds, mode, opts, journal());
      return { next, result: report };
    });
  }

  /**
   * One writer's commit: under the lock, on top of the newest generation (another writer may
   * have committed since this reader opened), after sweeping the leftovers of writers killed
   * before. `stage` writes the next generation's files, each named in the journal it asks for
   * first; committed or not, the journal's rule then removes exactly this write's leftovers.
   */
  private async commitWrite<R>(
    stage: (base: Manifest, journal: () => Journal) => Promise<{ next: Manifest; result: R; beforeLoad?: () => void }>,
  ): Promise<R> {
    const lock = await WriterLock.acquire(this.dir, { timeoutMs: this.opts.lockTimeoutMs });
    let journal: Journal | undefined;
    try {
      const onDisk = readManifest(this.dir);
      if (onDisk.generation !== this.manifest.generation) {
        this.manifest = onDisk;
        this.load();
      }
      sweepJournals(this.dir, onDisk);
      sweepCacheTemps(this.dir);
      const base = this.manifest;
      const { next, result, beforeLoad } = await stage(base, () => (journal ??= new Journal(this.dir, base.generation + 1)));
      lock.check();
      commitManifest(this.dir, next);
      this.manifest = next;
      rememberVerified(this.dir, next.files);
      beforeLoad?.();
      this.load('own');
      return result;
    } finally {
      if (journal) closeJournal(journal, this.dir);
      lock.release();
    }
  }
}

function closeJournal(journal: Journal, dir: string): void {
  let committed: Manifest;
  try {
    committed = readManifest(dir);
  } catch {
    return;
  }
  journal.close(committed);
}
