/**
 * ANN library choice for the dense first pass: usearch vs hnswlib-node vs exact search, on
 * synthetic unit vectors (a clustered Gaussian mixture, dimension 384 like MiniLM/bge-small).
 * Reports recall@10 against exact search, single-query queries/s, build time and resident
 * memory, each library in its own child process so memory numbers do not mix.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/ann.js [--n 200000] [--dim 384] [--queries 500]
 *
 * Writes bench/results/ann.json and bench/results/ann.md.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AnnIndex, type AnnParams } from '../src/retrieve/dense/ann.js';
import { exactSearch } from '../src/retrieve/dense/exact.js';

const args = process.argv.slice(2);
const arg = (name: string, fallback: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const N = arg('n', 200_000);
const DIM = arg('dim', 384);
const Q = arg('queries', 500);
const CLUSTERS = arg('clusters', 200);
const M = arg('m', 16);
const EFC = arg('ef-construction', 128);
const EF_SWEEP = [16, 32, 64, 128, 256];
const K = 10;

/** Deterministic normals (xorshift32 + Box-Muller) so every child process sees the same data. */
function gaussians(seed: number): () => number {
  let s = seed >>> 0 || 1;
  const u = (): number => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return ((s >>> 0) + 0.5) / 2 ** 32;
  };
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const v = spare;
      spare = undefined;
      return v;
    }
    const r = Math.sqrt(-2 * Math.log(u()));
    const t = 2 * Math.PI * u();
    spare = r * Math.sin(t);
    return r * Math.cos(t);
  };
}

/** n points around `CLUSTERS` random centres (spread 0.35 of a unit centre), normalised. */
function mixture(n: number, seed: number): Float32Array {
  const g = gaussians(seed);
  const centres = new Float32Array(CLUSTERS * DIM);
  const gc = gaussians(12345);
  for (let i = 0; i < centres.length; i++) centres[i] = gc() / Math.sqrt(DIM);
  const out = new Float32Array(n * DIM);
  for (let i = 0; i < n; i++) {
    const c = Math.floor(Math.abs(g() * 1e6)) % CLUSTERS;
    let ss = 0;
    for (let j = 0; j < DIM; j++) {
      const v = centres[c * DIM + j] + (0.35 * g()) / Math.sqrt(DIM);
      out[i * DIM + j] = v;
      ss += v * v;
    }
    const inv = 1 / Math.sqrt(ss);
    for (let j = 0; j < DIM; j++) out[i * DIM + j] *= inv;
  }
  return out;
}

const rssMb = (): number => process.memoryUsage().rss / 2 ** 20;

interface SweepRow {
  efSearch: number;
  recall10: number;
  qps: number;
}
interface LibResult {
  lib: string;
  buildSeconds: number;
  buildRssMb: number;
  sweep: SweepRow[];
}

function recallOf(found: ArrayLike<number>[], truth: Int32Array[]): number {
  let hit = 0;
  for (let q = 0; q < truth.length; q++) {
    const t = new Set(truth[q]);
    for (let i = 0; i < Math.min(K, found[q].length); i++) if (t.has(Number(found[q][i]))) hit++;
  }
  return hit / (truth.length * K);
}

