import * as fs from 'node:fs';
import { crc32 } from 'node:zlib';
import type { LRUCache } from 'lru-cache';
import { WinnowError } from '../../core/errors.js';
import { hashBytes } from '../ids.js';
import {
  analyzerFlags,
  checkVersion,
  corruptIndex,
  FORMAT_VERSION,
  HEADER_BYTES,
  openFailure,
  parseHeader,
  readIndexFile,
  residentV2,
  type Bm25Data,
  type Bm25Header,
  type ResidentV2,
} from './format.js';
import type { Bm25Params } from './similarity.js';

/** One term's postings in one segment: internal doc numbers (ascending) and term frequencies. */
export interface Postings {
  docs: Int32Array;
  tfs: Int32Array;
}

/**
 * What segmented BM25 reads from one segment's index file. Two implementations: `PagedBm25File`
 * (version 2 files: dictionary resident, postings read on demand) and `MemoryBm25File` (a file
 * read whole: version 1 files, and the in-memory reference the paged reader is tested against).
 */
export interface Bm25Source {
  readonly file: string;
  readonly params: Bm25Params;
  readonly stem: boolean;
  readonly stopWords: boolean;
  readonly lossyNorms: boolean;
  readonly numDocs: number;
  /** terms per document; resident */
  readonly docLens: Int32Array;
  /** the term's number in this file, or -1 */
  termId(term: string): number;
  /** number of postings of term `t` (its df in this file, deletes not subtracted) */
  postingCount(t: number): number;
  postings(t: number): Postings;
  docId(d: number): string;
  /** the hash of doc `d`'s id bytes (`hashBytes`), and whether they equal `key`: id tables use them without making strings */
  docIdHash(d: number): number;
  docIdEquals(d: number, key: Uint8Array): boolean;
  close(): void;
}

/** Shared by the files of one open generation: bounded by the bytes of the blocks it holds. */
export type PostingsCache = LRUCache<string, Postings>;

export const postingsBytes = (p: Postings): number => p.docs.byteLength + p.tfs.byteLength + 64;

/**
 * A version 2 index file opened for search without reading its postings: the resident part
 * (lengths, dictionary, doc ids: about 1/20 of a segment file) is read and crc-checked at
 * open; a term's postings block is read with one positioned read when a query first needs it,
 * checked against its crc32, and kept in the generation's LRU cache. The file descriptor stays
 * open, so a writer unlinking the file after a newer commit does not break this reader.
 *
 * The whole file's sha256 is still checked by the collection before opening (cached per file
 * stamp in verified.json); the per-block crc catches a block that changed afterwards.
 */
export class PagedBm25File implements Bm25Source {
  readonly params: Bm25Params;
  readonly stem: boolean;
  readonly stopWords: boolean;
  readonly lossyNorms: boolean;
  readonly numDocs: number;
  readonly docLens: Int32Array;
  private readonly r: ResidentV2;
  private readonly h: Bm25Header;
  private fd: number;
  private readonly prefix: string;
  private readonly scratch = Buffer.alloc(256);

  constructor(
    readonly file: string,
    private readonly cache: PostingsCache,
    /** distinguishes this file's blocks from other files' in the shared cache */
    key: string,
  ) {
    try {
      this.fd = fs.openSync(file, 'r');
    } catch (err) {
      throw openFailure(file, err);
    }
    try {
      const head = Buffer.alloc(HEADER_BYTES);
      const got = fs.readSync(this.fd, head, 0, HEADER_BYTES, 0);
      const version = checkVersion(file, head.subarray(0, got));
      if (version !== FORMAT_VERSION) throw new WinnowError('internal', `PagedBm25File needs format version ${FORMAT_VERSION}, ${file} has ${version}`);
      if (got < HEADER_BYTES) throw corruptIndex(file, `truncated: ${got} bytes, shorter than the header`);
      this.h = parseHeader(head);
      const size = fs.fstatSync(this.fd).size;
      if (size !== this.h.fileLength) throw corruptIndex(file, `truncated or padded: ${size} bytes, the header says ${this.h.fileLength}`);
      const postingsOffset = head.readDoubleLE(80);
      if (!(postingsOffset >= HEADER_BYTES && postingsOffset <= size)) throw corruptIndex(file, `bad postings offset ${postingsOffset}`);
      // A fresh ArrayBuffer is 8-aligned, which the typed-array views need.
      const resident = Buffer.from(new ArrayBuffer(postingsOffset));
      this.readAt(resident, 0);
      this.r = residentV2(file, resident, this.h);
    } catch (e) {
      fs.closeSync(this.fd);
      throw e;
    }
    this.params = this.h.params;
    ({ stem: this.stem, stopWords: this.stopWords, lossyNorms: this.lossyNorms } = analyzerFlags(this.h.flags));
    this.numDocs = this.h.numDocs;
    this.docLens = this.r.docLens;
    this.prefix = `${key}:`;
  }

