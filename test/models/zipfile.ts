/**
 * A minimal zip writer for tests: builds jars and wheels in memory, including the broken and
 * hostile ones a real tool would never write (lying sizes, symlinks, escaping names), so no
 * binary fixture needs committing.
 */
import { crc32, deflateRawSync } from 'node:zlib';

export interface ZipFileSpec {
  name: string;
  data: string | Buffer;
  /** Stored instead of deflated. */
  store?: boolean;
  /** The uncompressed size written in both headers, instead of the true one. */
  declaredSize?: number;
  /** Unix mode (e.g. 0o120777 for a symlink), written as a Unix-made entry's external attributes. */
  unixMode?: number;
}

export function makeZip(files: ZipFileSpec[]): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const f of files) {
    const data = Buffer.from(f.data);
    const body = f.store ? data : deflateRawSync(data);
    const method = f.store ? 0 : 8;
    const crc = crc32(data);
    const size = f.declaredSize ?? data.length;
    const name = Buffer.from(f.name);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(name.length, 26);
    const cd = Buffer.alloc(46);
    cd.writeUInt32LE(0x02014b50, 0);
    // "version made by": high byte 3 = Unix, which is what makes the mode in the attributes count.
    cd.writeUInt16LE(f.unixMode !== undefined ? (3 << 8) | 20 : 20, 4);
    cd.writeUInt16LE(20, 6);
    cd.writeUInt16LE(method, 10);
    cd.writeUInt32LE(crc, 16);
    cd.writeUInt32LE(body.length, 20);
    cd.writeUInt32LE(size, 24);
    cd.writeUInt16LE(name.length, 28);
    if (f.unixMode !== undefined) cd.writeUInt32LE((f.unixMode << 16) >>> 0, 38);
    cd.writeUInt32LE(offset, 42);
    parts.push(local, name, body);
    central.push(cd, name);
    offset += 30 + name.length + body.length;
  }
  const cdBuf = Buffer.concat(central);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(files.length, 8);
  eocd.writeUInt16LE(files.length, 10);
  eocd.writeUInt32LE(cdBuf.length, 12);
  eocd.writeUInt32LE(offset, 16);
  return Buffer.concat([...parts, cdBuf, eocd]);
}