async function child(lib: string, truthFile: string): Promise<LibResult> {
  const data = mixture(N, 1);
  const queries = mixture(Q, 2);
  const raw = fs.readFileSync(truthFile);
  const truthRaw = new Int32Array(raw.length / 4);
  Buffer.from(truthRaw.buffer).set(raw);
  const truth = Array.from({ length: Q }, (_, q) => truthRaw.subarray(q * K, (q + 1) * K));
  global.gc?.();
  const rss0 = rssMb();
  const t0 = performance.now();
  const sweep: SweepRow[] = [];
  const timeSearch = (search: (q: Float32Array) => ArrayLike<number>): SweepRow & { found: ArrayLike<number>[] } => {
    const found: ArrayLike<number>[] = [];
    const s0 = performance.now();
    for (let q = 0; q < Q; q++) found.push(search(queries.subarray(q * DIM, (q + 1) * DIM)));
    const secs = (performance.now() - s0) / 1000;
    return { efSearch: 0, recall10: recallOf(found, truth), qps: Q / secs, found };
  };
  if (lib.startsWith('usearch')) {
    const quantization = lib.split('-')[1] as AnnParams['quantization'];
    const params: AnnParams = { m: M, efConstruction: EFC, efSearch: 64, quantization, exactBelow: 0 };
    const index = AnnIndex.create(DIM, params);
    const keys = new BigUint64Array(N);
    for (let i = 0; i < N; i++) keys[i] = BigInt(i);
    index.add(keys, data);
    const buildSeconds = (performance.now() - t0) / 1000;
    const buildRssMb = rssMb() - rss0;
    const file = path.join(os.tmpdir(), `winnow-ann-${process.pid}.usearch`);
    index.save(file);
    for (const ef of EF_SWEEP) {
      const searcher = AnnIndex.load(file, DIM, { ...params, efSearch: ef });
      const r = timeSearch((q) => Array.from(searcher.search(q, K).keys, Number));
      sweep.push({ efSearch: ef, recall10: r.recall10, qps: r.qps });
    }
    fs.rmSync(file, { force: true });
    return { lib, buildSeconds, buildRssMb, sweep };
  }
  // hnswlib-node is the peer measured here only; it compiles with node-gyp on install, so it is
  // not a dependency: `npm install --no-save hnswlib-node` before running this benchmark.
  const require = createRequire(import.meta.url);
  let hnswlib: unknown;
  try {
    hnswlib = require('hnswlib-node');
  } catch {
    throw new Error('hnswlib-node is not installed: npm install --no-save hnswlib-node (or pass --libs usearch-f16)');
  }
  const { HierarchicalNSW } = hnswlib as {
    HierarchicalNSW: new (space: string, dim: number) => {
      initIndex(max: number, m: number, efc: number, seed: number): void;
      addPoint(p: number[], label: number): void;
      setEf(ef: number): void;
      searchKnn(q: number[], k: number): { neighbors: number[] };
    };
  };
  const index = new HierarchicalNSW('ip', DIM);
  index.initIndex(N, M, EFC, 100);
  for (let i = 0; i < N; i++) index.addPoint(Array.from(data.subarray(i * DIM, (i + 1) * DIM)), i);
  const buildSeconds = (performance.now() - t0) / 1000;
  const buildRssMb = rssMb() - rss0;
  for (const ef of EF_SWEEP) {
    index.setEf(ef);
    const r = timeSearch((q) => index.searchKnn(Array.from(q), K).neighbors);
    sweep.push({ efSearch: ef, recall10: r.recall10, qps: r.qps });
  }
  return { lib, buildSeconds, buildRssMb, sweep };
}

