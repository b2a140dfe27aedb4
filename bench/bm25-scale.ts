/**
 * BM25 at scale through the segmented collection: documents are generated on the fly (Zipfian
 * vocabulary, 100-300 tokens each), so the raw corpus never sits in memory, and the collection
 * flushes a segment every `--segment-docs` documents, which bounds what the build holds.
 *
 * After the build, serving is measured in fresh child processes (so their RSS is the reader's
 * own, not the build's): the paged reader (Collection.open: postings read on demand through a
 * bounded LRU), and, as the peer, every segment file read whole into memory the way readers did
 * before format 2 (`--peer memory`, default when --docs <= 2M). Children run in rotating order.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/bm25-scale.js [--docs 1000000] [--segment-docs 100000] [--dir /tmp/winnow-bm25-scale] [--out bm25-scale] [--serve-only]
 *
 * --serve-only reuses the collection in --dir. Writes bench/results/<out>.json and .md.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Doc } from '../src/core/types.js';
import { MemoryBm25File } from '../src/retrieve/bm25/paged.js';
import { SegmentedBm25 } from '../src/retrieve/collection/bm25.js';
import { Collection } from '../src/retrieve/collection/collection.js';
import { readManifest } from '../src/retrieve/collection/manifest.js';

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

function dirBytes(dir: string, suffix: string): number {
  return fs.readdirSync(dir).filter((f) => f.endsWith(suffix)).reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);
}
const mb = (b: number): number => Math.round(b / 2 ** 20);
const vmHwm = (): number => Number(/VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) * 1024;
const PEER_DEFAULT = DOCS <= 2_000_000 ? 'memory' : 'none';
const PEER = opt('peer', PEER_DEFAULT);
const OUT = opt('out', 'bm25-scale');

/** Queries: 2-4 words from the head-to-mid of the Zipf curve, like real keyword queries; own seed, so every process asks the same. */
function makeQueries(): string[] {
  let qseed = 4242;
  const qrand = (): number => ((qseed = (Math.imul(qseed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const queries: string[] = [];
  for (let q = 0; q < 200; q++) {
    const n = 2 + Math.floor(qrand() * 3);
    const ws: string[] = [];
    for (let j = 0; j < n; j++) ws.push(WORDS[20 + Math.floor(qrand() ** 2 * 20000)]);
    queries.push(ws.join(' '));
  }
  return queries;
}

interface ServeResult {
  reader: string;
  openSeconds: number;
  rssAfterOpenMb: number;
  /** queries/s: top 10 first pass (postings not yet cached), second pass, then top 1000 */
  qps: { k10first: number; k10second: number; k1000: number };
  peakRssMb: number;
  rssAtEndMb: number;
  /** sum of the scores of every top-10 hit: equal across readers when they score alike */
  checksum: number;
  /**
   * paged reader only: the text of every top-10 hit read by id, as a reranking stage does.
   * `firstGetSeconds` includes building the id table; `qps` is queries/s of search + 10 reads.
   */
  fetch?: { firstGetSeconds: number; qps: number; rssMb: number };
}

/** One reader in this (fresh) process: open, then the query passes; prints JSON. */
function serve(reader: string): void {
  const timer = setInterval(sample, 50);
  const queries = makeQueries();
  const o0 = performance.now();
  let search: (q: string, k: number) => { score: number }[];
  let collection: Collection | undefined;
  if (reader === 'paged') {
    const c = (collection = Collection.open(DIR));
    search = (q, k) => c.searchBm25(q, k);
  } else {
    // The pre-format-2 reader: every segment file read whole (sha256 checked), dictionaries as maps.
    const m = readManifest(DIR);
    const sources = m.segments.map((s) => new MemoryBm25File(path.join(DIR, s.bm25)));
    const c = m.config;
    const bm25 = new SegmentedBm25(sources.map((source) => ({ source })), c.bm25, { stem: c.stem, stopWords: c.stopWords, lossyNorms: c.lossyNorms });
    search = (q, k) => bm25.search(q, k);
  }
  const openSeconds = (performance.now() - o0) / 1000;
  const rssAfterOpen = process.memoryUsage().rss;
  const pass = (k: number): number => {
    const s0 = performance.now();
    for (const q of queries) search(q, k);
    return queries.length / ((performance.now() - s0) / 1000);
  };
  const k10first = pass(10);
  const k10second = pass(10);
  const k1000 = pass(1000);
  let checksum = 0;
  for (const q of queries) for (const h of search(q, 10)) checksum += h.score;
  let fetch: ServeResult['fetch'];
  if (collection) {
    const c = collection;
    const g0 = performance.now();
    c.get(c.searchBm25(queries[0], 1)[0].docId);
    const firstGetSeconds = (performance.now() - g0) / 1000;
    const f0 = performance.now();
    let chars = 0;
    for (const q of queries) for (const h of c.searchBm25(q, 10)) chars += c.get(h.docId)!.text.length;
    if (chars === 0) throw new Error('fetched documents have no text');
    fetch = { firstGetSeconds, qps: queries.length / ((performance.now() - f0) / 1000), rssMb: mb(process.memoryUsage().rss) };
  }
  clearInterval(timer);
  const out: ServeResult = { reader, openSeconds, rssAfterOpenMb: mb(rssAfterOpen), qps: { k10first, k10second, k1000 }, peakRssMb: mb(vmHwm()), rssAtEndMb: mb(process.memoryUsage().rss), checksum, ...(fetch ? { fetch } : {}) };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

function child(reader: string): ServeResult {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), ...args, '--serve', reader], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`serving child (${reader}) failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as ServeResult;
}

async function build(): Promise<Record<string, unknown>> {
  const timer = setInterval(sample, 100);
  fs.rmSync(DIR, { recursive: true, force: true });
  const rss0 = process.memoryUsage().rss;
  const t0 = performance.now();
  const c = Collection.create(DIR, { segmentDocs: SEGMENT_DOCS, maxSegments: 1000 });
  const segTimes: number[] = [];
  let writePeak = 0;
  await c.add(generate(), {
    progress: true,
    expectedCount: DOCS,
    onSegment: () => {
      sample();
      writePeak = peakRss;
      segTimes.push((performance.now() - t0) / 1000);
      // One line per segment, so a run stopped early still says how far it got and at what memory.
      process.stderr.write(`segment ${segTimes.length}: ${segTimes.length * SEGMENT_DOCS} docs at ${segTimes[segTimes.length - 1].toFixed(0)} s, RSS ${mb(process.memoryUsage().rss)} MB, peak ${mb(peakRss)} MB, load ${os.loadavg()[0].toFixed(1)}\n`);
    },
  });
  const buildSeconds = (performance.now() - t0) / 1000;
  sample();
  c.close();
  clearInterval(timer);
  return {
    tokens,
    buildSeconds,
    docsPerSecond: DOCS / buildSeconds,
    segmentFlushSeconds: segTimes,
    rssAtStartMb: mb(rss0),
    segmentWritePeakRssMb: mb(writePeak),
    buildPeakRssMb: mb(peakRss),
  };
}

async function main(): Promise<void> {
  const serveAs = opt('serve', '');
  if (serveAs) return serve(serveAs);
  const built = args.includes('--serve-only') ? (JSON.parse(fs.readFileSync(`bench/results/${OUT}.json`, 'utf8')) as { build: Record<string, unknown> }).build : await build();
  const load0 = os.loadavg();
  // Rotating order: paged, peer, paged again; each child is a fresh process.
  const readers = PEER === 'none' ? ['paged', 'paged'] : ['paged', PEER, 'paged'];
  const runs = readers.map((r) => child(r));
  const f0 = performance.now();
  Collection.open(DIR, { verify: 'full' }).close();
  const openFullSeconds = (performance.now() - f0) / 1000;
  const m = readManifest(DIR);
  const out = {
    command: `node dist/bench/bm25-scale.js ${args.join(' ')}`.trim(),
    machine: { cpus: os.cpus().length, node: process.version, loadavgBeforeServing: load0, loadavgAtEnd: os.loadavg() },
    corpus: { docs: DOCS, vocab: VOCAB, zipfS: ZIPF_S, lengths: '100-300 tokens, uniform' },
    segmentDocs: SEGMENT_DOCS,
    segments: m.segments.length,
    bm25IndexMb: mb(dirBytes(DIR, '.bm25')),
    docStoreMb: mb(dirBytes(DIR, '.docs')),
    metaMb: mb(dirBytes(DIR, '.meta')),
    build: built,
    openSecondsVerifyFull: openFullSeconds,
    serving: runs,
  };
  fs.mkdirSync('bench/results', { recursive: true });
  fs.writeFileSync(`bench/results/${OUT}.json`, `${JSON.stringify(out, null, 2)}\n`);
  const b = built as { buildSeconds: number; docsPerSecond: number; tokens: number; segmentWritePeakRssMb: number; rssAtStartMb: number; buildPeakRssMb: number };
  const la = (l: number[]): string => l.map((x) => x.toFixed(1)).join(' ');
  const row = (r: ServeResult): string =>
    `| ${r.reader} | ${r.openSeconds.toFixed(2)} s | ${r.rssAfterOpenMb} MB | ${r.qps.k10first.toFixed(1)} | ${r.qps.k10second.toFixed(1)} | ${r.qps.k1000.toFixed(1)} | ` +
    `${r.fetch ? `${r.fetch.firstGetSeconds.toFixed(2)} s | ${r.fetch.qps.toFixed(1)} | ${r.fetch.rssMb} MB` : '– | – | –'} | ${r.peakRssMb} MB | ${r.checksum.toFixed(3)} |`;
  const md = [
    `## ${DOCS.toLocaleString('en-US')} documents`,
    '',
    `Command: \`${out.command}\` (after \`npx tsc -p tsconfig.json\`); ${out.machine.cpus} cores shared with other jobs (load average ${la(load0)} before serving, ${la(out.machine.loadavgAtEnd)} at the end), Node ${out.machine.node}.`,
    '',
    `Corpus: ${DOCS} synthetic documents generated on the fly (never all in memory), ${b.tokens} tokens, Zipf(s=${ZIPF_S}) over ${VOCAB} words, lengths uniform 100-300.`,
    '',
    `| build | value |`,
    `|---|---|`,
    `| build time | ${b.buildSeconds.toFixed(0)} s (${b.docsPerSecond.toFixed(0)} docs/s) |`,
    `| segments (flush every ${SEGMENT_DOCS} docs) | ${out.segments} |`,
    `| BM25 postings on disk | ${out.bm25IndexMb} MB |`,
    `| document store on disk | ${out.docStoreMb} MB (+ ${out.metaMb} MB offsets/keys) |`,
    `| peak RSS while writing segments | ${b.segmentWritePeakRssMb} MB (process start ${b.rssAtStartMb} MB) |`,
    `| peak RSS of the build including the commit (which opens the new generation) | ${b.buildPeakRssMb} MB |`,
    `| open with full sha256 verification of every file (no verify cache) | ${openFullSeconds.toFixed(1)} s |`,
    '',
    'Serving, each reader in a fresh process, in this order (200 queries of 2-4 words; "first" = postings not yet in the cache; ' +
      '"+ read 10 docs" = top 10 and the text of each hit read by id, as a reranking stage does; its first read builds the id table; checksum = sum of all top-10 scores):',
    '',
    '| reader | open | RSS after open | q/s top 10, first | q/s top 10, second | q/s top 1000 | first read by id | q/s top 10 + read 10 docs | RSS after reads | peak RSS of the process | checksum |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...runs.map(row),
  ].join('\n');
  fs.writeFileSync(`bench/results/${OUT}.md`, `${md}\n`);
  console.log(md);
}

await main();
