import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { WinnowError } from '../../core/errors.js';
import type { Bm25Params } from './similarity.js';
import { tmpNameOf } from '../collection/files.js';

/**
 * The on-disk BM25 index, version 1. One file, little-endian, every array section starting on
 * an 8-byte boundary so `load` can view the arrays in place instead of parsing them:
 *
 *   header (88 bytes): magic "WNBM25\0\0", u32 version, u32 flags, f64 k1, f64 b,
 *     u32 numDocs, u32 numTerms, f64 numPostings, u32 emptyDocs, u32 0, f64 sumDocLen,
 *     f64 fileLength, u32 docIdChars, u32 docIdBytes, u32 termChars, u32 termBytes
 *   docLens        Int32[numDocs]        terms per document after analysis
 *   postingStarts  Uint32[numTerms + 1]  CSR row starts into the two posting arrays
 *   postingDocs    Int32[numPostings]    internal doc numbers, ascending within a term
 *   postingTfs     Int32[numPostings]
 *   docIdStarts    Uint32[numDocs + 1]   UTF-16 offsets into the decoded doc id blob
 *   termStarts     Uint32[numTerms + 1]  UTF-16 offsets into the decoded term blob
 *   docIdBlob      UTF-8, all doc ids concatenated
 *   termBlob       UTF-8, all terms concatenated (term id = position)
 *   trailer        sha256 of every byte before it
 *
 * Raw term frequencies are stored, not precomputed impacts, so the file does not depend on
 * float rounding and a loader could re-score with other parameters.
 */
export const FORMAT_VERSION = 1;
const MAGIC = Buffer.from('WNBM25\0\0', 'latin1');
const HEADER_BYTES = 88;
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

const pad8 = (n: number): number => (n + 7) & ~7;

function joinStrings(strings: string[]): { starts: Uint32Array; bytes: Buffer; chars: number } {
  const starts = new Uint32Array(strings.length + 1);
  let chars = 0;
  for (let i = 0; i < strings.length; i++) {
    starts[i] = chars;
    chars += strings[i].length;
  }
  starts[strings.length] = chars;
  return { starts, bytes: Buffer.from(strings.join(''), 'utf8'), chars };
}

