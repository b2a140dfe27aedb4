import { createHash } from 'node:crypto';
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { LRUCache } from 'lru-cache';
import { cacheCounters } from '../cache/counters.js';
import type { SharedTier } from '../cache/shared-tier.js';

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
 *
 * Shared tier (Redis, optional, asked after memory and disk): key `e:{N:b}K`, N a hash of the
 * namespace, K the content key, b its first hex digit. The hash tag `N:b` splits one model's
 * embeddings into 16 buckets: a batch of documents (which retrieval draws from all over the
 * corpus) needs at most 16 MGETs, each on one Redis Cluster slot, and a model's embeddings and
 * their traffic spread over 16 slots instead of piling onto one node. Tagging by the whole
 * namespace would put every lookup of a model on one node; tagging by document would need one
 * GET per document; tagging by query would store each document once per query it was seen with.
 * Values are the raw float32 bytes (little-endian, as every platform Winnow runs on).
 */
export interface EmbeddingCacheOptions {
  /** everything that changes the vectors: model id, revision, pooling, prefix, max length */
  namespace: string;
  /** memory budget for cached floats, in bytes; default 256 MiB */
  maxBytes?: number;
  /** directory for the on-disk store; none: memory only */
  dir?: string;
  /** a tier shared with other processes (Redis), asked for what memory and disk lack */
  shared?: SharedTier;
}

/** buckets per namespace in the shared tier: at most this many MGETs per batch */
const SHARED_BUCKETS = 16;

const HASH_BYTES = 16;
const HEADER = HASH_BYTES + 4;

export class EmbeddingCache {
  readonly namespace: string;
  /** absent when the memory budget is 0: values then come from disk on every lookup */
  private readonly memory?: LRUCache<string, Float32Array>;
  private readonly file?: string;
  private index?: Map<string, { offset: number; count: number }>;
  private end = 0;
  hits = 0;
  misses = 0;
  /** of the hits, those the shared tier answered */
  sharedHits = 0;
  private readonly shared?: SharedTier;
  private readonly sharedNamespace: string;

  constructor(options: EmbeddingCacheOptions) {
    this.namespace = options.namespace;
    this.shared = options.shared;
    this.sharedNamespace = createHash('sha256').update(options.namespace).digest('base64url').slice(0, 12);
    const maxBytes = options.maxBytes ?? 256 * 1024 * 1024;
    if (maxBytes > 0) this.memory = new LRUCache<string, Float32Array>({ maxSize: maxBytes, sizeCalculation: (v) => Math.max(1, v.byteLength) });
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

  /** memory, then disk; the shared tier is only asked by `getMany` */
  get(text: string): Float32Array | undefined {
    const v = this.getLocal(EmbeddingCache.key(text));
    if (v) this.hits++;
    else {
      this.misses++;
      cacheCounters.miss('embedding');
    }
    return v;
  }

  /**
   * Values for `texts`, `undefined` where no tier has one: memory, disk, then one batched
   * request to the shared tier for the rest (whose answers are kept in memory). Never rejects.
   */
  async getMany(texts: readonly string[]): Promise<(Float32Array | undefined)[]> {
    const keys = texts.map((t) => EmbeddingCache.key(t));
    const out = keys.map((k) => this.getLocal(k));
    const missing: number[] = [];
    out.forEach((v, i) => v === undefined && missing.push(i));
    let shared = 0;
    if (this.shared && missing.length > 0) {
      const values = await this.shared.getMany(
        missing.map((i) => this.sharedKey(keys[i])),
        'embedding',
      );
      missing.forEach((i, j) => {
        const b = values[j];
        if (!b || b.length === 0 || b.length % 4 !== 0) return;
        // a copy: the reply buffer's offset need not be float-aligned
        const v = new Float32Array(b.length / 4);
        new Uint8Array(v.buffer).set(b);
        out[i] = v;
        this.remember(keys[i], v);
        shared++;
      });
    }
    const miss = missing.length - shared;
    this.hits += texts.length - miss;
    this.sharedHits += shared;
    this.misses += miss;
    cacheCounters.hit('embedding', 'redis', shared);
    cacheCounters.miss('embedding', miss);
    return out;
  }

  /** stores many values with one disk append, and in the shared tier in the background */
  setMany(entries: ReadonlyArray<readonly [text: string, value: Float32Array]>): void {
    const fresh: Array<[string, Float32Array]> = [];
    const keyed: Array<[string, Float32Array]> = [];
    for (const [text, value] of entries) {
      const key = EmbeddingCache.key(text);
      keyed.push([key, value]);
      this.remember(key, value);
      if (this.file && !this.loadIndex().has(key)) fresh.push([key, value]);
    }
    if (this.file && fresh.length > 0) this.append(fresh);
    this.shared?.setMany(keyed.map(([k, v]) => [this.sharedKey(k), Buffer.from(v.buffer, v.byteOffset, v.byteLength)] as const));
  }

  private getLocal(key: string): Float32Array | undefined {
    const m = this.memory?.get(key);
    if (m) {
      cacheCounters.hit('embedding', 'local');
      return m;
    }
    const d = this.readDisk(key);
    if (d) {
      cacheCounters.hit('embedding', 'disk');
      this.remember(key, d);
    }
    return d;
  }

  private sharedKey(key: string): string {
    return `e:{${this.sharedNamespace}:${Number.parseInt(key[0], 16) % SHARED_BUCKETS}}${key}`;
  }

  private remember(key: string, value: Float32Array): void {
    this.memory?.set(key, value);
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
