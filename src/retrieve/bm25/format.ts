import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { WinnowError } from '../../core/errors.js';
import type { Bm25Params } from './similarity.js';
import { tmpNameOf } from '../collection/files.js';

/**
 * The on-disk BM25 index. One file, little-endian, every array section starting on an 8-byte
 * boundary so a reader can view the arrays in place instead of parsing them.
 *
 * Version 2 (written now) is laid out to be opened without reading the postings: everything a
 * search needs before it touches a term ("resident": header, lengths, dictionary, doc ids) comes
 * first with its own crc32, then each term's postings as one block with its own crc32, so a
 * reader pages in (and checks) only the blocks its queries touch (paged.ts):
 *
 *   header (96 bytes): magic "WNBM25\0\0", u32 version, u32 flags, f64 k1, f64 b,
 *     u32 numDocs, u32 numTerms, f64 numPostings, u32 emptyDocs, u32 0, f64 sumDocLen,
 *     f64 fileLength, u32 docIdBytes, u32 termBytes, f64 postingsOffset, u32 residentCrc, u32 0
 *   docLens        Int32[numDocs]        terms per document after analysis
 *   postingStarts  Uint32[numTerms + 1]  CSR row starts, in postings
 *   blockCrcs      Uint32[numTerms]      crc32 of each term's postings block
 *   docIdStarts    Uint32[numDocs + 1]   byte offsets into docIdBlob
 *   termStarts     Uint32[numTerms + 1]  byte offsets into termBlob
 *   docIdBlob      UTF-8, all doc ids concatenated
 *   termBlob       UTF-8, all terms concatenated in byte order (term id = rank), so a lookup
 *                  is a binary search over bytes and opening builds no map of strings
 *   postings       at postingsOffset: per term t, Int32 docs[n] then Int32 tfs[n], n =
 *                  postingStarts[t+1] - postingStarts[t], at byte postingsOffset + 8 * postingStarts[t]
 *   trailer        sha256 of every byte before it
 *
 * residentCrc is the crc32 of the header's first 88 bytes and of every section before the
 * postings. Version 1 (one sha256, postings in two sections, terms in first-seen order, UTF-16
 * offsets) is still read whole by `readIndexFile`.
 *
 * Raw term frequencies are stored, not precomputed impacts, so the file does not depend on
 * float rounding and a loader could re-score with other parameters.
 */
export const FORMAT_VERSION = 2;
export const MAGIC = Buffer.from('WNBM25\0\0', 'latin1');
const V1_HEADER_BYTES = 88;
export const HEADER_BYTES = 96;
/** Header bytes covered by residentCrc: all but the crc field and its padding. */
export const HEADER_CRC_BYTES = 88;
const TRAILER_BYTES = 32;

const FLAG_STEM = 1;
const FLAG_STOPWORDS = 2;
const FLAG_LOSSY_NORMS = 4;

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  // Typed-array views use the platform byte order; every platform Node ships on is little-endian.
  throw new Error('Winnow BM25 index files require a little-endian platform');
}

/** Everything that defines a BM25 index; the in-memory index derives its scoring arrays from it. */
export interface Bm25Data {
  params: Bm25Params;
  /** Analyzer settings the index was built with; queries must be analysed the same way. */
  stem: boolean;
  stopWords: boolean;
  /** Doc lengths quantised like Lucene's one-byte norms (SmallFloat.intToByte4). */
  lossyNorms: boolean;
  docIds: string[];
  docLens: Int32Array;
  terms: string[];
  postingStarts: Uint32Array;
  postingDocs: Int32Array;
  postingTfs: Int32Array;
  emptyDocs: number;
  sumDocLen: number;
}

export const pad8 = (n: number): number => (n + 7) & ~7;

/** Strings as one UTF-8 blob plus byte offsets (n + 1 of them). */
function joinStrings(strings: readonly Buffer[]): { starts: Uint32Array; bytes: Buffer } {
  const starts = new Uint32Array(strings.length + 1);
  let at = 0;
  for (let i = 0; i < strings.length; i++) {
    starts[i] = at;
    at += strings[i].length;
  }
  starts[strings.length] = at;
  return { starts, bytes: Buffer.concat(strings as Buffer[], at) };
}

