import { createHash } from 'node:crypto';
import { type Doc, docText } from '../core/types.js';

export interface ScoreCacheOptions {
  /** most scores kept */
  maxEntries?: number;
  /** rough bound on memory held by keys and values */
  maxBytes?: number;
}

/**
 * An LRU of pointwise scores shared by every stage of a run (or a server's lifetime).
 *
 * The key is (stage identity, query text, document id, document content hash). Stage identity
 * is the scorer's id, which carries model id, revision and truncation settings: a cache keyed
 * on the query and document alone would serve one model's scores after a model swap. The
 * content hash means an edited document is rescored even when its id stays the same.
 */
export class ScoreCache {
  readonly maxEntries: number;
  readonly maxBytes: number;
  hits = 0;
  misses = 0;
  private bytes = 0;
  private readonly map = new Map<string, number>();
  private readonly hashes = new WeakMap<Doc, string>();

  constructor(opts: ScoreCacheOptions = {}) {
    this.maxEntries = opts.maxEntries ?? 1_000_000;
    this.maxBytes = opts.maxBytes ?? 256 * 1024 * 1024;
  }

  get size(): number {
    return this.map.size;
  }

  get approxBytes(): number {
    return this.bytes;
  }

  key(stageId: string, query: string, doc: Doc): string {
    return `${stageId}\u0000${query}\u0000${doc.id}\u0000${this.contentHash(doc)}`;
  }

  get(key: string): number | undefined {
    const v = this.map.get(key);
    if (v === undefined) {
      this.misses++;
      return undefined;
    }
    // Re-insert so Map order is recency order and the first key is the least recent.
    this.map.delete(key);
    this.map.set(key, v);
    this.hits++;
    return v;
  }

  set(key: string, score: number): void {
    const old = this.map.get(key);
    if (old !== undefined) this.map.delete(key);
    else this.bytes += entryBytes(key);
    this.map.set(key, score);
    while (this.map.size > this.maxEntries || this.bytes > this.maxBytes) {
      const oldest = this.map.keys().next().value as string;
      this.map.delete(oldest);
      this.bytes -= entryBytes(oldest);
    }
  }

  private contentHash(doc: Doc): string {
    let h = this.hashes.get(doc);
    if (h === undefined) {
      h = createHash('sha1').update(docText(doc)).digest('base64url').slice(0, 16);
      this.hashes.set(doc, h);
    }
    return h;
  }
}

/** UTF-16 key characters, the number, and Map entry overhead (measured order of magnitude). */
function entryBytes(key: string): number {
  return key.length * 2 + 8 + 64;
}
