import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { cacheCounters } from '../cache/counters.js';
import type { SharedTier } from '../cache/shared-tier.js';
import { type Doc, docText } from '../core/types.js';

export interface ScoreCacheOptions {
  /** most scores kept */
  maxEntries?: number;
  /** rough bound on memory held by keys and values */
  maxBytes?: number;
  /** a tier shared with other processes (Redis), asked for what this process's LRU lacks */
  shared?: SharedTier;
}

/**
 * An LRU of pointwise scores shared by every stage of a run (or a server's lifetime), with an
 * optional shared tier behind it so replicas reuse each other's scores.
 *
 * The key is (stage identity, query text, document id, document content hash). Stage identity
 * is the scorer's id, which carries model id, revision and truncation settings: a cache keyed
 * on the query and document alone would serve one model's scores after a model swap. The
 * content hash means an edited document is rescored even when its id stays the same.
 *
 * In the shared tier a key is `s:{H(stage, query)}H(doc id, content)`: the hash tag is the
 * (scorer, query) pair, so every document of one rerank call lands on one Redis Cluster slot
 * and is fetched with one MGET, while different queries spread over the cluster's slots.
 */
export class ScoreCache {
  readonly maxEntries: number;
  readonly maxBytes: number;
  /** lookups answered, by this process's LRU or the shared tier */
  hits = 0;
  misses = 0;
  /** of the hits, those the shared tier answered */
  sharedHits = 0;
  readonly shared?: SharedTier;
  private readonly lru: LRUCache<string, number>;
  private readonly hashes = new WeakMap<Doc, string>();

  constructor(opts: ScoreCacheOptions = {}) {
    this.maxEntries = opts.maxEntries ?? 1_000_000;
    this.maxBytes = opts.maxBytes ?? 256 * 1024 * 1024;
    this.shared = opts.shared;
    this.lru = new LRUCache<string, number>({ max: this.maxEntries, maxSize: this.maxBytes, sizeCalculation: (_, key) => entryBytes(key) });
  }

  get size(): number {
    return this.lru.size;
  }

  get approxBytes(): number {
    return this.lru.calculatedSize;
  }

  key(stageId: string, query: string, doc: Doc): string {
    return `${stageId}\u0000${query}\u0000${doc.id}\u0000${this.contentHash(doc)}`;
  }

  /** this process's LRU only */
  get(key: string): number | undefined {
    const v = this.lru.get(key);
    if (v === undefined) {
      this.misses++;
      cacheCounters.miss('score');
    } else {
      this.hits++;
      cacheCounters.hit('score', 'local');
    }
    return v;
  }

  set(key: string, score: number): void {
    this.lru.set(key, score);
  }

  /**
   * Scores of `docs` under one stage and query, `undefined` where neither tier has one: the
   * LRU first, then one batched request to the shared tier for the rest (whose answers are
   * kept in the LRU). Never rejects: an unavailable shared tier only means more misses.
   */
  async getMany(stageId: string, query: string, docs: readonly Doc[]): Promise<(number | undefined)[]> {
    const out: (number | undefined)[] = new Array(docs.length);
    const missing: number[] = [];
    for (let i = 0; i < docs.length; i++) {
      out[i] = this.lru.get(this.key(stageId, query, docs[i]));
      if (out[i] === undefined) missing.push(i);
    }
    const local = docs.length - missing.length;
    let shared = 0;
    if (this.shared && missing.length > 0) {
      const tag = sharedTag(stageId, query);
      const values = await this.shared.getMany(
        missing.map((i) => this.sharedKey(tag, docs[i])),
        'score',
      );
      missing.forEach((i, j) => {
        const v = values[j];
        // 8 bytes: a float64; anything else was written by something that is not this cache
        if (!v || v.length !== 8) return;
        const score = v.readDoubleLE(0);
        out[i] = score;
        this.lru.set(this.key(stageId, query, docs[i]), score);
        shared++;
      });
    }
    const miss = missing.length - shared;
    this.hits += local + shared;
    this.sharedHits += shared;
    this.misses += miss;
    cacheCounters.hit('score', 'local', local);
    cacheCounters.hit('score', 'redis', shared);
    cacheCounters.miss('score', miss);
    return out;
  }

  /** Stores freshly computed scores in the LRU and, in the background, in the shared tier. */
  setMany(stageId: string, query: string, entries: ReadonlyArray<readonly [Doc, number]>): void {
    for (const [doc, score] of entries) this.lru.set(this.key(stageId, query, doc), score);
    if (!this.shared || entries.length === 0) return;
    const tag = sharedTag(stageId, query);
    this.shared.setMany(
      entries.map(([doc, score]) => {
        const v = Buffer.allocUnsafe(8);
        v.writeDoubleLE(score, 0);
        return [this.sharedKey(tag, doc), v] as const;
      }),
    );
  }

  private sharedKey(tag: string, doc: Doc): string {
    return `s:{${tag}}${digest(`${doc.id}\u0000${this.contentHash(doc)}`)}`;
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

/** 96 bits of sha1: fixed-length keys however long the scorer id, query or document id. */
function digest(s: string): string {
  return createHash('sha1').update(s).digest('base64url').slice(0, 16);
}

function sharedTag(stageId: string, query: string): string {
  return digest(`${stageId}\u0000${query}`);
}

/** UTF-16 key characters, the number, and Map entry overhead (measured order of magnitude). */
function entryBytes(key: string): number {
  return key.length * 2 + 8 + 64;
}
