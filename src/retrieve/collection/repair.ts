import * as fs from 'node:fs';
import * as path from 'node:path';
import { WinnowError } from '../../core/errors.js';
import { readIndexFile } from '../bm25/format.js';
import { updateAnn } from './ann.js';
import { hashFile, type FileEntry } from './files.js';
import { rememberVerified } from './integrity.js';
import { Journal } from './journal.js';
import { WriterLock, type LockOptions } from './lock.js';
import {
  COLLECTION_FORMAT,
  COLLECTION_VERSION,
  IDENTITY,
  MANIFEST,
  commitManifest,
  filesOf,
  readIdentity,
  readManifest,
  type CollectionConfig,
  type Manifest,
  type SegmentEntry,
  type StoredModel,
} from './manifest.js';
import { SEAL_FORMAT, readInt32s, sealName, writeTombstones, type Seal } from './segment-writer.js';
import { readMeta } from './store.js';
import { provenModelVectors } from './vectors.js';

export interface RepairReport {
  generation: number;
  documents: number;
  /** segments taken into the new manifest */
  recovered: { segment: number; docs: number; live: number; how: 'seal' | 'structure' }[];
  /** files left where they are and not used, with the reason */
  skipped: { file: string; reason: string }[];
  /** copies of an id found in more than one segment; the newest segment's copy is kept */
  duplicates: number;
}

const SEGMENT_FILE = /^seg-(\d{6})\.bm25$/;
const TOMBSTONES = /^seg-(\d{6})\.g(\d{6})\.del$/;
const GENERATION = /\.g(\d{6})\.|^gen-(\d{6})\.journal$/;

interface Candidate {
  entry: SegmentEntry;
  docIds: string[];
  keys: Float64Array;
  mergedFrom: number[];
  how: 'seal' | 'structure';
}

/**
 * Rebuilds a collection's manifest from its segments, for a manifest that is lost or damaged,
 * or files that fail verification. Each segment proves itself: its seal's sha256 per file when
 * it has one, and always its own structure (the BM25 file's checksum trailer, the metadata
 * header, the document store's length, the vector file's length). Damaged segments are left
 * in place and reported, never deleted. The newest readable tombstones of each segment are
 * applied; segments a merge replaced, and older copies of an id, are left out. The HNSW graph
 * is rebuilt from the vectors.
 */