function bytesOf(a: ArrayBufferView): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/** Writes `data` to `file` atomically: a temporary file in the same folder, then a rename. */
export function writeIndexFile(file: string, data: Bm25Data): void {
  const numDocs = data.docIds.length;
  const numTerms = data.terms.length;
  const numPostings = data.postingDocs.length;
  const ids = joinStrings(data.docIds);
  const terms = joinStrings(data.terms);

  const sections: Buffer[] = [
    bytesOf(data.docLens),
    bytesOf(data.postingStarts),
    bytesOf(data.postingDocs),
    bytesOf(data.postingTfs),
    bytesOf(ids.starts),
    bytesOf(terms.starts),
    ids.bytes,
    terms.bytes,
  ];
  let fileLength = HEADER_BYTES;
  for (const s of sections) fileLength += pad8(s.length);
  fileLength += TRAILER_BYTES;

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
  header.writeUInt32LE(ids.chars, 72);
  header.writeUInt32LE(ids.bytes.length, 76);
  header.writeUInt32LE(terms.chars, 80);
  header.writeUInt32LE(terms.bytes.length, 84);

  const hash = createHash('sha256');
  // The collection journals this temp name before the write, so a killed writer's debris is swept.
  const tmp = path.join(path.dirname(file), tmpNameOf(path.basename(file)));
  const fd = fs.openSync(tmp, 'w');
  try {
    const put = (b: Buffer): void => {
      hash.update(b);
      fs.writeSync(fd, b);
    };
    put(header);
    for (const s of sections) {
      put(s);
      const padding = pad8(s.length) - s.length;
      if (padding > 0) put(Buffer.alloc(padding));
    }
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

/** Reads a file written by `writeIndexFile`, checking magic, version, length and checksum. */
export function readIndexFile(file: string): Bm25Data {
  let raw: Buffer;
  try {
    raw = fs.readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new WinnowError('not_found', `BM25 index file not found: ${file}`);
    throw new WinnowError('unavailable', `cannot read BM25 index ${file}: ${(err as Error).message}`);
  }
  const corrupt = (why: string): WinnowError =>
    new WinnowError('corrupt_index', `BM25 index ${file} is corrupt: ${why}`, 'rebuild the index from the corpus');

  if (raw.length < MAGIC.length || !raw.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw corrupt('it does not start with the WNBM25 magic bytes (not a Winnow BM25 index)');
  }
  if (raw.length < 12) throw corrupt(`truncated: ${raw.length} bytes, shorter than the header`);
  const version = raw.readUInt32LE(8);
  if (version !== FORMAT_VERSION) {
    throw new WinnowError(
      'version_mismatch',
      `BM25 index ${file} has format version ${version}, this Winnow reads version ${FORMAT_VERSION}`,
      'rebuild the index with this version of Winnow',
    );
  }
  if (raw.length < HEADER_BYTES + TRAILER_BYTES) {
    throw corrupt(`truncated: ${raw.length} bytes, shorter than header and checksum`);
  }
  const expectedLength = raw.readDoubleLE(64);
  if (raw.length !== expectedLength) {
    throw corrupt(`truncated or padded: ${raw.length} bytes, the header says ${expectedLength}`);
  }
  const body = raw.subarray(0, raw.length - TRAILER_BYTES);
  const digest = createHash('sha256').update(body).digest();
  if (!digest.equals(raw.subarray(raw.length - TRAILER_BYTES))) {
    throw corrupt('checksum mismatch (the file was modified or damaged after it was written)');
  }

  // Typed-array views need the buffer offset aligned to the element size; a pooled Buffer
  // might not be, so copy once in that case.
  let buf = raw;
  if (raw.byteOffset % 8 !== 0) {
    buf = Buffer.alloc(raw.length);
    raw.copy(buf);
  }
  const flags = buf.readUInt32LE(12);
  const params: Bm25Params = { k1: buf.readDoubleLE(16), b: buf.readDoubleLE(24) };
  const numDocs = buf.readUInt32LE(32);
  const numTerms = buf.readUInt32LE(36);
  const numPostings = buf.readDoubleLE(40);
  const emptyDocs = buf.readUInt32LE(48);
  const sumDocLen = buf.readDoubleLE(56);
  const idChars = buf.readUInt32LE(72);
  const idBytes = buf.readUInt32LE(76);
  const termChars = buf.readUInt32LE(80);
  const termBytes = buf.readUInt32LE(84);

  const sizes = [
    numDocs * 4,
    (numTerms + 1) * 4,
    numPostings * 4,
    numPostings * 4,
    (numDocs + 1) * 4,
    (numTerms + 1) * 4,
    idBytes,
    termBytes,
  ];
  let total = HEADER_BYTES + TRAILER_BYTES;
  for (const s of sizes) total += pad8(s);
  if (total !== buf.length) throw corrupt(`section sizes add up to ${total} bytes, the file has ${buf.length}`);

  let at = HEADER_BYTES;
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

  if (idBlob.length !== idChars || termBlob.length !== termChars) throw corrupt('string blobs have the wrong length');
  if (postingStarts[numTerms] !== numPostings || idStarts[numDocs] !== idChars || termStarts[numTerms] !== termChars) {
    throw corrupt('offset tables do not match the section sizes');
  }
  const docIds = new Array<string>(numDocs);
  for (let i = 0; i < numDocs; i++) docIds[i] = idBlob.slice(idStarts[i], idStarts[i + 1]);
  const terms = new Array<string>(numTerms);
  for (let i = 0; i < numTerms; i++) terms[i] = termBlob.slice(termStarts[i], termStarts[i + 1]);

  return {
    params,
    stem: (flags & FLAG_STEM) !== 0,
    stopWords: (flags & FLAG_STOPWORDS) !== 0,
    lossyNorms: (flags & FLAG_LOSSY_NORMS) !== 0,
    docIds,
    docLens,
    terms,
    postingStarts,
    postingDocs,
    postingTfs,
    emptyDocs,
    sumDocLen,
  };
}
