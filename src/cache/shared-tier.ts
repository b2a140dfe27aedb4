/**
 * A cache tier shared by several Winnow processes (Redis), behind each process's in-process
 * LRU. The caches (`ScoreCache`, `EmbeddingCache`) build the keys, so they choose the hash tag
 * that decides which keys share a Redis Cluster slot; the tier only moves bytes.
 *
 * A shared tier never fails a caller: when it is down, slow or switched off by its circuit
 * breaker, `getMany` answers "absent" for every key and `setMany` drops the write, and both
 * are counted.
 */
export interface SharedTier {
  /** prepended to every key, so several deployments can share one Redis */
  readonly prefix: string;
  /** values too large to store are dropped on write and ignored on read */
  readonly maxValueBytes: number;
  /**
   * Values for `keys`, in order; `undefined` where absent, unreadable or the tier is unavailable.
   * `cache` names the calling cache for the hit/miss counters.
   */
  getMany(keys: readonly string[], cache: CacheName): Promise<(Buffer | undefined)[]>;
  /** Stores in the background with the tier's TTL; returns at once. */
  setMany(entries: ReadonlyArray<readonly [key: string, value: Buffer]>): void;
  close(): Promise<void>;
}

export type CacheName = 'score' | 'embedding';

/**
 * The part of a key Redis Cluster hashes to pick its slot: the text between the first `{` and
 * the next `}` when that is non-empty, else the whole key (the rule of the cluster spec).
 */
export function hashTag(key: string): string {
  const open = key.indexOf('{');
  if (open < 0) return key;
  const close = key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : key;
}