function bytesOf(a: ArrayBufferView): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

const ZEROS = Buffer.alloc(8);

/** Writes `data` to `file` (format version 2) atomically: a temporary file in the same folder, then a rename. */
export function writeIndexFile(file: string, data: Bm25Data): void {
  const numDocs = data.docIds.length;
  const numTerms = data.terms.length;
  const numPostings = data.postingDocs.length;
  const ids = joinStrings(data.docIds.map((id) => Buffer.from(id, 'utf8')));
  // Terms in UTF-8 byte order (what Buffer.compare gives), so readers binary-search bytes.
  const termBytes = data.terms.map((t) => Buffer.from(t, 'utf8'));
  const order = Array.from({ length: numTerms }, (_, i) => i).sort((a, b) => Buffer.compare(termBytes[a], termBytes[b]));
  const terms = joinStrings(order.map((o) => termBytes[o]));
  const postingStarts = new Uint32Array(numTerms + 1);
  const blockCrcs = new Uint32Array(numTerms);
  const { postingStarts: srcStarts, postingDocs, postingTfs } = data;
  for (let t = 0; t < numTerms; t++) {
    const o = order[t];
    const a = srcStarts[o];
    const b = srcStarts[o + 1];
    postingStarts[t + 1] = postingStarts[t] + (b - a);
    blockCrcs[t] = crc32(bytesOf(postingTfs.subarray(a, b)), crc32(bytesOf(postingDocs.subarray(a, b))));
  }

  const resident: Buffer[] = [bytesOf(data.docLens), bytesOf(postingStarts), bytesOf(blockCrcs), bytesOf(ids.starts), bytesOf(terms.starts), ids.bytes, terms.bytes];
  let postingsOffset = HEADER_BYTES;
  for (const s of resident) postingsOffset += pad8(s.length);
  const fileLength = postingsOffset + numPostings * 8 + TRAILER_BYTES;

  const header = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(header, 0);
  header.writeUInt32LE(FORMAT_VERSION, 8);
  const flags =
    (data.stem ? FLAG_STEM : 0) | (data.stopWords ? FLAG_STOPWORDS : 0) | (data.lossyNorms ? FLAG_LOSSY_NORMS : 0);
  header.writeUInt32LE(flags, 12);
  header.writeDoubleLE(data.params.k1, 16);
  header.writeDoubleLE(data.params.b, 24);
  header.writeUInt32LE(numDocs, 32);
  header.writeUInt32LE(numTerms, 36);
  header.writeDoubleLE(numPostings, 40);
  header.writeUInt32LE(data.emptyDocs, 48);
  header.writeDoubleLE(data.sumDocLen, 56);
  header.writeDoubleLE(fileLength, 64);
  header.writeUInt32LE(ids.bytes.length, 72);
  header.writeUInt32LE(terms.bytes.length, 76);
  header.writeDoubleLE(postingsOffset, 80);
  let crc = crc32(header.subarray(0, HEADER_CRC_BYTES));
  for (const s of resident) crc = crc32(ZEROS.subarray(0, pad8(s.length) - s.length), crc32(s, crc));
  header.writeUInt32LE(crc, 88);

  const hash = createHash('sha256');
  // The collection journals this temp name before the write, so a killed writer's debris is swept.
  const tmp = path.join(path.dirname(file), tmpNameOf(path.basename(file)));
  const fd = fs.openSync(tmp, 'w');
  try {
    // Postings are gathered into large writes: one syscall per term block would be slow.
    const chunk = Buffer.allocUnsafe(1 << 22);
    let used = 0;
    const flush = (): void => {
      if (used === 0) return;
      const b = chunk.subarray(0, used);
      hash.update(b);
      fs.writeSync(fd, b);
      used = 0;
    };
    const put = (b: Buffer): void => {
      if (b.length >= chunk.length) {
        flush();
        hash.update(b);
        fs.writeSync(fd, b);
        return;
      }
      if (used + b.length > chunk.length) flush();
      b.copy(chunk, used);
      used += b.length;
    };
    put(header);
    for (const s of resident) {
      put(s);
      put(ZEROS.subarray(0, pad8(s.length) - s.length));
    }
    for (let t = 0; t < numTerms; t++) {
      const o = order[t];
      put(bytesOf(postingDocs.subarray(srcStarts[o], srcStarts[o + 1])));
      put(bytesOf(postingTfs.subarray(srcStarts[o], srcStarts[o + 1])));
    }
    flush();
    fs.writeSync(fd, hash.digest());
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
  } catch (err) {
    try {
      fs.closeSync(fd);
    } catch {
      // already closed: the failure came from the rename
    }
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

export const corruptIndex = (file: string, why: string): WinnowError =>
  new WinnowError('corrupt_index', `BM25 index ${file} is corrupt: ${why}`, 'rebuild the index from the corpus');

export function openFailure(file: string, err: unknown): WinnowError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new WinnowError('not_found', `BM25 index file not found: ${file}`);
  return new WinnowError('unavailable', `cannot read BM25 index ${file}: ${(err as Error).message}`);
}

/** Checks magic and version of a file's first bytes; returns the version (1 or FORMAT_VERSION). */
export function checkVersion(file: string, head: Buffer): number {
  if (head.length < MAGIC.length || !head.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw corruptIndex(file, 'it does not start with the WNBM25 magic bytes (not a Winnow BM25 index)');
  }
  if (head.length < 12) throw corruptIndex(file, `truncated: ${head.length} bytes, shorter than the header`);
  const version = head.readUInt32LE(8);
  if (version !== FORMAT_VERSION && version !== 1) {
    throw new WinnowError(
      'version_mismatch',
      `BM25 index ${file} has format version ${version}, this Winnow reads version ${FORMAT_VERSION}`,
      'rebuild the index with this version of Winnow',
    );
  }
  return version;
}

/** The header fields both versions share. */
export interface Bm25Header {
  flags: number;
  params: Bm25Params;
  numDocs: number;
  numTerms: number;
  numPostings: number;
  emptyDocs: number;
  sumDocLen: number;
  fileLength: number;
}

export function parseHeader(buf: Buffer): Bm25Header {
  return {
    flags: buf.readUInt32LE(12),
    params: { k1: buf.readDoubleLE(16), b: buf.readDoubleLE(24) },
    numDocs: buf.readUInt32LE(32),
    numTerms: buf.readUInt32LE(36),
    numPostings: buf.readDoubleLE(40),
    emptyDocs: buf.readUInt32LE(48),
    sumDocLen: buf.readDoubleLE(56),
    fileLength: buf.readDoubleLE(64),
  };
}

export const analyzerFlags = (flags: number): { stem: boolean; stopWords: boolean; lossyNorms: boolean } => ({
  stem: (flags & FLAG_STEM) !== 0,
  stopWords: (flags & FLAG_STOPWORDS) !== 0,
  lossyNorms: (flags & FLAG_LOSSY_NORMS) !== 0,
});

/** The resident sections of a version 2 file, viewed in place in `buf` (which starts at byte 0 of the file). */
export interface ResidentV2 {
  docLens: Int32Array;
  postingStarts: Uint32Array;
  blockCrcs: Uint32Array;
  docIdStarts: Uint32Array;
  termStarts: Uint32Array;
  docIdBlob: Buffer;
  termBlob: Buffer;
  postingsOffset: number;
}

/**
 * Views the resident sections of a version 2 file; `buf` holds at least its first
 * postingsOffset bytes, 8-aligned. Checks the section sizes and offset tables, and residentCrc.
 */
export function residentV2(file: string, buf: Buffer, h: Bm25Header): ResidentV2 {
  const corrupt = (why: string): WinnowError => corruptIndex(file, why);
  const idBytes = buf.readUInt32LE(72);
  const termBytes = buf.readUInt32LE(76);
  const postingsOffset = buf.readDoubleLE(80);
  const sizes = [h.numDocs * 4, (h.numTerms + 1) * 4, h.numTerms * 4, (h.numDocs + 1) * 4, (h.numTerms + 1) * 4, idBytes, termBytes];
  let at = HEADER_BYTES;
  for (const s of sizes) at += pad8(s);
  if (at !== postingsOffset || postingsOffset + h.numPostings * 8 + TRAILER_BYTES !== h.fileLength) {
    throw corrupt(`section sizes add up to ${at + h.numPostings * 8 + TRAILER_BYTES} bytes, the header says ${h.fileLength}`);
  }
  if (buf.length < postingsOffset) throw corrupt(`truncated: ${buf.length} bytes, shorter than its dictionary`);
  let crc = crc32(buf.subarray(0, HEADER_CRC_BYTES));
  crc = crc32(buf.subarray(HEADER_BYTES, postingsOffset), crc);
  if (crc !== buf.readUInt32LE(88)) throw corrupt('dictionary checksum mismatch (the file was modified or damaged after it was written)');
  at = HEADER_BYTES;
  const next = (bytes: number): number => {
    const start = buf.byteOffset + at;
    at += pad8(bytes);
    return start;
  };
  const docLens = new Int32Array(buf.buffer, next(sizes[0]), h.numDocs);
  const postingStarts = new Uint32Array(buf.buffer, next(sizes[1]), h.numTerms + 1);
  const blockCrcs = new Uint32Array(buf.buffer, next(sizes[2]), h.numTerms);
  const docIdStarts = new Uint32Array(buf.buffer, next(sizes[3]), h.numDocs + 1);
  const termStarts = new Uint32Array(buf.buffer, next(sizes[4]), h.numTerms + 1);
  const idAt = next(idBytes) - buf.byteOffset;
  const docIdBlob = buf.subarray(idAt, idAt + idBytes);
  const termAt = next(termBytes) - buf.byteOffset;
  const termBlob = buf.subarray(termAt, termAt + termBytes);
  if (postingStarts[h.numTerms] !== h.numPostings || docIdStarts[h.numDocs] !== idBytes || termStarts[h.numTerms] !== termBytes) {
    throw corrupt('offset tables do not match the section sizes');
  }
  return { docLens, postingStarts, blockCrcs, docIdStarts, termStarts, docIdBlob, termBlob, postingsOffset };
}

/** Reads a file written by `writeIndexFile` (or version 1) whole, checking magic, version, length and checksum. */
export function readIndexFile(file: string): Bm25Data {
  let raw: Buffer;
  try {
    raw = fs.readFileSync(file);
  } catch (err) {
    throw openFailure(file, err);
  }
  const version = checkVersion(file, raw);
  const headerBytes = version === 1 ? V1_HEADER_BYTES : HEADER_BYTES;
  if (raw.length < headerBytes + TRAILER_BYTES) {
    throw corruptIndex(file, `truncated: ${raw.length} bytes, shorter than header and checksum`);
  }
  const expectedLength = raw.readDoubleLE(64);
  if (raw.length !== expectedLength) {
    throw corruptIndex(file, `truncated or padded: ${raw.length} bytes, the header says ${expectedLength}`);
  }
  const body = raw.subarray(0, raw.length - TRAILER_BYTES);
  const digest = createHash('sha256').update(body).digest();
  if (!digest.equals(raw.subarray(raw.length - TRAILER_BYTES))) {
    throw corruptIndex(file, 'checksum mismatch (the file was modified or damaged after it was written)');
  }

  // Typed-array views need the buffer offset aligned to the element size; a pooled Buffer
  // might not be, so copy once in that case.
  let buf = raw;
  if (raw.byteOffset % 8 !== 0) {
    buf = Buffer.alloc(raw.length);
    raw.copy(buf);
  }
  const h = parseHeader(buf);
  if (version === 1) return readV1(file, buf, h);
  const r = residentV2(file, buf, h);
  const docIds = new Array<string>(h.numDocs);
  for (let i = 0; i < h.numDocs; i++) docIds[i] = r.docIdBlob.toString('utf8', r.docIdStarts[i], r.docIdStarts[i + 1]);
  const terms = new Array<string>(h.numTerms);
  for (let i = 0; i < h.numTerms; i++) terms[i] = r.termBlob.toString('utf8', r.termStarts[i], r.termStarts[i + 1]);
  const all = new Int32Array(buf.buffer, buf.byteOffset + r.postingsOffset, h.numPostings * 2);
  const postingDocs = new Int32Array(h.numPostings);
  const postingTfs = new Int32Array(h.numPostings);
  for (let t = 0; t < h.numTerms; t++) {
    const a = r.postingStarts[t];
    const n = r.postingStarts[t + 1] - a;
    postingDocs.set(all.subarray(2 * a, 2 * a + n), a);
    postingTfs.set(all.subarray(2 * a + n, 2 * a + 2 * n), a);
  }
  return { params: h.params, ...analyzerFlags(h.flags), docIds, docLens: r.docLens, terms, postingStarts: r.postingStarts, postingDocs, postingTfs, emptyDocs: h.emptyDocs, sumDocLen: h.sumDocLen };
}

/** Version 1: postings in two sections, UTF-16 offsets into the string blobs. */
function readV1(file: string, buf: Buffer, h: Bm25Header): Bm25Data {
  const { numDocs, numTerms, numPostings } = h;
  const idChars = buf.readUInt32LE(72);
  const idBytes = buf.readUInt32LE(76);
  const termChars = buf.readUInt32LE(80);
  const termBytes = buf.readUInt32LE(84);
  const sizes = [numDocs * 4, (numTerms + 1) * 4, numPostings * 4, numPostings * 4, (numDocs + 1) * 4, (numTerms + 1) * 4, idBytes, termBytes];
  let total = V1_HEADER_BYTES + TRAILER_BYTES;
  for (const s of sizes) total += pad8(s);
  if (total !== buf.length) throw corruptIndex(file, `section sizes add up to ${total} bytes, the file has ${buf.length}`);

  let at = V1_HEADER_BYTES;
  const next = (bytes: number): number => {
    const start = buf.byteOffset + at;
    at += pad8(bytes);
    return start;
  };
  const docLens = new Int32Array(buf.buffer, next(sizes[0]), numDocs);
  const postingStarts = new Uint32Array(buf.buffer, next(sizes[1]), numTerms + 1);
  const postingDocs = new Int32Array(buf.buffer, next(sizes[2]), numPostings);
  const postingTfs = new Int32Array(buf.buffer, next(sizes[3]), numPostings);
  const idStarts = new Uint32Array(buf.buffer, next(sizes[4]), numDocs + 1);
  const termStarts = new Uint32Array(buf.buffer, next(sizes[5]), numTerms + 1);
  const idStart = at;
  at += pad8(idBytes);
  const idBlob = buf.toString('utf8', idStart, idStart + idBytes);
  const termBlob = buf.toString('utf8', at, at + termBytes);

  if (idBlob.length !== idChars || termBlob.length !== termChars) throw corruptIndex(file, 'string blobs have the wrong length');
  if (postingStarts[numTerms] !== numPostings || idStarts[numDocs] !== idChars || termStarts[numTerms] !== termChars) {
    throw corruptIndex(file, 'offset tables do not match the section sizes');
  }
  const docIds = new Array<string>(numDocs);
  for (let i = 0; i < numDocs; i++) docIds[i] = idBlob.slice(idStarts[i], idStarts[i + 1]);
  const terms = new Array<string>(numTerms);
  for (let i = 0; i < numTerms; i++) terms[i] = termBlob.slice(termStarts[i], termStarts[i + 1]);
  return { params: h.params, ...analyzerFlags(h.flags), docIds, docLens, terms, postingStarts, postingDocs, postingTfs, emptyDocs: h.emptyDocs, sumDocLen: h.sumDocLen };
}
