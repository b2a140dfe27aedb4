import fs from 'node:fs';
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