export function repairCollection(dir: string, opts: LockOptions = {}): RepairReport {
  let old: Manifest | undefined;
  try {
    old = readManifest(dir);
  } catch {
    old = undefined;
  }
  const config: CollectionConfig | undefined = readIdentity(dir)?.config ?? old?.config;
  const name = old?.name ?? readIdentity(dir)?.name ?? path.basename(dir);
  if (!config) {
    throw new WinnowError(
      'not_found',
      `${dir} is not a Winnow collection that can be repaired (no readable ${MANIFEST} or ${IDENTITY})`,
      'repair needs the collection configuration; rebuild the collection with `winnow index NAME --corpus FILE`',
    );
  }
  const lock = WriterLock.acquireSync(dir, opts);
  try {
    const report: RepairReport = { generation: 0, documents: 0, recovered: [], skipped: [], duplicates: 0 };
    const names = fs.readdirSync(dir).sort();
    let generation = old?.generation ?? 0;
    for (const f of names) {
      const g = GENERATION.exec(f);
      if (g) generation = Math.max(generation, Number(g[1] ?? g[2]));
    }

    const candidates: Candidate[] = [];
    for (const f of names) {
      const m = SEGMENT_FILE.exec(f);
      if (!m) continue;
      const id = Number(m[1]);
      try {
        candidates.push(provenSegment(dir, id, config, names));
      } catch (e) {
        report.skipped.push({ file: f, reason: e instanceof Error ? e.message : String(e) });
      }
    }
    // A merge's output replaces its inputs; keeping both would count their documents twice.
    const replaced = new Set(candidates.flatMap((c) => c.mergedFrom));
    const kept = candidates.filter((c) => {
      if (!replaced.has(c.entry.id)) return true;
      report.skipped.push({ file: c.entry.bm25, reason: 'merged into a later segment that is intact' });
      return false;
    });

    const next: Manifest = {
      format: COLLECTION_FORMAT,
      version: COLLECTION_VERSION,
      name,
      generation: generation + 1,
      config,
      nextKey: 0,
      nextSegment: 1,
      segments: [],
      ann: null,
      files: {},
    };
    if (fs.existsSync(path.join(dir, IDENTITY))) next.files[IDENTITY] = { bytes: fs.statSync(path.join(dir, IDENTITY)).size, sha256: hashFile(path.join(dir, IDENTITY)) };
    const journal = new Journal(dir, next.generation);
    try {
      // Tombstones: the committed ones when the old manifest is readable, else the newest that parse.
      const dead = new Map<number, Set<number>>();
      for (const c of kept) {
        const set = new Set<number>();
        const fromOld = old?.segments.find((s) => s.id === c.entry.id && s.seal === c.entry.seal)?.deletes;
        const newestFirst = names.filter((f) => TOMBSTONES.exec(f)?.[1] === String(c.entry.id).padStart(6, '0')).reverse();
        const files = fromOld ? [fromOld, ...newestFirst.filter((f) => f !== fromOld)] : newestFirst;
        for (const f of files) {
          const locals = readTombstones(path.join(dir, f), c.entry.docs);
          if (locals) {
            for (const d of locals) set.add(d);
            break;
          }
          report.skipped.push({ file: f, reason: 'tombstone file is damaged' });
        }
        dead.set(c.entry.id, set);
      }
      // The newest copy of an id wins (a write that replaced it may not have left tombstones).
      const seen = new Set<string>();
      for (const c of [...kept].sort((a, b) => b.entry.id - a.entry.id)) {
        const set = dead.get(c.entry.id)!;
        c.docIds.forEach((id, d) => {
          if (set.has(d)) return;
          if (seen.has(id)) {
            set.add(d);
            report.duplicates++;
          } else seen.add(id);
        });
      }
      // Added models' vectors come back with each segment whose vector seal proves them.
      const models = new Map<string, StoredModel>((old?.models ?? []).map((m) => [m.id, m]));
      for (const c of kept) {
        const { found, skipped } = provenModelVectors(dir, c.entry.id, c.entry.docs, names);
        report.skipped.push(...skipped);
        for (const v of found) {
          const known = models.get(v.model.id);
          if (known && known.dim !== v.model.dim) {
            report.skipped.push({ file: v.seal, reason: `model "${v.model.id}" has dimension ${known.dim} elsewhere, ${v.model.dim} here` });
            continue;
          }
          if (!known) models.set(v.model.id, v.model);
          (c.entry.models ??= {})[v.model.id] = { vectors: v.vectors, seal: v.seal };
        }
      }
      const stored = [...models.values()].filter((m) => kept.some((c) => c.entry.models?.[m.id]));
      if (stored.length > 0) next.models = stored;
      for (const c of kept.sort((a, b) => a.entry.id - b.entry.id)) {
        const entry = c.entry;
        for (const f of [entry.bm25, entry.store, entry.meta, entry.vectors, entry.seal, ...Object.values(entry.models ?? {}).flatMap((v) => [v.vectors, v.seal])]) {
          if (f) next.files[f] = { bytes: fs.statSync(path.join(dir, f)).size, sha256: hashFile(path.join(dir, f)) };
        }
        const set = dead.get(entry.id)!;
        if (set.size > 0) writeTombstones(dir, entry, Int32Array.from([...set].sort((a, b) => a - b)), next.generation, next.files, journal);
        next.nextSegment = Math.max(next.nextSegment, entry.id + 1);
        for (const k of c.keys) next.nextKey = Math.max(next.nextKey, k + 1);
        if (entry.deleted >= entry.docs) continue;
        next.segments.push(entry);
        report.recovered.push({ segment: entry.id, docs: entry.docs, live: entry.docs - entry.deleted, how: c.how });
      }
      updateAnn(dir, { ann: null, nextKey: 0, nextSegment: 0 }, next, [], journal);
      next.files = filesOf(next);
      lock.check();
      commitManifest(dir, next);
      rememberVerified(dir, next.files);
    } finally {
      journal.close(readManifest(dir));
    }
    report.generation = next.generation;
    report.documents = next.segments.reduce((n, s) => n + s.docs - s.deleted, 0);
    return report;
  } finally {
    lock.release();
  }
}

