import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Doc } from '../../core/types.js';
import { Bm25Index } from '../bm25/index.js';
import { normalizeRows, type Embedder } from '../dense/embedder.js';
import { bytesOf, sealFile, writeDurable, type FileEntry } from './files.js';
import type { Journal } from './journal.js';
import { pad, type CollectionConfig, type SegmentEntry, type StoredModel } from './manifest.js';
import { DocStore, encodeDocs, encodeMeta, readMeta } from './store.js';
import { embedMatrix, writeModelVectors } from './vectors.js';

export const SEAL_FORMAT = 'winnow-segment';

/**
 * A segment's own record, written after its files: their checksums, and the segments a merge
 * folded into it. With it a segment proves itself without the manifest, which is what lets
 * `--repair` rebuild a lost manifest from the segments alone.
 */
export interface Seal {
  format: typeof SEAL_FORMAT;
  id: number;
  docs: number;
  generation: number;
  mergedFrom: number[];
  files: Record<'bm25' | 'store' | 'meta' | 'vectors', (FileEntry & { name: string }) | null>;
}

export const sealName = (segId: number): string => `seg-${pad(segId)}.seal`;

/** Where a segment's vectors come from: embedded now, or carried over (a merge). */
export type VectorSource = { embedder: Embedder } | { vectors: Float32Array } | null;

/** An added model's vectors for a new segment (`--add-model`): embedded now, or carried over by a merge. */
export interface ModelVectorSource {
  model: StoredModel;
  source: NonNullable<VectorSource>;
}

/**
 * Writes one immutable segment: BM25 postings, document store, metadata (offsets and keys),
 * vectors, then its seal. Every file is journaled before it is created and recorded in `files`.
 */
export async function writeSegment(
  dir: string,
  config: CollectionConfig,
  segId: number,
  generation: number,
  docs: Doc[],
  keys: Float64Array,
  source: VectorSource,
  files: Record<string, FileEntry>,
  journal: Journal,
  mergedFrom: number[] = [],
  models: readonly ModelVectorSource[] = [],
): Promise<SegmentEntry> {
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
    seal: sealName(segId),
  };
  const index = await Bm25Index.build(docs, { params: config.bm25, stem: config.stem, stopWords: config.stopWords, lossyNorms: config.lossyNorms, progress: false });
  journal.creating(entry.bm25, entry.store, entry.meta, entry.seal!);
  index.save(path.join(dir, entry.bm25));
  files[entry.bm25] = sealFile(dir, entry.bm25);
  const { chunks, offsets } = encodeDocs(docs);
  files[entry.store] = writeDurable(dir, entry.store, chunks);
  files[entry.meta] = writeDurable(dir, entry.meta, encodeMeta(offsets, keys));
  if (source && config.model) {
    const dim = config.model.dim;
    let vectors: Float32Array;
    if ('vectors' in source) vectors = source.vectors;
    else vectors = normalizeRows(await embedMatrix(source.embedder, docs, dim), dim);
    entry.vectors = `${stem}.vec`;
    journal.creating(entry.vectors);
    files[entry.vectors] = writeDurable(dir, entry.vectors, [bytesOf(vectors)]);
  }
  for (const { model, source: from } of models) {
    const vectors = 'vectors' in from ? from.vectors : await embedMatrix(from.embedder, docs, model.dim);
    (entry.models ??= {})[model.id] = writeModelVectors(dir, segId, docs.length, model, vectors, files, journal);
  }
  const named = (name: string | null): (FileEntry & { name: string }) | null => (name ? { name, ...files[name] } : null);
  const seal: Seal = {
    format: SEAL_FORMAT,
    id: segId,
    docs: docs.length,
    generation,
    mergedFrom,
    files: { bm25: named(entry.bm25), store: named(entry.store), meta: named(entry.meta), vectors: named(entry.vectors) },
  };
  files[entry.seal!] = writeDurable(dir, entry.seal!, [Buffer.from(`${JSON.stringify(seal, null, 1)}\n`, 'utf8')]);
  return entry;
}

export interface SegmentData {
  store: DocStore;
  keys: Float64Array;
  deleted?: Uint8Array;
  vectors?: Float32Array;
}

/** Reads a committed segment's side files (for merging, the ANN graph and repair). */
export function readSegment(dir: string, entry: SegmentEntry): SegmentData {
  const { offsets, keys } = readMeta(path.join(dir, entry.meta), entry.docs);
  let deleted: Uint8Array | undefined;
  if (entry.deletes) {
    deleted = new Uint8Array(entry.docs);
    for (const d of readInt32s(path.join(dir, entry.deletes))) deleted[d] = 1;
  }
  const vectors = entry.vectors ? readFloat32s(path.join(dir, entry.vectors)) : undefined;
  return { store: new DocStore(path.join(dir, entry.store), offsets), keys, deleted, vectors };
}

export function readInt32s(file: string): Int32Array {
  const raw = fs.readFileSync(file);
  const out = new Int32Array(raw.length >> 2);
  Buffer.from(out.buffer).set(raw.subarray(0, out.length * 4));
  return out;
}

export function readFloat32s(file: string): Float32Array {
  const raw = fs.readFileSync(file);
  const v = new Float32Array(raw.length >> 2);
  Buffer.from(v.buffer).set(raw.subarray(0, v.length * 4));
  return v;
}

/** Writes a segment's tombstones for generation `generation`; returns the file name. */
export function writeTombstones(dir: string, seg: SegmentEntry, locals: Int32Array, generation: number, files: Record<string, FileEntry>, journal: Journal): void {
  const name = `seg-${pad(seg.id)}.g${pad(generation)}.del`;
  journal.creating(name);
  files[name] = writeDurable(dir, name, [bytesOf(locals)]);
  seg.deletes = name;
  seg.deleted = locals.length;
}
