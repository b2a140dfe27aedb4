import { Cluster, Redis } from 'ioredis';
import CircuitBreaker from 'opossum';
import { WinnowError } from '../core/errors.js';
import { cacheCounters, type SharedTierStats, type SharedTierWithStats } from './counters.js';
import { type CacheName, hashTag } from './shared-tier.js';

export interface RedisTierOptions {
  /** a standalone server: `redis://[[user]:password@]host:port[/db]` (or `rediss://` for TLS) */
  url?: string;
  /** seed nodes of a Redis Cluster, `host:port` each; the client learns the rest */
  cluster?: readonly string[];
  /** prepended to every key (no braces: they would change the hash tag); default `winnow:` */
  prefix?: string;
  /** time to live of every value written; default one day */
  ttlSeconds?: number;
  /** a command not answered within this is abandoned and counted as a timeout; default 50 */
  timeoutMs?: number;
  /** values larger than this are neither written nor trusted when read; default 1 MiB */
  maxValueBytes?: number;
  /** the breaker opens when at least this percentage of the last 10 s of calls failed; default 50 */
  errorThresholdPercent?: number;
  /** calls within the window before the breaker may open; default 5 */
  volumeThreshold?: number;
  /** how long an open breaker skips Redis before letting one probe through; default 1000 ms */
  resetMs?: number;
  /** most keys being written at once; more writes are dropped (counted) while Redis is slow; default 10000 */
  maxPendingWrites?: number;
  /** state changes (connected, breaker opened/closed), one object each; default: none */
  log?: (event: Record<string, unknown>) => void;
}

type FailureKind = 'timeout' | 'error' | 'breaker_open' | 'write_dropped' | 'oversized' | 'connect_error';

/**
 * The shared tier on Redis, standalone or cluster (`ioredis`), for many Winnow replicas.
 *
 * Redis is an optimisation here, never a dependency: every command has a short timeout
 * (`timeoutMs`), nothing queues while disconnected (`enableOfflineQueue: false`: a command
 * fails at once instead of waiting for a reconnect), and a circuit breaker (`opossum`) stops
 * calling a Redis that keeps failing, so a dead cache costs a request nothing after the breaker
 * opens and at most `timeoutMs` before. The client reconnects on its own (backoff up to 1 s);
 * the breaker's periodic probe closes it again once Redis answers.
 *
 * Keys are grouped by hash tag before MGET: in a cluster, one MGET may only touch one slot,
 * and the caches tag keys so that a batch falls into few groups (see `ScoreCache` and
 * `EmbeddingCache` for which tags they use). Writes are `SET key value PX ttl`, auto-pipelined
 * (one round trip per node per event-loop turn) and not awaited by the caller.
 */
export class RedisTier implements SharedTierWithStats {
  readonly prefix: string;
  readonly maxValueBytes: number;
  readonly mode: 'standalone' | 'cluster';
  private readonly client: Redis | Cluster;
  private readonly breaker: CircuitBreaker<[() => Promise<unknown>], unknown>;
  private readonly ttlMs: number;
  private readonly maxPendingWrites: number;
  private readonly log?: (event: Record<string, unknown>) => void;
  private pendingWrites = 0;
  private writes = 0;
  private readonly lookups: Record<CacheName, { asked: number; found: number }> = {
    score: { asked: 0, found: 0 },
    embedding: { asked: 0, found: 0 },
  };
  private readonly failures: Record<FailureKind, number> = { timeout: 0, error: 0, breaker_open: 0, write_dropped: 0, oversized: 0, connect_error: 0 };
  private lastError = '';
  private wasReady = false;
  private closed = false;

