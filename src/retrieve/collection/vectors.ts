import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { WinnowError } from '../../core/errors.js';
import type { Doc } from '../../core/types.js';
import { toMatrix, type Embedder } from '../dense/embedder.js';
import { REBUILD_HINT, bytesOf, hashFile, writeDurable, type FileEntry } from './files.js';
import type { Journal } from './journal.js';
import { pad, type SegmentEntry, type StoredModel } from './manifest.js';

/** A document's place: segment number in the manifest's list and local document number. */
export type Loc = number;
const SEG_SHIFT = 2 ** 32;
/** live id -> location (the open generation's id table) */
export interface IdLookup {
  get(id: string): Loc | undefined;
}

export const locOf = (seg: number, doc: number): Loc => seg * SEG_SHIFT + doc;
export const segOf = (loc: Loc): number => Math.floor(loc / SEG_SHIFT);
export const docOf = (loc: Loc): number => loc % SEG_SHIFT;

export const VECTOR_SEAL_FORMAT = 'winnow-vectors';

/**
 * The record written next to an added model's vector file: which model, how many rows, and
 * the file's checksum. It is the segment-level proof `--repair` reads, as a segment's seal is
 * for its other files (a seal is never rewritten, so added vectors get their own).
 */
export interface VectorSeal {
  format: typeof VECTOR_SEAL_FORMAT;
  segment: number;
  docs: number;
  model: StoredModel;
  file: FileEntry & { name: string };
}

/** `seg-000001.m-<8 hex of the model id>`: one name per segment and model, safe in any folder. */
function stemOf(segId: number, modelId: string): string {
  return `seg-${pad(segId)}.m-${createHash('sha256').update(modelId).digest('hex').slice(0, 8)}`;
}

export const VECTOR_SEAL_FILE = /^seg-(\d{6})\.m-[0-9a-f]{8}\.vseal$/;

/**
 * Embeds documents in batches into one row-major matrix [docs.length, dim], as the model
 * returns them (a model that normalises does so itself; scores are computed as its scorer does).
 */
export async function embedMatrix(embedder: Embedder, docs: readonly Doc[], dim: number, onBatch?: (n: number) => void): Promise<Float32Array> {
  const vectors = new Float32Array(docs.length * dim);
  const BATCH = 64;
  for (let i = 0; i < docs.length; i += BATCH) {
    const part = docs.slice(i, i + BATCH);
    vectors.set(toMatrix(await embedder.embedDocs(part), part.length, dim, `model "${embedder.id}"`), i * dim);
    onBatch?.(part.length);
  }
  return vectors;
}

/** Writes one segment's vectors of an added model and their seal; journaled, recorded in `files`. */
export function writeModelVectors(
  dir: string,
  segId: number,
  docs: number,
  model: StoredModel,
  vectors: Float32Array,
  files: Record<string, FileEntry>,
  journal: Journal,
): { vectors: string; seal: string } {
  if (vectors.length !== docs * model.dim) throw new WinnowError('internal', `segment ${segId}: ${vectors.length} numbers for ${docs} vectors of dimension ${model.dim}`);
  const stem = stemOf(segId, model.id);
  const names = { vectors: `${stem}.vec`, seal: `${stem}.vseal` };
  journal.creating(names.vectors, names.seal);
  files[names.vectors] = writeDurable(dir, names.vectors, [bytesOf(vectors)]);
  const seal: VectorSeal = { format: VECTOR_SEAL_FORMAT, segment: segId, docs, model, file: { name: names.vectors, ...files[names.vectors] } };
  files[names.seal] = writeDurable(dir, names.seal, [Buffer.from(`${JSON.stringify(seal, null, 1)}\n`, 'utf8')]);
  return names;
}

/**
 * The added-model vectors of a segment that prove themselves (seal parses, names this segment
 * and its document count, the vector file has the seal's size and sha256), for `--repair`;
 * the others are returned as skipped with the reason.
 */
