import { cacheCounters, type SharedTierStats } from '../cache/counters.js';
import { Gauge, type Registry } from './metrics.js';

type Series = [Record<string, string>, number];

const BREAKER_STATE = { closed: 0, 'half-open': 1, open: 2 } as const;

/**
 * Cache series for /metrics, all read at scrape time from the process-wide counters
 * (`cache/counters.ts`): hits by cache and tier, misses, and for the shared tier (Redis) its
 * connection, breaker state, lookups and failures. The totals only grow; they are exposed as
 * gauges read on scrape, like the score-cache lookups above them. A process normally has one
 * shared tier; should it have several, counts are summed, `connected` is the worst and the
 * breaker state the most open.
 */
export function addCacheMetrics(metrics: Registry): void {
  metrics.add(new Gauge('winnow_cache_hits_total', 'Cache hits by cache (score, embedding) and tier that answered (local LRU, disk, redis)', () => cacheCounters.hits()));
  metrics.add(new Gauge('winnow_cache_misses_total', 'Cache lookups no tier could answer, by cache', () => cacheCounters.misses()));
  const tiers = (): SharedTierStats[] => [...cacheCounters.tiers].map((t) => t.stats());
  const byBackend = (read: (s: SharedTierStats) => Series[], combine: (a: number, b: number) => number = (a, b) => a + b): Series[] => {
    const out = new Map<string, Series>();
    for (const s of tiers()) {
      for (const [labels, v] of read(s)) {
        const all = { backend: s.backend, ...labels };
        const k = JSON.stringify(all);
        const prev = out.get(k);
        out.set(k, [all, prev ? combine(prev[1], v) : v]);
      }
    }
    return [...out.values()];
  };
  metrics.add(new Gauge('winnow_shared_cache_connected', 'Whether the shared cache tier has a working connection (1) or not (0)', () => byBackend((s) => [[{}, s.connected ? 1 : 0]], Math.min)));
  metrics.add(
    new Gauge('winnow_shared_cache_breaker_state', 'Circuit breaker of the shared cache tier: 0 closed (in use), 1 half-open (probing), 2 open (skipped)', () =>
      byBackend((s) => [[{}, BREAKER_STATE[s.breaker]]], Math.max),
    ),
  );
  metrics.add(
    new Gauge('winnow_shared_cache_lookups_total', 'Keys asked of the shared cache tier, by cache and result (hit, miss)', () =>
      byBackend((s) =>
        Object.entries(s.lookups).flatMap(([cache, l]): Series[] => [
          [{ cache, result: 'hit' }, l.found],
          [{ cache, result: 'miss' }, l.asked - l.found],
        ]),
      ),
    ),
  );
  metrics.add(
    new Gauge(
      'winnow_shared_cache_errors_total',
      'Shared cache tier failures by kind: timeout, error, breaker_open (call skipped), write_dropped, oversized, connect_error; none of them fails a request',
      () => byBackend((s) => Object.entries(s.failures).map(([kind, n]): Series => [{ kind }, n])),
    ),
  );
  metrics.add(new Gauge('winnow_shared_cache_writes_total', 'Keys written to the shared cache tier', () => byBackend((s) => [[{}, s.writes]])));
}
