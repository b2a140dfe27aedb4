/**
 * BM25 at a million documents through the segmented collection: documents are generated on the
 * fly (Zipfian vocabulary, 100-300 tokens each), so the raw corpus never sits in memory, and the
 * collection flushes a segment every `--segment-docs` documents, which bounds what the build holds.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/bm25-scale.js [--docs 1000000] [--segment-docs 100000] [--dir /tmp/winnow-bm25-scale]
 *
 * Writes bench/results/bm25-scale.json and bench/results/bm25-scale.md.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Doc } from '../src/core/types.js';
import { Collection } from '../src/retrieve/collection/collection.js';

const args = process.argv.slice(2);
const opt = (name: string, fallback: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const DOCS = Number(opt('docs', '1000000'));
const SEGMENT_DOCS = Number(opt('segment-docs', '100000'));
const VOCAB = Number(opt('vocab', '200000'));
const ZIPF_S = 1.07;
const DIR = opt('dir', path.join(os.tmpdir(), 'winnow-bm25-scale'));

/** Vocabulary words: pronounceable letter strings, so the analyzer treats them as words. */
const SYL = ['ba', 'ko', 'ri', 'tu', 'me', 'sa', 'lo', 'ni', 'de', 'fu', 'ga', 'pe', 'zo', 'vi', 'ha', 'ju'];
function word(rank: number): string {
  let w = '';
  let r = rank + 16;
  while (r > 0) {
    w += SYL[r % 16];
    r = Math.floor(r / 16);
  }
  return `${w}x`;
}
const WORDS = Array.from({ length: VOCAB }, (_, i) => word(i));

/** Inverse-CDF Zipf sampling over a precomputed cumulative table. */
const cdf = new Float64Array(VOCAB);
{
  let sum = 0;
  for (let i = 0; i < VOCAB; i++) cdf[i] = sum += 1 / (i + 1) ** ZIPF_S;
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

let tokens = 0;
function* generate(): Generator<Doc> {
  for (let i = 0; i < DOCS; i++) {
    const len = 100 + Math.floor(rand() * 201);
    const words = new Array<string>(len);
    for (let j = 0; j < len; j++) words[j] = WORDS[zipfRank()];
    tokens += len;
    yield { id: `doc${i}`, text: words.join(' ') };
  }
}

let peakRss = 0;
const sample = (): void => {
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
};
const timer = setInterval(sample, 100);

function dirBytes(dir: string, suffix: string): number {
  return fs.readdirSync(dir).filter((f) => f.endsWith(suffix)).reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);
}