async function main(): Promise<void> {
  const ci = args.indexOf('--child');
  if (ci >= 0) {
    process.stdout.write(JSON.stringify(await child(args[ci + 1], args[ci + 2])));
    return;
  }
  const t0 = performance.now();
  const data = mixture(N, 1);
  const queries = mixture(Q, 2);
  const genSeconds = (performance.now() - t0) / 1000;
  // Ground truth and the exact-search baseline (the scan a collection uses below exactBelow).
  const truth = new Int32Array(Q * K);
  const e0 = performance.now();
  for (let q = 0; q < Q; q++) truth.set(exactSearch(data, DIM, queries.subarray(q * DIM, (q + 1) * DIM), K).rows, q * K);
  const exactQps = Q / ((performance.now() - e0) / 1000);
  const truthFile = path.join(os.tmpdir(), `winnow-ann-truth-${process.pid}.bin`);
  fs.writeFileSync(truthFile, new Uint8Array(truth.buffer));
  console.error(`data ${N}x${DIM} in ${genSeconds.toFixed(1)}s; exact search ${exactQps.toFixed(1)} q/s`);

  const self = fileURLToPath(import.meta.url);
  const libs = (args.includes('--libs') ? args[args.indexOf('--libs') + 1].split(',') : ['usearch-f32', 'usearch-f16', 'usearch-i8', 'hnswlib']);
  const results: LibResult[] = [];
  for (const lib of libs) {
    const r = spawnSync(process.execPath, ['--expose-gc', self, ...args, '--child', lib, truthFile], { encoding: 'utf8', maxBuffer: 1 << 24 });
    if (r.status !== 0) throw new Error(`${lib} failed: ${r.stderr}`);
    const res = JSON.parse(r.stdout) as LibResult;
    results.push(res);
    console.error(`${lib}: build ${res.buildSeconds.toFixed(1)}s, +${res.buildRssMb.toFixed(0)} MB; ${res.sweep.map((s) => `ef=${s.efSearch} R@10=${s.recall10.toFixed(4)} ${s.qps.toFixed(0)} q/s`).join('; ')}`);
    // Written after every library, so a run cut short still leaves what it measured.
    writeResults(results, exactQps, libs);
  }
  fs.rmSync(truthFile, { force: true });
}

function writeResults(results: LibResult[], exactQps: number, libs: string[]): void {

  const out = {
    loadavg: os.loadavg(),
    command: `node dist/bench/ann.js ${args.join(' ')}`.trim(),
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version },
    data: { n: N, dim: DIM, queries: Q, clusters: CLUSTERS, kind: 'clustered Gaussian mixture, unit-normalised', k: K },
    hnsw: { m: M, efConstruction: EFC },
    exact: { qps: exactQps },
    results: results.map((r) => ({
      ...r,
      perMillion: { buildSeconds: (r.buildSeconds * 1e6) / N, rssMb: (r.buildRssMb * 1e6) / N },
      sweep: r.sweep.map((s) => ({ ...s, speedupVsExact: s.qps / exactQps })),
    })),
  };
  const dir = path.resolve('bench/results');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'ann.json'), `${JSON.stringify(out, null, 2)}\n`);
  const lines = [
    '# ANN first pass: usearch vs hnswlib-node vs exact',
    '',
    `Command: \`${out.command}\` (after \`npx tsc -p tsconfig.json\`), ${out.machine.cpus} cores (${out.machine.model}), Node ${out.machine.node}.`,
    `Data: ${N} synthetic vectors, dimension ${DIM}, ${CLUSTERS}-component Gaussian mixture, unit length; ${Q} queries from the same mixture; inner product.`,
    `HNSW: M=${M}, efConstruction=${EFC}. Exact search (typed-array scan, one thread): ${exactQps.toFixed(1)} queries/s.`,
    `Libraries measured: ${results.map((r) => r.lib).join(', ')} of ${libs.join(', ')}; load average at write time ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} (the 2 cores are shared with other jobs, so build times are upper bounds).`,
    'Queries are run one at a time on one thread, as the retriever does. Build uses all cores where the library can (usearch: yes, hnswlib-node: no).',
    '',
    '| library | build s | build s / 1M (extrap.) | RSS MB | RSS MB / 1M (extrap.) | efSearch | recall@10 | queries/s | x exact |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of out.results) {
    for (const s of r.sweep) {
      lines.push(`| ${r.lib} | ${r.buildSeconds.toFixed(1)} | ${r.perMillion.buildSeconds.toFixed(0)} | ${r.buildRssMb.toFixed(0)} | ${r.perMillion.rssMb.toFixed(0)} | ${s.efSearch} | ${s.recall10.toFixed(4)} | ${s.qps.toFixed(0)} | ${s.speedupVsExact.toFixed(1)} |`);
    }
  }
  fs.writeFileSync(path.join(dir, 'ann.md'), `${lines.join('\n')}\n`);
  console.log(lines.join('\n'));
}

await main();
