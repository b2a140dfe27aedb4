import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** What a manifest records about each file it names: enough to detect truncation and tampering. */
export interface FileEntry {
  bytes: number;
  sha256: string;
}

/** Where this process writes `name` before renaming it into place (journaled with it). */
export function tmpNameOf(name: string): string {
  return `.${name}.${process.pid}.tmp`;
}

/**
 * Writes `data` to `dir/name` so that either the whole file exists under its name or nothing
 * does: a temporary name, fsync, rename. A process killed midway leaves only a `.tmp`, which
 * the write's journal names, so the next writer removes it.
 */
export function writeDurable(dir: string, name: string, chunks: readonly Uint8Array[]): FileEntry {
  const file = path.join(dir, name);
  const tmp = path.join(dir, tmpNameOf(name));
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

export const REBUILD_HINT = 'restore the collection folder from a backup or rebuild it with `winnow index`';

export function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
