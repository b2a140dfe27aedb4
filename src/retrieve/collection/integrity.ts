import * as fs from 'node:fs';
import * as path from 'node:path';
import { WinnowError } from '../../core/errors.js';
import { hashFile, type FileEntry } from './files.js';
import { alive } from './lock.js';
import { repairHint } from './manifest.js';

/**
 * Integrity on open: every file of a generation is checked against the manifest's sha256
 * before it is used. Hashing gigabytes on every open would make `search` slow, so a file that
 * hashed correctly is remembered in `verified.json` by its size, mtime, ctime and inode
 * (nanoseconds). Any write to the file changes its ctime, which no user call can set back, so
 * a remembered file is one whose bytes have not changed since they were hashed.
 */
export const VERIFY_CACHE = 'verified.json';

interface Stamp {
  size: string;
  mtime: string;
  ctime: string;
  ino: string;
}
type Cache = Record<string, Stamp & { sha256: string }>;

export type FileStatus = 'ok' | 'missing' | 'size' | 'checksum';

export interface FileCheck {
  name: string;
  status: FileStatus;
  /** bytes on disk (-1 when missing) */
  bytes: number;
  /** true when the cache vouched for the file and it was not hashed again */
  cached: boolean;
}

function stampOf(file: string): Stamp | undefined {
  try {
    const s = fs.statSync(file, { bigint: true });
    return { size: String(s.size), mtime: String(s.mtimeNs), ctime: String(s.ctimeNs), ino: String(s.ino) };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

const same = (a: Stamp, b: Stamp): boolean => a.size === b.size && a.mtime === b.mtime && a.ctime === b.ctime && a.ino === b.ino;

function readCache(dir: string): Cache {
  try {
    const c = JSON.parse(fs.readFileSync(path.join(dir, VERIFY_CACHE), 'utf8')) as unknown;
    return c !== null && typeof c === 'object' && !Array.isArray(c) ? (c as Cache) : {};
  } catch {
    return {};
  }
}

/** Atomic (temp + rename) so a reader never sees half a cache; a read-only folder just goes uncached. */
function writeCache(dir: string, cache: Cache): void {
  const tmp = path.join(dir, `.${VERIFY_CACHE}.${process.pid}.tmp`);
  try {
    fs.writeFileSync(tmp, JSON.stringify(cache));
    fs.renameSync(tmp, path.join(dir, VERIFY_CACHE));
  } catch {
    fs.rmSync(tmp, { force: true });
  }
}

const CACHE_TEMP = /^\.verified\.json\.(\d+)\.tmp$/; // the temp name writeCache uses

/** Removes cache temps left by readers that died between writing and renaming them. */
export function sweepCacheTemps(dir: string): void {
  for (const f of fs.readdirSync(dir)) {
    const m = CACHE_TEMP.exec(f);
    if (m && !alive(Number(m[1]))) fs.rmSync(path.join(dir, f), { force: true });
  }
}

/**
 * Checks every file against its entry: size, then sha256 (streamed), unless `useCache` and the
 * cache vouches for it. Returns one result per file; the cache is rewritten for this generation.
 */
export function checkFiles(dir: string, files: Record<string, FileEntry>, useCache: boolean): FileCheck[] {
  const cache = readCache(dir);
  const next: Cache = {};
  const out: FileCheck[] = [];
  let changed = false;
  for (const [name, entry] of Object.entries(files)) {
    const file = path.join(dir, name);
    const before = stampOf(file);
    if (!before) {
      out.push({ name, status: 'missing', bytes: -1, cached: false });
      continue;
    }
    if (Number(before.size) !== entry.bytes) {
      out.push({ name, status: 'size', bytes: Number(before.size), cached: false });
      continue;
    }
    const known = cache[name];
    if (useCache && known && known.sha256 === entry.sha256 && same(known, before)) {
      next[name] = known;
      out.push({ name, status: 'ok', bytes: entry.bytes, cached: true });
      continue;
    }
    const ok = hashFile(file) === entry.sha256;
    out.push({ name, status: ok ? 'ok' : 'checksum', bytes: entry.bytes, cached: false });
    const after = stampOf(file);
    // Remembered only if the file did not change while it was hashed.
    if (ok && after && same(before, after)) {
      next[name] = { ...before, sha256: entry.sha256 };
      changed = true;
    }
  }
  if (changed || Object.keys(next).length !== Object.keys(cache).length) writeCache(dir, next);
  return out;
}

/** Records files this process has just written and hashed, so the next open need not hash them. */
export function rememberVerified(dir: string, files: Record<string, FileEntry>): void {
  const cache = readCache(dir);
  const next: Cache = {};
  for (const [name, entry] of Object.entries(files)) {
    const known = cache[name];
    const now = stampOf(path.join(dir, name));
    if (!now || Number(now.size) !== entry.bytes) continue;
    if (known && known.sha256 === entry.sha256 && same(known, now)) next[name] = known;
    else next[name] = { ...now, sha256: entry.sha256 };
  }
  writeCache(dir, next);
}

export function describeFailure(dir: string, c: FileCheck, entry: FileEntry): string {
  const file = path.join(dir, c.name);
  switch (c.status) {
    case 'missing':
      return `collection file ${file} is missing (named by the manifest)`;
    case 'size':
      return `collection file ${file} is truncated or damaged: ${c.bytes} bytes, the manifest says ${entry.bytes}`;
    default:
      return `collection file ${file} fails its checksum (sha256 differs from the manifest): it was modified or damaged`;
  }
}

/** Refuses a generation with any damaged file, naming the first one. */
export function verifyGeneration(dir: string, files: Record<string, FileEntry>, useCache = true): void {
  for (const c of checkFiles(dir, files, useCache)) {
    if (c.status !== 'ok') throw new WinnowError('corrupt_index', describeFailure(dir, c, files[c.name]), repairHint(dir));
  }
}

/** Size-only check, for the generation this process just committed (it hashed the files as it wrote them). */
export function checkSizes(dir: string, files: Record<string, FileEntry>): void {
  for (const [name, entry] of Object.entries(files)) {
    const s = stampOf(path.join(dir, name));
    if (!s || Number(s.size) !== entry.bytes) {
      const c: FileCheck = { name, status: s ? 'size' : 'missing', bytes: s ? Number(s.size) : -1, cached: false };
      throw new WinnowError('corrupt_index', describeFailure(dir, c, entry), repairHint(dir));
    }
  }
}
