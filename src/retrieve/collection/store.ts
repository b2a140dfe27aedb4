import * as fs from 'node:fs';
import { WinnowError } from '../../core/errors.js';
import type { Doc } from '../../core/types.js';
import { REBUILD_HINT } from './files.js';

/**
 * A segment's side files besides BM25:
 * - `.docs`: the documents as JSON lines (`{"id","title"?,"text"}`), for rerankers that need text;
 * - `.meta`: magic "WNSEGMT1", u32 count, u32 0, then f64 line offsets [count + 1] and f64 document
 *   keys [count]. Keys are the collection-wide numbers the ANN graph is keyed by; they survive
 *   merges, so merging segments never touches the graph.
 */
const META_MAGIC = Buffer.from('WNSEGMT1', 'latin1');

export function encodeDocs(docs: readonly Doc[]): { chunks: Buffer[]; offsets: Float64Array } {
  const offsets = new Float64Array(docs.length + 1);
  const chunks: Buffer[] = [];
  let at = 0;
  for (let i = 0; i < docs.length; i++) {
    const d = docs[i];
    const line = Buffer.from(`${JSON.stringify(d.title ? { id: d.id, title: d.title, text: d.text } : { id: d.id, text: d.text })}\n`, 'utf8');
    offsets[i] = at;
    at += line.length;
    chunks.push(line);
  }
  offsets[docs.length] = at;
  return { chunks, offsets };
}

export function encodeMeta(offsets: Float64Array, keys: Float64Array): Uint8Array[] {
  const header = Buffer.alloc(16);
  META_MAGIC.copy(header, 0);
  header.writeUInt32LE(keys.length, 8);
  return [header, new Uint8Array(offsets.buffer, offsets.byteOffset, offsets.byteLength), new Uint8Array(keys.buffer, keys.byteOffset, keys.byteLength)];
}

export function readMeta(file: string, expectedDocs: number): { offsets: Float64Array; keys: Float64Array } {
  const raw = fs.readFileSync(file);
  const n = raw.length >= 16 ? raw.readUInt32LE(8) : -1;
  if (raw.length < 16 || !raw.subarray(0, 8).equals(META_MAGIC) || n !== expectedDocs || raw.length !== 16 + 8 * (2 * n + 1)) {
    throw new WinnowError('corrupt_index', `segment metadata ${file} is corrupt (bad header or length)`, REBUILD_HINT);
  }
  const buf = new Float64Array(2 * n + 1);
  Buffer.from(buf.buffer).set(raw.subarray(16));
  return { offsets: buf.subarray(0, n + 1), keys: buf.subarray(n + 1) };
}

/** Random access to one segment's documents by local number, through one open descriptor. */
export class DocStore {
  private fd?: number;
  constructor(
    readonly file: string,
    private readonly offsets: Float64Array,
  ) {}

  open(): void {
    this.fd ??= fs.openSync(this.file, 'r');
  }

  get(local: number): Doc {
    this.fd ??= fs.openSync(this.file, 'r');
    const start = this.offsets[local];
    const len = this.offsets[local + 1] - start;
    const buf = Buffer.allocUnsafe(len);
    fs.readSync(this.fd, buf, 0, len, start);
    try {
      return JSON.parse(buf.toString('utf8')) as Doc;
    } catch {
      throw new WinnowError('corrupt_index', `document store ${this.file} is corrupt at byte ${start}`, REBUILD_HINT);
    }
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}