/** A segment whose files all check out, or an Error saying which does not. */
function provenSegment(dir: string, id: number, config: CollectionConfig, names: string[]): Candidate {
  const stem = `seg-${String(id).padStart(6, '0')}`;
  const at = (f: string): string => path.join(dir, f);
  let seal: Seal | undefined;
  if (names.includes(sealName(id))) {
    try {
      seal = JSON.parse(fs.readFileSync(at(sealName(id)), 'utf8')) as Seal;
    } catch {
      throw new Error(`its seal ${sealName(id)} is not valid JSON`);
    }
    if (seal?.format !== SEAL_FORMAT || seal.id !== id) throw new Error(`${sealName(id)} is not this segment's seal`);
    for (const f of Object.values(seal.files)) {
      if (!f) continue;
      if (!fs.existsSync(at(f.name))) throw new Error(`${f.name} is missing`);
      const e: FileEntry = { bytes: fs.statSync(at(f.name)).size, sha256: '' };
      if (e.bytes !== f.bytes) throw new Error(`${f.name} has ${e.bytes} bytes, its seal says ${f.bytes}`);
      if (hashFile(at(f.name)) !== f.sha256) throw new Error(`${f.name} fails its sha256 (its seal's checksum)`);
    }
  }
  const bm25 = `${stem}.bm25`;
  const store = `${stem}.docs`;
  const meta = `${stem}.meta`;
  const vectors = config.model ? `${stem}.vec` : null;
  for (const f of [store, meta, vectors]) if (f && !names.includes(f)) throw new Error(`${f} is missing`);
  let data: ReturnType<typeof readIndexFile>;
  try {
    data = readIndexFile(at(bm25));
  } catch (e) {
    throw new Error(e instanceof WinnowError ? e.message : `${bm25} cannot be read`);
  }
  const docs = data.docIds.length;
  if (seal && seal.docs !== docs) throw new Error(`${bm25} holds ${docs} documents, its seal says ${seal.docs}`);
  let offsets: Float64Array;
  let keys: Float64Array;
  try {
    ({ offsets, keys } = readMeta(at(meta), docs));
  } catch (e) {
    throw new Error(e instanceof Error ? e.message : `${meta} cannot be read`);
  }
  if (fs.statSync(at(store)).size !== offsets[docs]) throw new Error(`${store} does not match the offsets in ${meta}`);
  if (vectors && fs.statSync(at(vectors)).size !== docs * config.model!.dim * 4) throw new Error(`${vectors} has the wrong length for ${docs} vectors of dimension ${config.model!.dim}`);
  return {
    entry: { id, docs, bm25, store, meta, vectors, deletes: null, deleted: 0, seal: seal ? sealName(id) : undefined },
    docIds: data.docIds,
    keys,
    mergedFrom: seal?.mergedFrom ?? [],
    how: seal ? 'seal' : 'structure',
  };
}

function readTombstones(file: string, docs: number): Int32Array | undefined {
  const size = fs.statSync(file).size;
  if (size % 4 !== 0) return undefined;
  const locals = readInt32s(file);
  for (let i = 0; i < locals.length; i++) if (locals[i] < 0 || locals[i] >= docs || (i > 0 && locals[i] <= locals[i - 1])) return undefined;
  return locals;
}