async function main(): Promise<void> {
  fs.rmSync(DIR, { recursive: true, force: true });
  const rss0 = process.memoryUsage().rss;
  const t0 = performance.now();
  const c = Collection.create(DIR, { segmentDocs: SEGMENT_DOCS, maxSegments: 64 });
  const segTimes: number[] = [];
  let writePeak = 0;
  await c.add(generate(), { progress: true, expectedCount: DOCS, onSegment: () => {
    sample();
    writePeak = peakRss;
    segTimes.push((performance.now() - t0) / 1000);
  } });
  const buildSeconds = (performance.now() - t0) / 1000;
  sample();
  const buildPeakRss = peakRss;
  c.close();

  const o0 = performance.now();
  const reader = Collection.open(DIR, { verify: 'full' });
  const openSeconds = (performance.now() - o0) / 1000;
  const openSizeOnly0 = performance.now();
  Collection.open(DIR, { verify: 'size' }).close();
  const openSizeOnlySeconds = (performance.now() - openSizeOnly0) / 1000;
  sample();

  // Queries: 2-4 words from the head-to-mid of the Zipf curve, like real keyword queries.
  const queries: string[] = [];
  for (let q = 0; q < 200; q++) {
    const n = 2 + Math.floor(rand() * 3);
    const ws: string[] = [];
    for (let j = 0; j < n; j++) ws.push(WORDS[20 + Math.floor(rand() ** 2 * 20000)]);
    queries.push(ws.join(' '));
  }
  const qps: Record<string, number> = {};
  for (const k of [10, 1000]) {
    const s0 = performance.now();
    for (const q of queries) reader.searchBm25(q, k);
    qps[`k=${k}`] = queries.length / ((performance.now() - s0) / 1000);
  }
  sample();
  clearInterval(timer);
  const vmHwm = Number(/VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) * 1024;

  const mb = (b: number): number => Math.round(b / 2 ** 20);
  const out = {
    command: `node dist/bench/bm25-scale.js ${args.join(' ')}`.trim(),
    machine: { cpus: os.cpus().length, node: process.version, loadavg: os.loadavg() },
    corpus: { docs: DOCS, tokens, vocab: VOCAB, zipfS: ZIPF_S, lengths: '100-300 tokens, uniform' },
    segmentDocs: SEGMENT_DOCS,
    segments: reader.segmentCount,
    buildSeconds,
    docsPerSecond: DOCS / buildSeconds,
    segmentFlushSeconds: segTimes,
    bm25IndexMb: mb(dirBytes(DIR, '.bm25')),
    docStoreMb: mb(dirBytes(DIR, '.docs')),
    metaMb: mb(dirBytes(DIR, '.meta')),
    rssAtStartMb: mb(rss0),
    segmentWritePeakRssMb: mb(writePeak),
    buildPeakRssMb: mb(buildPeakRss),
    processPeakRssMb: mb(vmHwm),
    openSecondsVerifyFull: openSeconds,
    openSecondsVerifySize: openSizeOnlySeconds,
    queriesPerSecond: qps,
  };
  fs.mkdirSync('bench/results', { recursive: true });
  fs.writeFileSync('bench/results/bm25-scale.json', `${JSON.stringify(out, null, 2)}\n`);
  const md = [
    '# BM25 at scale: segmented collection build',
    '',
    `Command: \`${out.command}\` (after \`npx tsc -p tsconfig.json\`); ${out.machine.cpus} cores shared with other jobs (load average at the end ${out.machine.loadavg.map((x) => x.toFixed(1)).join(' ')}), Node ${out.machine.node}.`,
    '',
    `Corpus: ${DOCS} synthetic documents generated on the fly (never all in memory), ${tokens} tokens, Zipf(s=${ZIPF_S}) over ${VOCAB} words, lengths uniform 100-300.`,
    '',
    `| measure | value |`,
    `|---|---|`,
    `| build time | ${buildSeconds.toFixed(0)} s (${out.docsPerSecond.toFixed(0)} docs/s) |`,
    `| segments (flush every ${SEGMENT_DOCS} docs) | ${out.segments} |`,
    `| BM25 postings on disk | ${out.bm25IndexMb} MB |`,
    `| document store on disk | ${out.docStoreMb} MB (+ ${out.metaMb} MB offsets/keys) |`,
    `| peak RSS while writing segments | ${out.segmentWritePeakRssMb} MB (process start ${out.rssAtStartMb} MB) |`,
    `| peak RSS including the commit (which opens the new generation: all postings in memory) | ${out.buildPeakRssMb} MB |`,
    `| peak RSS of the whole run (build, open, queries) | ${out.processPeakRssMb} MB |`,
    `| open with full sha256 verification | ${openSeconds.toFixed(1)} s (size-only: ${openSizeOnlySeconds.toFixed(1)} s) |`,
    `| queries/s, top 10 (200 queries of 2-4 words) | ${qps['k=10'].toFixed(1)} |`,
    `| queries/s, top 1000 | ${qps['k=1000'].toFixed(1)} |`,
    '',
    `Memory bound of the build: one segment's documents (${SEGMENT_DOCS} here) with their static BM25 build arrays, plus the id map of the whole collection; the finished segments are on disk and are not read back until the commit opens the new generation.`,
  ].join('\n');
  fs.writeFileSync('bench/results/bm25-scale.md', `${md}\n`);
  console.log(md);
  reader.close();
}

await main();
