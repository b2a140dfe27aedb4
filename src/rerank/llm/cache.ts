import type { ScoreCache } from '../../cascade/cache.js';

/**
 * An LLM answer that is an order (a listwise window's permutation, a setwise set's pick),
 * kept in the run's score cache: position i of window key K is the entry `K\0i`. The score
 * cache's LRU, byte bound and sharing across stages and queries then apply as they do to
 * pointwise scores. A partly evicted or inconsistent entry reads as a miss.
 */
export function getOrder(cache: ScoreCache | undefined, key: string, n: number): number[] | undefined {
  if (!cache) return undefined;
  const order: number[] = [];
  const seen = new Set<number>();
  for (let i = 0; i < n; i++) {
    const v = cache.get(`${key}\u0000${i}`);
    if (v === undefined || !Number.isInteger(v) || v < 0 || v >= n || seen.has(v)) return undefined;
    seen.add(v);
    order.push(v);
  }
  return order;
}

export function setOrder(cache: ScoreCache | undefined, key: string, order: readonly number[]): void {
  if (!cache) return;
  order.forEach((v, i) => cache.set(`${key}\u0000${i}`, v));
}
