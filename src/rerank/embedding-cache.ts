import { createHash } from 'node:crypto';
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';

/**
 * Document embeddings (vectors, or ColBERT token matrices) keyed by model identity and text.
 * A document embedded once is not embedded again: the memory LRU serves repeats within a
 * run, the optional disk store serves them across runs.
 *
 * Disk layout: one append-only file per namespace (model id + revision + settings),
 * `<dir>/<sha256(namespace)[:32]>.bin`, of records `[16-byte content hash][u32 float count]
 * [float32 LE data]`, plus a `.json` naming the namespace for people. Only the record index
 * (hash -> offset) is held in memory; values are read on demand. A torn last record (a
 * crash mid-append) is ignored and overwritten by the next append.
 */
export interface EmbeddingCacheOptions {
  /** everything that changes the vectors: model id, revision, pooling, prefix, max length */
  namespace: string;
  /** memory budget for cached floats, in bytes; default 256 MiB */
  maxBytes?: number;
  /** directory for the on-disk store; none: memory only */
  dir?: string;
}

const HASH_BYTES = 16;
const HEADER = HASH_BYTES + 4;

export class EmbeddingCache {
  readonly namespace: string;
  private readonly maxBytes: number;
  private readonly memory = new Map<string, Float32Array>();
  private bytes = 0;
  private readonly file?: string;
  private index?: Map<string, { offset: number; count: number }>;
  private end = 0;
  hits = 0;
  misses = 0;

  constructor(options: EmbeddingCacheOptions) {
    this.namespace = options.namespace;
    this.maxBytes = options.maxBytes ?? 256 * 1024 * 1024;
    if (options.dir) {
      mkdirSync(options.dir, { recursive: true });
      const name = createHash('sha256').update(options.namespace).digest('hex').slice(0, 32);
      this.file = path.join(options.dir, `${name}.bin`);
      const meta = path.join(options.dir, `${name}.json`);
      if (!existsSync(meta)) writeFileSync(meta, JSON.stringify({ namespace: options.namespace, format: 1 }) + '\n');
    }
  }

  /** content key of a text (what the disk store is keyed by inside the namespace) */
  static key(text: string): string {
    return createHash('sha256').update(text).digest('hex').slice(0, HASH_BYTES * 2);
  }

  get(text: string): Float32Array | undefined {
    const key = EmbeddingCache.key(text);
    const m = this.memory.get(key);
    if (m) {
      this.memory.delete(key);
      this.memory.set(key, m);
      this.hits++;
      return m;
    }
    const d = this.readDisk(key);
    if (d) {
      this.remember(key, d);
      this.hits++;
      return d;
    }
    this.misses++;
    return undefined;
  }

  /** stores many values with one disk append */
  setMany(entries: ReadonlyArray<readonly [text: string, value: Float32Array]>): void {
    const fresh: Array<[string, Float32Array]> = [];
    for (const [text, value] of entries) {
      const key = EmbeddingCache.key(text);
      this.remember(key, value);
      if (this.file && !this.loadIndex().has(key)) fresh.push([key, value]);
    }
    if (this.file && fresh.length > 0) this.append(fresh);
  }

  private remember(key: string, value: Float32Array): void {
    const old = this.memory.get(key);
    if (old) this.bytes -= old.byteLength;
    this.memory.delete(key);
    this.memory.set(key, value);
    this.bytes += value.byteLength;
    while (this.bytes > this.maxBytes && this.memory.size > 1) {
      const [k, v] = this.memory.entries().next().value as [string, Float32Array];
      this.memory.delete(k);
      this.bytes -= v.byteLength;
    }
  }

  private loadIndex(): Map<string, { offset: number; count: number }> {
    if (this.index) return this.index;
    this.index = new Map();
    if (!this.file || !existsSync(this.file)) return this.index;
    const fd = openSync(this.file, 'r');
    try {
      const size = fstatSync(fd).size;
      const head = Buffer.alloc(HEADER);
      let at = 0;
      while (at + HEADER <= size) {
        readSync(fd, head, 0, HEADER, at);
        const count = head.readUInt32LE(HASH_BYTES);
        if (at + HEADER + count * 4 > size) break;
        this.index.set(head.toString('hex', 0, HASH_BYTES), { offset: at + HEADER, count });
        at += HEADER + count * 4;
      }
      this.end = at;
    } finally {
      closeSync(fd);
    }
    return this.index;
  }

  private readDisk(key: string): Float32Array | undefined {
    if (!this.file) return undefined;
    const rec = this.loadIndex().get(key);
    if (!rec) return undefined;
    const out = new Float32Array(rec.count);
    const fd = openSync(this.file, 'r');
    try {
      readSync(fd, new Uint8Array(out.buffer), 0, rec.count * 4, rec.offset);
    } finally {
      closeSync(fd);
    }
    return out;
  }

  private append(entries: Array<[string, Float32Array]>): void {
    const index = this.loadIndex();
    let total = 0;
    for (const [, v] of entries) total += HEADER + v.byteLength;
    const buf = Buffer.alloc(total);
    let o = 0;
    const added: Array<[string, { offset: number; count: number }]> = [];
    for (const [key, v] of entries) {
      buf.write(key, o, 'hex');
      buf.writeUInt32LE(v.length, o + HASH_BYTES);
      Buffer.from(v.buffer, v.byteOffset, v.byteLength).copy(buf, o + HEADER);
      added.push([key, { offset: this.end + o + HEADER, count: v.length }]);
      o += HEADER + v.byteLength;
    }
    // write at the end of the last whole record, so a torn tail gets overwritten
    const fd = openSync(this.file as string, existsSync(this.file as string) ? 'r+' : 'w+');
    try {
      writeSync(fd, buf, 0, buf.length, this.end);
    } finally {
      closeSync(fd);
    }
    this.end += total;
    for (const [k, r] of added) index.set(k, r);
  }
}
