import { WinnowError } from '../../core/errors.js';
import { Progress } from '../../core/progress.js';
import type { Doc } from '../../core/types.js';
import { IntVec } from '../bm25/index.js';
import { IdLog, IdTable } from '../ids.js';
import type { Embedder } from '../dense/embedder.js';
import { updateAnn } from './ann.js';
import type { Journal } from './journal.js';
import { filesOf, type Manifest, type SegmentEntry } from './manifest.js';
import { maybeMerge } from './merge.js';
import type { DocPlace, OpenGeneration } from './reader.js';
import { writeSegment, writeTombstones, type ModelVectorSource } from './segment-writer.js';

/**
 * The write side of a collection: one add, update or delete turned into the files and the
 * manifest of the next generation. Everything is written under the caller's lock and named in
 * its journal; committing the returned manifest (or not) is the caller's step.
 */

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

export type WriteMode = 'add' | 'upsert' | 'update';

export interface StagedWrite {
  /** the next generation's manifest, its files written and listed, not yet committed */
  next: Manifest;
  report: WriteReport;
}

/**
 * Writes the segments, tombstones, merges and graph update that take `base` (open as `current`)
 * to its next generation: new documents in segments of `segmentDocs`, replaced and deleted ones
 * as tombstones, then a merge past `maxSegments` and the ANN update.
 */
export async function stageWrite(
  dir: string,
  base: Manifest,
  current: OpenGeneration,
  embedder: Embedder | undefined,
  /** the added models' embedders; asked for only when documents arrive (deleting needs no model) */
  addedModels: () => ModelVectorSource[],
  input: Iterable<Doc> | AsyncIterable<Doc>,
  deleteIds: readonly string[],
  mode: WriteMode,
  opts: WriteOptions,
  j: Journal,
): Promise<StagedWrite> {
  const c = base.config;
  let added: ModelVectorSource[] | undefined;
  const next: Manifest = structuredClone(base);
  next.generation = base.generation + 1;
  const report: WriteReport = { added: 0, replaced: 0, deleted: 0, missing: [], skippedEmpty: 0, segmentsWritten: 0, merged: 0, generation: next.generation };

  // Tombstones per segment id, existing ones first; changed ones get a new file.
  const tomb = new Map<number, Set<number>>();
  const changed = new Set<number>();
  for (const s of current.segments) tomb.set(s.entry.id, new Set(s.deleted ? [...indicesOf(s.deleted)] : []));
  const removedKeys: number[] = [];
  const kill = (segId: number, local: number, key: number): void => {
    let set = tomb.get(segId);
    if (!set) tomb.set(segId, (set = new Set()));
    set.add(local);
    changed.add(segId);
    removedKeys.push(key);
  };
  // Ids added by this write, by key - keyBase (keys are handed out in sequence): their bytes in
  // a log, a compact table from id to the latest, and the key's segment and local number in two
  // int vectors. Memory per added document is a few tens of bytes, not a Map entry and a string.
  const keyBase = next.nextKey;
  const pendingIds = new IdLog();
  const live = new IdTable((ord, key) => pendingIds.equals(ord, key));
  const pendingSeg = new IntVec();
  const pendingLocal = new IntVec();
  /** live location of an id (`idBytes` its UTF-8 bytes): committed (segment id, local, key) or pending in this write */
  const lookup = (id: string, idBytes: Buffer): DocPlace | undefined => {
    const ord = live.find(idBytes);
    if (ord >= 0) return { segId: pendingSeg.data[ord], local: pendingLocal.data[ord], key: keyBase + ord };
    const at = current.place(id);
    return at && tomb.get(at.segId)?.has(at.local) ? undefined : at;
  };

  // Deletes come before this write adds anything, so they only meet committed documents.
  for (const id of deleteIds) {
    const at = lookup(id, Buffer.from(id, 'utf8'));
    if (!at) {
      report.missing.push(id);
      continue;
    }
    kill(at.segId, at.local, at.key);
    report.deleted++;
  }

  const newSegments: SegmentEntry[] = [];
  let batch: Doc[] = [];
  let batchKeys: number[] = [];
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    added ??= addedModels();
    const segId = next.nextSegment++;
    const entry = await writeSegment(dir, c, segId, next.generation, batch, Float64Array.from(batchKeys), embedder ? { embedder } : null, next.files, j, [], added);
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
    const idBytes = Buffer.from(doc.id, 'utf8');
    const old = lookup(doc.id, idBytes);
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
    live.set(idBytes, pendingIds.push(idBytes));
    pendingSeg.push(next.nextSegment);
    pendingLocal.push(batch.length);
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
    writeTombstones(dir, seg, Int32Array.from([...tomb.get(seg.id)!].sort((a, b) => a - b)), next.generation, next.files, j);
  }
  // Segments whose every document is deleted are dropped outright.
  next.segments = next.segments.filter((s) => s.deleted < s.docs);

  report.merged = await maybeMerge(dir, next, j);
  updateAnn(dir, base, next, removedKeys, j);

  next.files = filesOf(next);
  j.obsolete(Object.keys(base.files).filter((f) => !(f in next.files)));
  return { next, report };
}

function* indicesOf(bits: Uint8Array): IterableIterator<number> {
  for (let i = 0; i < bits.length; i++) if (bits[i]) yield i;
}
