import fs from 'node:fs';
import autocannon from 'autocannon';
import { percentile } from '../src/eval/stats.js';

/** Shared by the benchmarks: the median of a sample (numpy's, as every benchmark reports it). */
export function median(xs: readonly number[]): number {
  return percentile(xs, 50);
}

/** A whole JSONL file, parsed; benchmarks read small committed or shared files only. */
export function readJsonl<T>(file: string): T[] {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as T);
}

/** A pause between benchmark cells, so one cell's stragglers (GC, sockets closing) do not bill the next. */
export function settle(ms = 300): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * An autocannon run timed from the call to the last answer, with every answered request's
 * latency. autocannon's own `start`/`finish` are no use for a run of `amount` requests: it
 * reports at its next 1-second tick after the last answer, up to a second late, a quarter of
 * a 4-second cell.
 */
export function cannon(opts: autocannon.Options): Promise<{ result: autocannon.Result; seconds: number; latencies: number[] }> {
  const latencies: number[] = [];
  const t0 = performance.now();
  let last = t0;
  return new Promise((resolve, reject) => {
    const instance = autocannon(opts, (err: unknown, result) => {
      if (err) return reject(err instanceof Error ? err : new Error(String(err)));
      resolve({ result, seconds: (last - t0) / 1000, latencies });
    });
    instance.on('response', (_client, status: number, _bytes: number, ms: number) => {
      last = performance.now();
      if (status >= 200 && status < 300) latencies.push(ms);
    });
  });
}