  constructor(opts: RedisTierOptions) {
    if (!opts.url === !opts.cluster) throw new WinnowError('usage', 'the Redis cache needs a URL (--redis) or cluster nodes (--redis-cluster), not both');
    this.prefix = opts.prefix ?? 'winnow:';
    if (/[{}]/.test(this.prefix)) throw new WinnowError('usage', `--redis-prefix must not contain braces (got "${this.prefix}")`, 'braces would change the hash tag that keeps a batch on one cluster slot');
    const timeoutMs = positive(opts.timeoutMs ?? 50, 'timeout');
    this.ttlMs = 1000 * positive(opts.ttlSeconds ?? 86_400, 'TTL');
    this.maxValueBytes = positive(opts.maxValueBytes ?? 1024 * 1024, 'value size bound');
    this.maxPendingWrites = positive(opts.maxPendingWrites ?? 10_000, 'pending writes bound');
    this.log = opts.log;
    // Reconnect forever, quickly: a restarted Redis should be used again within a second.
    const retry = (times: number): number => Math.min(100 * times, 1000);
    const common = { commandTimeout: timeoutMs, connectTimeout: Math.max(500, 10 * timeoutMs), maxRetriesPerRequest: 0, enableAutoPipelining: true };
    if (opts.url) {
      if (!/^rediss?:\/\//.test(opts.url)) throw new WinnowError('usage', `--redis takes a redis:// or rediss:// URL, got "${opts.url}"`);
      this.mode = 'standalone';
      this.client = new Redis(opts.url, { ...common, enableOfflineQueue: false, retryStrategy: retry });
    } else {
      this.mode = 'cluster';
      const nodes = (opts.cluster ?? []).map(parseNode);
      if (nodes.length === 0) throw new WinnowError('usage', '--redis-cluster needs at least one host:port');
      this.client = new Cluster(nodes, {
        enableOfflineQueue: false,
        enableAutoPipelining: true,
        clusterRetryStrategy: retry,
        slotsRefreshTimeout: Math.max(1000, 10 * timeoutMs),
        redisOptions: common,
      });
    }
    this.client.on('error', (e: Error) => {
      this.failures.connect_error++;
      this.noteError(e);
    });
    this.client.on('ready', () => {
      this.wasReady = true;
      this.log?.({ event: 'redis_ready', mode: this.mode });
    });
    this.breaker = new CircuitBreaker((op: () => Promise<unknown>) => op(), {
      // the commands carry their own timeout; a second one here would only race it
      timeout: false,
      errorThresholdPercentage: opts.errorThresholdPercent ?? 50,
      volumeThreshold: opts.volumeThreshold ?? 5,
      resetTimeout: opts.resetMs ?? 1000,
      rollingCountTimeout: 10_000,
      rollingCountBuckets: 10,
    });
    this.breaker.on('open', () => this.log?.({ event: 'redis_breaker', state: 'open', reason: this.lastError }));
    this.breaker.on('close', () => this.log?.({ event: 'redis_breaker', state: 'closed' }));
    cacheCounters.tiers.add(this);
  }

  async getMany(keys: readonly string[], cache: CacheName): Promise<(Buffer | undefined)[]> {
    const out: (Buffer | undefined)[] = new Array(keys.length).fill(undefined);
    if (keys.length === 0 || this.closed) return out;
    let found = 0;
    await Promise.all(
      this.groups(keys).map(async (idx) => {
        try {
          const values = (await this.breaker.fire(() => this.client.mgetBuffer(idx.map((i) => this.prefix + keys[i])))) as (Buffer | null)[];
          values.forEach((v, j) => {
            if (!v) return;
            if (v.length > this.maxValueBytes) {
              this.failures.oversized++;
              return;
            }
            out[idx[j]] = v;
            found++;
          });
        } catch (e) {
          this.fail(e);
        }
      }),
    );
    this.lookups[cache].asked += keys.length;
    this.lookups[cache].found += found;
    return out;
  }

  setMany(entries: ReadonlyArray<readonly [key: string, value: Buffer]>): void {
    if (this.closed) return;
    const fits = entries.filter(([, v]) => v.length <= this.maxValueBytes);
    this.failures.oversized += entries.length - fits.length;
    if (fits.length === 0) return;
    // While Redis is slow, writes would pile up in memory: past the bound they are dropped.
    if (this.pendingWrites + fits.length > this.maxPendingWrites || this.breaker.opened) {
      this.failures.write_dropped += fits.length;
      return;
    }
    for (const idx of this.groups(fits.map(([k]) => k))) {
      this.pendingWrites += idx.length;
      this.breaker
        .fire(() => Promise.all(idx.map((i) => this.client.set(this.prefix + fits[i][0], fits[i][1], 'PX', this.ttlMs))))
        .then(
          () => {
            this.writes += idx.length;
          },
          (e: unknown) => this.fail(e),
        )
        .finally(() => {
          this.pendingWrites -= idx.length;
        });
    }
  }

  stats(): SharedTierStats {
    return {
      backend: 'redis',
      connected: this.client.status === 'ready',
      breaker: this.breaker.opened ? 'open' : this.breaker.halfOpen ? 'half-open' : 'closed',
      lookups: { score: { ...this.lookups.score }, embedding: { ...this.lookups.embedding } },
      failures: { ...this.failures },
      writes: this.writes,
      pendingWrites: this.pendingWrites,
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    cacheCounters.tiers.delete(this);
    this.breaker.shutdown();
    // A cache owes nobody its unsent writes: drop the connection rather than wait on a slow Redis.
    this.client.disconnect();
  }

  /** Index groups that may share one MGET: all keys standalone, one hash tag each in a cluster. */
  private groups(keys: readonly string[]): number[][] {
    if (this.mode === 'standalone') return [keys.map((_, i) => i)];
    const byTag = new Map<string, number[]>();
    keys.forEach((k, i) => {
      const tag = hashTag(k);
      let g = byTag.get(tag);
      if (!g) byTag.set(tag, (g = []));
      g.push(i);
    });
    return [...byTag.values()];
  }

  private fail(e: unknown): void {
    const err = e as Error & { code?: string };
    if (err.code === 'EOPENBREAKER') {
      this.failures.breaker_open++;
      return;
    }
    if (/timed? ?out/i.test(err.message)) this.failures.timeout++;
    else this.failures.error++;
    this.noteError(err);
  }

  private noteError(e: Error): void {
    const first = this.lastError === '' || this.wasReady;
    this.lastError = e.message;
    // one line per outage, not one per failed command or reconnect attempt
    if (first && !this.closed) this.log?.({ event: 'redis_unavailable', mode: this.mode, error: e.message });
    this.wasReady = false;
  }
}

function positive(n: number, what: string): number {
  if (!Number.isFinite(n) || n <= 0) throw new WinnowError('usage', `Redis cache ${what} must be a positive number, got ${n}`);
  return n;
}

function parseNode(s: string): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(s.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 1 || port > 65_535) throw new WinnowError('usage', `--redis-cluster takes host:port nodes separated by commas, got "${s}"`);
  return { host: m[1], port };
}
