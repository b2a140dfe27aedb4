/**
 * Opening a collection with sha256 verification of every file: cold (no verification cache:
 * every byte hashed) against warm (`verified.json` vouches for unchanged files). Builds a
 * synthetic collection once (Zipfian words as in bench/bm25-scale.ts, shorter documents so the
 * build takes minutes, not a quarter hour) and reuses it on later runs.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/collection-open.js [--docs 1000000] [--dir /tmp/winnow-open-bench] [--runs 3]
 *
 * Prints a markdown table; bench/results/collection-open.md holds a run.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Doc } from '../src/core/types.js';
import { Collection, checkFiles, readManifest } from '../src/retrieve/collection/collection.js';

const args = process.argv.slice(2);
const opt = (name: string, fallback: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const DOCS = Number(opt('docs', '1000000'));
const RUNS = Number(opt('runs', '3'));
const DIR = opt('dir', path.join(os.tmpdir(), 'winnow-open-bench'));
const VOCAB = 100_000;

const SYL = ['ba', 'ko', 'ri', 'tu', 'me', 'sa', 'lo', 'ni', 'de', 'fu', 'ga', 'pe', 'zo', 'vi', 'ha', 'ju'];
function word(rank: number): string {
  let w = '';
  for (let r = rank + 16; r > 0; r = Math.floor(r / 16)) w += SYL[r % 16];
  return `${w}x`;
}
const WORDS = Array.from({ length: VOCAB }, (_, i) => word(i));
const cdf = new Float64Array(VOCAB);
{
  let sum = 0;
  for (let i = 0; i < VOCAB; i++) cdf[i] = sum += 1 / (i + 1) ** 1.07;
  for (let i = 0; i < VOCAB; i++) cdf[i] /= sum;
}
let seed = 42;
const rand = (): number => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
function zipfRank(): number {
  const u = rand();
  let lo = 0;
  let hi = VOCAB - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cdf[mid] < u) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
function* docs(n: number): IterableIterator<Doc> {
  for (let i = 0; i < n; i++) {
    const len = 20 + Math.floor(rand() * 40);
    const w: string[] = [];
    for (let j = 0; j < len; j++) w.push(WORDS[zipfRank()]);
    yield { id: `doc${i}`, text: w.join(' ') };
  }
}

async function main(): Promise<void> {
  if (!fs.existsSync(path.join(DIR, 'manifest.json'))) {
    const t0 = Date.now();
    const c = Collection.create(DIR, { segmentDocs: 100_000 });
    await c.add(docs(DOCS), { progress: process.stderr.isTTY, expectedCount: DOCS });
    c.close();
    console.log(`built ${DOCS} documents in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }
  const m = readManifest(DIR);
  const bytes = Object.values(m.files).reduce((n, f) => n + f.bytes, 0);
  const time = (f: () => void): number => {
    const t = process.hrtime.bigint();
    f();
    return Number(process.hrtime.bigint() - t) / 1e6;
  };
  const cold: number[] = [];
  const warm: number[] = [];
  const hashCold: number[] = [];
  const hashWarm: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    fs.rmSync(path.join(DIR, 'verified.json'), { force: true });
    hashCold.push(time(() => checkFiles(DIR, m.files, true)));
    hashWarm.push(time(() => checkFiles(DIR, m.files, true)));
    fs.rmSync(path.join(DIR, 'verified.json'), { force: true });
    cold.push(time(() => Collection.open(DIR).close()));
    warm.push(time(() => Collection.open(DIR).close()));
  }
  const med = (a: number[]): string => {
    const m = [...a].sort((x, y) => x - y)[a.length >> 1];
    return m < 1000 ? `${m.toFixed(1)} ms` : `${(m / 1000).toFixed(2)} s`;
  };
  console.log(`\n${m.segments.reduce((n, s) => n + s.docs - s.deleted, 0)} documents, ${m.segments.length} segments, ${Object.keys(m.files).length} files, ${(bytes / 2 ** 20).toFixed(0)} MB; median of ${RUNS} runs; Node ${process.version}, ${os.cpus().length} cores, load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}\n`);
  console.log('| measure | cold (no verified.json: every byte hashed) | warm (verified.json vouches) |');
  console.log('|---|---|---|');
  console.log(`| verification only (\`checkFiles\`) | ${med(hashCold)} | ${med(hashWarm)} |`);
  console.log(`| whole \`Collection.open\` (verification + loading postings, stores, ids) | ${med(cold)} | ${med(warm)} |`);
}

await main();