export function provenModelVectors(
  dir: string,
  segId: number,
  docs: number,
  names: readonly string[],
): { found: { model: StoredModel; vectors: string; seal: string }[]; skipped: { file: string; reason: string }[] } {
  const found: { model: StoredModel; vectors: string; seal: string }[] = [];
  const skipped: { file: string; reason: string }[] = [];
  for (const f of names) {
    const m = VECTOR_SEAL_FILE.exec(f);
    if (!m || Number(m[1]) !== segId) continue;
    try {
      let seal: VectorSeal;
      try {
        seal = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as VectorSeal;
      } catch {
        throw new Error('the vector seal is not valid JSON');
      }
      const model = seal?.model;
      if (seal?.format !== VECTOR_SEAL_FORMAT || seal.segment !== segId || typeof model?.id !== 'string' || !(model.dim > 0) || typeof seal.file?.name !== 'string') {
        throw new Error("it is not this segment's vector seal");
      }
      if (seal.docs !== docs) throw new Error(`it records ${seal.docs} vectors, the segment holds ${docs} documents`);
      const file = seal.file.name;
      if (file !== f.replace(/\.vseal$/, '.vec')) throw new Error(`it names ${file}, not its own vector file`);
      const at = path.join(dir, file);
      if (!fs.existsSync(at)) throw new Error(`${file} is missing`);
      const bytes = fs.statSync(at).size;
      if (bytes !== seal.file.bytes || bytes !== docs * model.dim * 4) throw new Error(`${file} has ${bytes} bytes, its seal says ${seal.file.bytes} (${docs} x ${model.dim} floats)`);
      if (hashFile(at) !== seal.file.sha256) throw new Error(`${file} fails its sha256 (its seal's checksum)`);
      found.push({ model: { ref: model.ref, id: model.id, dim: model.dim }, vectors: file, seal: f });
    } catch (e) {
      skipped.push({ file: f, reason: e instanceof Error ? e.message : String(e) });
    }
  }
  return { found, skipped };
}

/** One segment's matrix of one model, read on first use through a descriptor opened with the generation. */
export class SegmentVectors {
  private fd?: number;
  private sq?: Float64Array;

  constructor(
    readonly file: string,
    readonly rows: number,
    readonly dim: number,
    /** the matrix when it is in memory already (the build model's vectors) */
    private matrix?: Float32Array,
  ) {}

  /** Opened with the generation: a later writer's clean-up may unlink the file, the descriptor keeps it. */
  open(): void {
    if (!this.matrix) this.fd ??= fs.openSync(this.file, 'r');
  }

  get vectors(): Float32Array {
    if (!this.matrix) {
      this.open();
      const m = new Float32Array(this.rows * this.dim);
      const buf = Buffer.from(m.buffer);
      let off = 0;
      while (off < buf.length) {
        const n = fs.readSync(this.fd!, buf, off, buf.length - off, off);
        if (n === 0) throw new WinnowError('corrupt_index', `vector file ${this.file} is shorter than ${this.rows} x ${this.dim} floats`, REBUILD_HINT);
        off += n;
      }
      this.matrix = m;
    }
    return this.matrix;
  }

  /** squared norm per row, computed once: cosine then costs one dot product per pair */
  get sqNorms(): Float64Array {
    if (!this.sq) {
      const m = this.vectors;
      const d = this.dim;
      const sq = new Float64Array(this.rows);
      for (let r = 0; r < this.rows; r++) {
        let s = 0;
        for (let k = r * d, end = k + d; k < end; k++) s += m[k] * m[k];
        sq[r] = s;
      }
      this.sq = sq;
    }
    return this.sq;
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

/**
 * The document vectors a collection stores for one model, addressed by document id: what a
 * bi-encoder stage reads instead of embedding candidates. The id → (segment, row) index is
 * the collection's own, built once per open.
 */
export class StoredVectors {
  constructor(
    readonly model: StoredModel,
    private readonly ids: IdLookup,
    /** per segment, in the collection's order; undefined where the segment lacks the model */
    readonly segments: readonly (SegmentVectors | undefined)[],
  ) {}

  get dim(): number {
    return this.model.dim;
  }

  /**
   * Fills `seg` and `row` for each id (seg -1 when the document is not in the collection or
   * its segment has no vectors of this model); returns how many were found.
   */
  locate(docIds: readonly string[], seg: Int32Array, row: Int32Array): number {
    let found = 0;
    for (let i = 0; i < docIds.length; i++) {
      const loc = this.ids.get(docIds[i]);
      const s = loc === undefined ? -1 : segOf(loc);
      if (s < 0 || !this.segments[s]) {
        seg[i] = -1;
        continue;
      }
      seg[i] = s;
      row[i] = docOf(loc!);
      found++;
    }
    return found;
  }
}

/** The added models every segment of `segments` holds (what a merge can carry over). */
export function sharedModels(segments: readonly SegmentEntry[]): Set<string> {
  const out = new Set<string>(Object.keys(segments[0]?.models ?? {}));
  for (const s of segments) for (const id of out) if (!s.models?.[id]) out.delete(id);
  return out;
}
