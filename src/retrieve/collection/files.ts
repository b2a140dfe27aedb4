import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { WinnowError } from '../../core/errors.js';

/** What a manifest records about each file it names: enough to detect truncation and tampering. */
export interface FileEntry {
  bytes: number;
  sha256: string;
}

/**
 * Writes `data` to `dir/name` so that either the whole file exists under its name or nothing
 * does: a temporary name, fsync, rename. A process killed midway leaves only a `.tmp` that no
 * manifest names and the next commit's garbage collection removes.
 */
export function writeDurable(dir: string, name: string, chunks: readonly Uint8Array[]): FileEntry {
  const file = path.join(dir, name);
  const tmp = path.join(dir, `.${name}.${process.pid}.tmp`);
  const hash = createHash('sha256');
  let bytes = 0;
  const fd = fs.openSync(tmp, 'w');
  try {
    for (const c of chunks) {
      hash.update(c);
      let off = 0;
      while (off < c.length) off += fs.writeSync(fd, c, off, c.length - off);
      bytes += c.length;
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  return { bytes, sha256: hash.digest('hex') };
}

/** fsyncs a file written by someone else (a library's own save) and returns its entry. */
export function sealFile(dir: string, name: string): FileEntry {
  const file = path.join(dir, name);
  const fd = fs.openSync(file, 'r+');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return { bytes: fs.statSync(file).size, sha256: hashFile(file) };
}

/** Makes renames inside `dir` durable (a rename is only on disk once its folder is). */
export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // Some platforms cannot open or fsync a folder; the rename is still atomic there.
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

export function hashFile(file: string): string {
  const hash = createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}

/**
 * Checks a file against its manifest entry: the size always (cheap, catches truncation), the
 * sha256 when `full` (catches any change). Errors name the file so a person knows what broke.
 */
export function verifyFile(dir: string, name: string, entry: FileEntry, full: boolean): void {
  const file = path.join(dir, name);
  let size: number;
  try {
    size = fs.statSync(file).size;
  } catch {
    throw new WinnowError('corrupt_index', `collection file ${file} is missing (named by the manifest)`, REBUILD_HINT);
  }
  if (size !== entry.bytes) {
    throw new WinnowError(
      'corrupt_index',
      `collection file ${file} is truncated or damaged: ${size} bytes, the manifest says ${entry.bytes}`,
      REBUILD_HINT,
    );
  }
  if (full && hashFile(file) !== entry.sha256) {
    throw new WinnowError(
      'corrupt_index',
      `collection file ${file} fails its checksum (sha256 differs from the manifest): it was modified or damaged`,
      REBUILD_HINT,
    );
  }
}

export const REBUILD_HINT = 'restore the collection folder from a backup or rebuild it with `winnow index`';

export function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * A single-writer lock: `write.lock` created exclusively with the writer's pid. A lock left by
 * a killed writer (its pid no longer runs) is taken over, so a crash never wedges the collection.
 */
export function acquireLock(dir: string): () => void {
  const lock = path.join(dir, 'write.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = fs.openSync(lock, 'wx');
      fs.writeSync(fd, String(process.pid));
      fs.closeSync(fd);
      return () => fs.rmSync(lock, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number(fs.readFileSync(lock, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
        throw new WinnowError('unavailable', `collection ${dir} is being written by process ${pid}`, 'wait for it to finish');
      }
      fs.rmSync(lock, { force: true });
    }
  }
  throw new WinnowError('unavailable', `cannot lock collection ${dir} for writing`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
