import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { WinnowError } from '../../core/errors.js';
import type { Bm25Params } from '../bm25/similarity.js';
import type { AnnParams } from '../dense/ann.js';
import { REBUILD_HINT, fsyncDir, writeDurable, type FileEntry } from './files.js';

export const COLLECTION_FORMAT = 'winnow-collection';
export const COLLECTION_VERSION = 1;
export const MANIFEST = 'manifest.json';
/**
 * Written once when a collection is created and never changed: it is what makes a folder
 * Winnow's (a folder without it or a manifest is never written into, never cleaned up), and it
 * keeps the configuration when the manifest is lost, so `--repair` can rebuild one.
 */
export const IDENTITY = 'winnow-collection.json';

/** Everything fixed when a collection is created. */
export interface CollectionConfig {
  bm25: Bm25Params;
  stem: boolean;
  stopWords: boolean;
  lossyNorms: boolean;
  /** the bi-encoder the vectors come from; null: a BM25-only collection */
  model: StoredModel | null;
  ann: AnnParams;
  /** documents per segment: the bound on what one add holds in memory before flushing */
  segmentDocs: number;
  /** more segments than this after a write: the smallest are merged into one */
  maxSegments: number;
}

export interface SegmentEntry {
  id: number;
  docs: number;
  bm25: string;
  store: string;
  meta: string;
  vectors: string | null;
  /** tombstones (sorted local doc numbers, Int32), null when none */
  deletes: string | null;
  deleted: number;
  /** the segment's own record of its files (absent in collections written before seals) */
  seal?: string;
  /**
   * vectors of models added after creation (`--add-model`), by model id: the matrix file and
   * its own seal (model, dimension, checksum), which is what lets `--repair` keep them
   */
  models?: Record<string, { vectors: string; seal: string }>;
}

/** A bi-encoder whose document vectors a collection stores besides (or instead of) `config.model`. */
export interface StoredModel {
  /** how to find the model again (a path or a model ref) */
  ref: string;
  /** the scorer id: every setting that changes the vectors */
  id: string;
  dim: number;
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
  /** models added with `--add-model`; every later write embeds its documents with them too */
  models?: StoredModel[];
  files: Record<string, FileEntry>;
}

export interface Identity {
  format: typeof COLLECTION_FORMAT;
  version: number;
  name: string;
  created: string;
  config: CollectionConfig;
}

export function pad(n: number): string {
  return String(n).padStart(6, '0');
}

/** The files a manifest names, with their recorded entries (sizes and checksums). */
export function filesOf(m: Manifest): Record<string, FileEntry> {
  const names: string[] = [];
  if (m.files[IDENTITY]) names.push(IDENTITY);
  for (const s of m.segments) {
    names.push(s.bm25, s.store, s.meta);
    if (s.vectors) names.push(s.vectors);
    if (s.deletes) names.push(s.deletes);
    if (s.seal) names.push(s.seal);
    for (const v of Object.values(s.models ?? {})) names.push(v.vectors, v.seal);
  }
  if (m.ann) names.push(m.ann);
  const out: Record<string, FileEntry> = {};
  for (const n of names) {
    const e = m.files[n];
    if (!e) throw new WinnowError('internal', `manifest names ${n} without a checksum`);
    out[n] = e;
  }
  return out;
}

export function commitManifest(dir: string, m: Manifest): void {
  writeDurable(dir, MANIFEST, [Buffer.from(`${JSON.stringify(m, null, 1)}\n`, 'utf8')]);
  fsyncDir(dir);
}

export function readManifest(dir: string): Manifest {
  const file = path.join(dir, MANIFEST);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    if (fs.existsSync(path.join(dir, IDENTITY))) {
      throw new WinnowError(
        'corrupt_index',
        `collection ${dir} has lost its ${MANIFEST} (its segment files are still there)`,
        `rebuild the manifest from the intact segments with \`winnow index ${dir} --repair\``,
      );
    }
    throw new WinnowError('not_found', `no collection in ${dir} (${MANIFEST} not found)`, 'create it with `winnow index NAME --corpus FILE`');
  }
  let m: Manifest;
  try {
    m = JSON.parse(text) as Manifest;
  } catch {
    throw new WinnowError('corrupt_index', `collection manifest ${file} is not valid JSON`, repairHint(dir));
  }
  if (m === null || m.format !== COLLECTION_FORMAT || !Array.isArray(m.segments) || typeof m.files !== 'object') {
    throw new WinnowError('corrupt_index', `${file} is not a Winnow collection manifest`, repairHint(dir));
  }
  if (m.version !== COLLECTION_VERSION) {
    throw new WinnowError('version_mismatch', `collection ${dir} has format version ${m.version}, this Winnow reads version ${COLLECTION_VERSION}`, 'rebuild it with this version');
  }
  return m;
}

export function repairHint(dir: string): string {
  return `\`winnow index ${dir} --repair\` rebuilds the manifest from the intact segments; else ${REBUILD_HINT}`;
}

export function writeIdentity(dir: string, id: Identity): FileEntry {
  const entry = writeDurable(dir, IDENTITY, [Buffer.from(`${JSON.stringify(id, null, 1)}\n`, 'utf8')]);
  fsyncDir(dir);
  return entry;
}

export function readIdentity(dir: string): Identity | undefined {
  let text: string;
  try {
    text = fs.readFileSync(path.join(dir, IDENTITY), 'utf8');
  } catch {
    return undefined;
  }
  try {
    const id = JSON.parse(text) as Identity;
    return id?.format === COLLECTION_FORMAT && typeof id.config === 'object' ? id : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Refuses to make a collection where it could hurt: a folder is only written into when it is
 * new, empty, or already says it is Winnow's (and then `create` refuses because one exists).
 */
export function checkCreatable(dir: string, ownLock: string[] = []): void {
  if (fs.existsSync(path.join(dir, MANIFEST))) {
    throw new WinnowError('bad_input', `a collection already exists in ${dir}`, 'add to it with `winnow index NAME --add FILE`, or delete the folder first');
  }
  if (fs.existsSync(path.join(dir, IDENTITY))) {
    throw new WinnowError(
      'bad_input',
      `${dir} holds a Winnow collection whose ${MANIFEST} is missing; creating a new one there could destroy it`,
      `rebuild its manifest with \`winnow index ${dir} --repair\`, or delete the folder yourself if it is not wanted`,
    );
  }
  let entries: string[];
  try {
    const st = fs.statSync(dir);
    if (!st.isDirectory()) throw new WinnowError('bad_input', `${dir} exists and is not a folder`, 'give a new folder for the collection');
    entries = fs.readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  // Under our own lock the folder holds the lock and other writers' lock attempts.
  if (ownLock.length) entries = entries.filter((e) => !ownLock.some((l) => e === l || e.startsWith(`${l}.`) || e.startsWith(`.${l}.`)));
  if (entries.length > 0) {
    const shown = entries.slice(0, 3).join(', ') + (entries.length > 3 ? `, … (${entries.length} entries)` : '');
    throw new WinnowError(
      'bad_input',
      `refusing to create a collection in ${dir}: the folder is not empty (${shown}) and is not a Winnow collection`,
      `a collection owns its folder; give a new or empty one, e.g. ${path.join(dir, 'collection')} or a plain NAME (kept under $WINNOW_HOME/collections)`,
    );
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
