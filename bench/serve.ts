/**
 * Throughput and latency of `winnow serve` through POST /v2/rerank at 1, 4 and 16 concurrent
 * clients, with micro-batching on and off, against the same cascade called in-process.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/serve.js [--seconds 4] [--docs 32] [--model DIR]
 *
 * The server runs in a child process (so the load generator, autocannon, does not share its
 * event loop); the score cache is off and every request has another query, so every pair is
 * scored. Writes bench/results/serve.json and bench/results/serve.md.
 */
import { fork } from 'node:child_process';
import { writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { emptyStats } from '../src/core/stage.js';
import type { Doc } from '../src/core/types.js';
import { Pipeline } from '../src/cascade/pipeline.js';
import { loadScorer } from '../src/rerank/load.js';
import { Rerank } from '../src/rerank/rerank.js';
import { BatchingScorer } from '../src/serve/batcher.js';
import { createServer } from '../src/serve/server.js';
import { readJsonl } from './common.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '4' },
    docs: { type: 'string', default: '32' },
    model: { type: 'string', default: 'test/fixtures/models/tiny-bert-ce' },
    child: { type: 'string' },
  },
});
const SECONDS = Number(values.seconds);
const N_DOCS = Number(values.docs);
const MODEL = values.model!;
const CRANFIELD = path.resolve('../shared/datasets/cranfield');

async function cascade(batching: boolean): Promise<Pipeline> {
  const scorer = await loadScorer(MODEL, {});
  return new Pipeline([new Rerank(batching ? new BatchingScorer(scorer, { maxBatch: 64, maxWaitMs: 0, maxQueue: 1 << 20 }) : scorer, 'ce')]);
}

const docs = readJsonl<Record<string, string>>(path.join(CRANFIELD, 'corpus.jsonl')).slice(0, N_DOCS).map((d) => d.text);
const queries = readJsonl<Record<string, string>>(path.join(CRANFIELD, 'queries.jsonl')).map((q) => q.text);

if (values.child) {
  // child: serve the cascade until told to stop
  const server = createServer({ cascades: new Map([['ce', await cascade(values.child === 'batch')]]), cache: false, log: false, limits: { defaultDeadlineMs: 600_000 } });
  const url = await server.listen(0, '127.0.0.1');
  process.send?.({ url });
  process.on('SIGTERM', () => void server.close().then(() => process.exit(0)));
} else {
  await main();
}

interface Row {
  mode: 'in-process' | 'server, batching on' | 'server, batching off';
  concurrency: number;
  requests: number;
  pairsPerSec: number;
  p50: number;
  p99: number;
  errors: number;
}

function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN;
}

async function inProcess(concurrency: number): Promise<Row> {
  const p = await cascade(false);
  const lookup = new Map<string, Doc>(docs.map((t, i) => [String(i), { id: String(i), text: t }]));
  const lat: number[] = [];
  let next = 0;
  const end = performance.now() + SECONDS * 1000;
  const worker = async (): Promise<void> => {
    while (performance.now() < end) {
      const q = queries[next++ % queries.length];
      const t0 = performance.now();
      const hits = docs.map((_, i) => ({ docId: String(i), score: 0, scores: {} }));
      await p.run([{ query: { id: 'q', text: q }, hits }], { docs: lookup, stats: emptyStats() });
      lat.push(performance.now() - t0);
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const secs = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  return { mode: 'in-process', concurrency, requests: lat.length, pairsPerSec: (lat.length * docs.length) / secs, p50: percentile(lat, 50), p99: percentile(lat, 99), errors: 0 };
}

async function throughServer(batching: boolean, concurrencies: number[]): Promise<Row[]> {
  const child = fork(fileURLToPath(import.meta.url), ['--child', batching ? 'batch' : 'direct', '--model', MODEL, '--docs', String(N_DOCS)], { stdio: 'inherit' });
  const url = await new Promise<string>((resolve) => child.once('message', (m) => resolve((m as { url: string }).url)));
  const rows: Row[] = [];
  try {
    let i = 0;
    const run = (connections: number, duration: number) =>
      autocannon({
        url: `${url}/v2/rerank`,
        connections,
        duration,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        requests: [{ setupRequest: (req) => ({ ...req, body: JSON.stringify({ model: 'ce', query: queries[i++ % queries.length], documents: docs }) }) }],
      });
    await run(4, 1); // warm-up: JIT, ONNX session
    for (const c of concurrencies) {
      const r = await run(c, SECONDS);
      rows.push({
        mode: batching ? 'server, batching on' : 'server, batching off',
        concurrency: c,
        requests: r.requests.total,
        pairsPerSec: (r['2xx'] * docs.length) / SECONDS,
        p50: r.latency.p50,
        p99: r.latency.p99,
        errors: r.errors + r.non2xx + r.timeouts,
      });
    }
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
  return rows;
}

async function main(): Promise<void> {
  const concurrencies = [1, 4, 16];
  const rows: Row[] = [];
  await inProcess(1); // warm-up
  for (const c of concurrencies) rows.push(await inProcess(c));
  rows.push(...(await throughServer(true, concurrencies)));
  rows.push(...(await throughServer(false, concurrencies)));
  const base = new Map(rows.filter((r) => r.mode === 'in-process').map((r) => [r.concurrency, r.pairsPerSec]));
  const command = `node dist/bench/serve.js --seconds ${SECONDS} --docs ${N_DOCS} --model ${MODEL}`;
  const result = {
    command,
    date: new Date().toISOString(),
    node: process.version,
    cpus: os.cpus().length,
    cpu: os.cpus()[0]?.model,
    model: MODEL,
    docsPerRequest: docs.length,
    seconds: SECONDS,
    batcher: { maxBatch: 64, maxWaitMs: 0 },
    rows: rows.map((r) => ({ ...r, vsInProcess: r.pairsPerSec / base.get(r.concurrency)! })),
  };
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/serve.json', JSON.stringify(result, null, 2) + '\n');
  const f = (x: number, d = 1): string => x.toFixed(d);
  const md = [
    '# winnow serve: POST /v2/rerank throughput and latency',
    '',
    `Command: \`npx tsc -p tsconfig.json && ${command}\``,
    '',
    `${result.date}, Node ${process.version}, ${result.cpus} CPUs (${result.cpu}), shared with other work. Model \`${MODEL}\` (ONNX, CPU), ${docs.length} Cranfield documents per request, a different Cranfield query per request, score cache off, ${SECONDS} s per row. Server in a child process, load from autocannon; in-process = \`Pipeline.run\` with the same number of concurrent callers. Batching: max 64 pairs per model call, continuous (requests arriving while the model is busy go into the next batch; \`CrossEncoder.scoreMany\` puts different queries in one padded batch).`,
    '',
    '| mode | clients | requests | pairs/s | vs in-process | p50 ms | p99 ms | errors |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    ...result.rows.map((r) => `| ${r.mode} | ${r.concurrency} | ${r.requests} | ${f(r.pairsPerSec, 0)} | ${f(r.vsInProcess, 2)} | ${f(r.p50)} | ${f(r.p99)} | ${r.errors} |`),
    '',
    'Reading it: on this 2-core machine shared with other jobs, the same command has given pairs/s differing 2-3x between runs, so compare rows of one run only. ' +
      '"vs in-process" is the service overhead at each concurrency (1.00 = none); batching on vs off at 16 clients is the micro-batching gain.',
    '',
  ].join('\n');
  writeFileSync('bench/results/serve.md', md);
  process.stdout.write(md);
}
