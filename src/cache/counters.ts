import type { CacheName, SharedTier } from './shared-tier.js';

/** Where a cached value came from: this process's LRU, the on-disk embedding store, or Redis. */
export type CacheTier = 'local' | 'disk' | 'redis';

/**
 * Process-wide cache counters, read by /metrics at scrape time. Caches live inside scorers
 * (document embeddings) and runs (scores), often behind wrappers, so they report here rather
 * than the server walking its stages to find them.
 */
class CacheCounters {
  private readonly hitCounts = new Map<string, number>();
  private readonly missCounts = new Map<CacheName, number>();
  /** shared tiers open in this process, for their connection and breaker metrics */
  readonly tiers = new Set<SharedTierWithStats>();

  hit(cache: CacheName, tier: CacheTier, n = 1): void {
    if (n === 0) return;
    const k = `${cache}|${tier}`;
    this.hitCounts.set(k, (this.hitCounts.get(k) ?? 0) + n);
  }

  /** a lookup no tier could answer */
  miss(cache: CacheName, n = 1): void {
    if (n === 0) return;
    this.missCounts.set(cache, (this.missCounts.get(cache) ?? 0) + n);
  }

  hits(): Array<[{ cache: CacheName; tier: CacheTier }, number]> {
    return [...this.hitCounts].map(([k, n]) => {
      const [cache, tier] = k.split('|') as [CacheName, CacheTier];
      return [{ cache, tier }, n];
    });
  }

  misses(): Array<[{ cache: CacheName }, number]> {
    return [...this.missCounts].map(([cache, n]) => [{ cache }, n]);
  }
}

/** What /metrics shows of a shared tier. */
export interface SharedTierStats {
  /** `redis` */
  readonly backend: string;
  /** 1 while the client has a working connection */
  readonly connected: boolean;
  /** `closed` (calls go through), `open` (calls skipped), `half-open` (one probe allowed) */
  readonly breaker: 'closed' | 'open' | 'half-open';
  /** keys asked for and found, by calling cache */
  readonly lookups: Readonly<Record<CacheName, { asked: number; found: number }>>;
  /** failures by kind: timeout, error, breaker_open (calls skipped), write_dropped, oversized */
  readonly failures: Readonly<Record<string, number>>;
  /** keys written */
  readonly writes: number;
  /** keys being written now */
  readonly pendingWrites: number;
}

export interface SharedTierWithStats extends SharedTier {
  stats(): SharedTierStats;
}

export const cacheCounters = new CacheCounters();