  private readAt(into: Buffer, position: number): void {
    if (this.fd < 0) throw new WinnowError('internal', `BM25 segment ${this.file} was read after its generation was closed`);
    for (let done = 0; done < into.length; ) {
      const n = fs.readSync(this.fd, into, done, into.length - done, position + done);
      if (n === 0) throw corruptIndex(this.file, `truncated while reading ${into.length} bytes at ${position}`);
      done += n;
    }
  }

  termId(term: string): number {
    let bytes = this.scratch;
    let len = bytes.write(term, 0, 'utf8');
    if (len >= bytes.length - 3) {
      // write() stops at the buffer's end: a long term is encoded whole instead
      bytes = Buffer.from(term, 'utf8');
      len = bytes.length;
    }
    const { termStarts, termBlob } = this.r;
    let lo = 0;
    let hi = this.h.numTerms - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const c = termBlob.compare(bytes, 0, len, termStarts[mid], termStarts[mid + 1]);
      if (c === 0) return mid;
      if (c < 0) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  postingCount(t: number): number {
    return this.r.postingStarts[t + 1] - this.r.postingStarts[t];
  }

  postings(t: number): Postings {
    const key = this.prefix + t;
    const hit = this.cache.get(key);
    if (hit) return hit;
    const n = this.postingCount(t);
    const block = new ArrayBuffer(n * 8);
    const bytes = Buffer.from(block);
    this.readAt(bytes, this.r.postingsOffset + this.r.postingStarts[t] * 8);
    if (crc32(bytes) !== this.r.blockCrcs[t]) {
      const term = this.r.termBlob.toString('utf8', this.r.termStarts[t], this.r.termStarts[t + 1]);
      throw new WinnowError(
        'corrupt_index',
        `BM25 index ${this.file} is corrupt: the postings of term "${term}" fail their crc32 (the file was modified or damaged after it was opened)`,
        'run `winnow index --repair`, or rebuild the index from the corpus',
      );
    }
    const p = { docs: new Int32Array(block, 0, n), tfs: new Int32Array(block, n * 4, n) };
    this.cache.set(key, p);
    return p;
  }

  docId(d: number): string {
    return this.r.docIdBlob.toString('utf8', this.r.docIdStarts[d], this.r.docIdStarts[d + 1]);
  }

  docIdHash(d: number): number {
    return hashBytes(this.r.docIdBlob, this.r.docIdStarts[d], this.r.docIdStarts[d + 1]);
  }

  docIdEquals(d: number, key: Uint8Array): boolean {
    return this.r.docIdBlob.compare(key, 0, key.length, this.r.docIdStarts[d], this.r.docIdStarts[d + 1]) === 0;
  }

  close(): void {
    if (this.fd < 0) return;
    fs.closeSync(this.fd);
    this.fd = -1;
  }
}

/** A whole index file in memory (version 1 files, and the reference the paged reader is checked against). */
export class MemoryBm25File implements Bm25Source {
  readonly params: Bm25Params;
  readonly stem: boolean;
  readonly stopWords: boolean;
  readonly lossyNorms: boolean;
  readonly numDocs: number;
  readonly docLens: Int32Array;
  private readonly termIds = new Map<string, number>();

  constructor(
    readonly file: string,
    readonly data: Bm25Data = readIndexFile(file),
  ) {
    ({ params: this.params, stem: this.stem, stopWords: this.stopWords, lossyNorms: this.lossyNorms, docLens: this.docLens } = data);
    this.numDocs = data.docIds.length;
    for (let t = 0; t < data.terms.length; t++) this.termIds.set(data.terms[t], t);
  }

  termId(term: string): number {
    return this.termIds.get(term) ?? -1;
  }

  postingCount(t: number): number {
    return this.data.postingStarts[t + 1] - this.data.postingStarts[t];
  }

  postings(t: number): Postings {
    const { postingStarts: s, postingDocs, postingTfs } = this.data;
    return { docs: postingDocs.subarray(s[t], s[t + 1]), tfs: postingTfs.subarray(s[t], s[t + 1]) };
  }

  docId(d: number): string {
    return this.data.docIds[d];
  }

  docIdHash(d: number): number {
    return hashBytes(Buffer.from(this.data.docIds[d], 'utf8'));
  }

  docIdEquals(d: number, key: Uint8Array): boolean {
    return Buffer.from(this.data.docIds[d], 'utf8').equals(key);
  }

  close(): void {}
}

/** Opens a segment's index file: paged when it is version 2, whole when it is an older version. */
export function openBm25Source(file: string, cache: PostingsCache, key: string): Bm25Source {
  let version: number;
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const head = Buffer.alloc(12);
      version = checkVersion(file, head.subarray(0, fs.readSync(fd, head, 0, 12, 0)));
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    throw err instanceof WinnowError ? err : openFailure(file, err);
  }
  return version === FORMAT_VERSION ? new PagedBm25File(file, cache, key) : new MemoryBm25File(file);
}
