/**
 * Throughput and latency of `winnow serve` through POST /v2/rerank at 1, 4 and 16 concurrent
 * clients, with micro-batching on and off, against the same cascade called in-process.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/serve.js [--seconds 4] [--rounds 3] [--quantized]
 *       [--models DIR,DIR,...]
 *
 * Models: by default three cross-encoder sizes, the committed tiny test model and two shaped like
 * real ones (`tools/make_bench_models.py --shape tinybert-l2` and `--shape minilm-l6`), because
 * what the server adds and what batching saves both depend on how long one model call takes.
 * Two workloads, because they answer different questions:
 * - `passages`: 16 chunk-sized passages (the first 100 words of Cranfield abstracts) per request,
 *   a RAG rerank call. Inference dominates, so this shows what HTTP + JSON around the cascade
 *   costs at saturation.
 * - `titles`: one Cranfield title per request (pointwise scoring, many small calls). A model
 *   call on one short pair is mostly fixed cost, so this is where merging requests pays.
 * Per model it also times the bare scorer on 1 and on 64 title pairs per call: the most any
 * batcher could gain on this hardware.
 *
 * Servers run in child processes (one with the batcher, one without) so the load generator,
 * autocannon, does not share their event loop. Every (workload, mode, clients) cell runs once
 * per round; the (workload, clients) groups are rotated each round. In-process cells run for
 * `--seconds`; the server cell after each sends as many requests as its in-process twin managed
 * in that time, and every request completes (a cell cut off by a timer would leave the server
 * busy with abandoned work when the next cell starts). The tables give medians over rounds,
 * and each ratio is the median of the per-round ratios (the machine is shared: absolute numbers
 * drift between rounds, ratios within a round much less). The score cache is off and every
 * request has another query, so every pair is scored. Writes bench/results/serve.{json,md}.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { Costs } from '../src/core/costs.js';
import type { Doc } from '../src/core/types.js';
import { Pipeline } from '../src/cascade/pipeline.js';
import { percentile } from '../src/eval/stats.js';
import { loadScorer } from '../src/rerank/load.js';
import { Rerank } from '../src/rerank/rerank.js';
import { BatchingScorer, isMultiQueryScorer } from '../src/serve/batcher.js';
import { createServer } from '../src/serve/server.js';
import { cannon, median, readJsonl, settle } from './common.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '4' },
    rounds: { type: 'string', default: '3' },
    models: { type: 'string', default: 'test/fixtures/models/tiny-bert-ce,bench/.work/tinybert-l2-ce,bench/.work/minilm-l6-ce' },
    quantized: { type: 'boolean', default: false },
    child: { type: 'string' },
  },
});
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const MODELS = values.models!.split(',').filter(Boolean);
const QUANTIZED = values.quantized!;
const CLIENTS = [1, 4, 16];
const MAX_BATCH = 64;
const CRANFIELD = path.resolve('../shared/datasets/cranfield');

const corpus = readJsonl<{ title: string; text: string }>(path.join(CRANFIELD, 'corpus.jsonl'));
const queries = readJsonl<{ text: string }>(path.join(CRANFIELD, 'queries.jsonl')).map((q) => q.text);
const WORKLOADS = {
  passages: corpus.slice(0, 16).map((d) => d.text.split(' ').slice(0, 100).join(' ')),
  titles: corpus.slice(0, 1).map((d) => d.title),
} as const;
type Workload = keyof typeof WORKLOADS;
type Mode = 'in-process, batching on' | 'in-process, batching off' | 'server, batching on' | 'server, batching off';
const MODES: Mode[] = ['in-process, batching on', 'server, batching on', 'in-process, batching off', 'server, batching off'];

async function cascade(model: string, batching: boolean): Promise<Pipeline> {
  const scorer = await loadScorer(model, { quantized: QUANTIZED });
  return new Pipeline([new Rerank(batching ? new BatchingScorer(scorer, { maxBatch: MAX_BATCH, maxWaitMs: 0, maxQueue: 1 << 20 }) : scorer, 'ce')]);
}

if (values.child) {
  // child: serve the cascade until told to stop
  const server = createServer({ cascades: new Map([['ce', await cascade(MODELS[0], values.child === 'batch')]]), cache: false, log: false, limits: { defaultDeadlineMs: 600_000 } });
  const url = await server.listen(0, '127.0.0.1');
  process.send?.({ url });
  process.on('SIGTERM', () => void server.close().then(() => process.exit(0)));
} else {
  await main();
}

interface Cell {
  model: string;
  workload: Workload;
  mode: Mode;
  clients: number;
  requests: number;
  pairsPerSec: number;
  p50: number;
  p99: number;
  errors: number;
}

/** `clients` callers running the pipeline back to back for `seconds`, as the server would. */
async function inProcess(p: Pipeline, workload: Workload, clients: number, seconds: number): Promise<Omit<Cell, 'mode' | 'model'>> {
  const docs = WORKLOADS[workload];
  const lookup = new Map<string, Doc>(docs.map((t, i) => [String(i), { id: String(i), text: t }]));
  const lat: number[] = [];
  let next = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  const client = async (): Promise<void> => {
    while (performance.now() < end) {
      const q = queries[next++ % queries.length];
      const start = performance.now();
      const hits = docs.map((_, i) => ({ docId: String(i), score: 0, scores: {} }));
      await p.run([{ query: { id: 'q', text: q }, hits }], { docs: lookup, costs: new Costs() });
      lat.push(performance.now() - start);
    }
  };
  await Promise.all(Array.from({ length: clients }, client));
  const secs = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  return { workload, clients, requests: lat.length, pairsPerSec: (lat.length * docs.length) / secs, p50: percentile(lat, 50), p99: percentile(lat, 99), errors: 0 };
}

async function throughServer(url: string, workload: Workload, clients: number, amount: number): Promise<Omit<Cell, 'mode' | 'model'>> {
  const docs = WORKLOADS[workload];
  let next = 0;
  const { result: r, seconds: secs } = await cannon({
    url: `${url}/v2/rerank`,
    connections: clients,
    amount,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    requests: [{ setupRequest: (req) => ({ ...req, body: JSON.stringify({ model: 'ce', query: queries[next++ % queries.length], documents: docs }) }) }],
  });
  return {
    workload,
    clients,
    requests: r.requests.total,
    pairsPerSec: (r['2xx'] * docs.length) / secs,
    p50: r.latency.p50,
    p99: r.latency.p99,
    errors: r.errors + r.non2xx + r.timeouts,
  };
}

async function startServer(model: string, batching: boolean): Promise<{ child: ChildProcess; url: string }> {
  const args = ['--child', batching ? 'batch' : 'direct', '--models', model, ...(QUANTIZED ? ['--quantized'] : [])];
  const child = fork(fileURLToPath(import.meta.url), args, { stdio: 'inherit' });
  const url = await new Promise<string>((resolve, reject) => {
    child.once('message', (m) => resolve((m as { url: string }).url));
    child.once('exit', (code) => reject(new Error(`benchmark server exited with code ${code}`)));
  });
  return { child, url };
}

interface Headroom {
  model: string;
  /** pairs/s of the bare scorer given one title pair per call, and 64 per call */
  batch1: number;
  batch64: number;
}

/** Pairs/s of the scorer alone on one title pair per call and on 64: what batching could gain at most. */
async function headroom(model: string, seconds: number): Promise<Headroom> {
  const scorer = await loadScorer(model, { quantized: QUANTIZED });
  if (!isMultiQueryScorer(scorer)) throw new Error(`${model}: not a cross-encoder`);
  const rate = async (perCall: number): Promise<number> => {
    let pairs = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < seconds * 1000) {
      const requests = Array.from({ length: perCall }, (_, i) => ({ query: queries[(pairs + i) % queries.length], docs: [{ id: '0', text: WORKLOADS.titles[0] }] }));
      await scorer.scoreMany(requests);
      pairs += perCall;
    }
    return pairs / ((performance.now() - t0) / 1000);
  };
  await rate(64); // warm-up
  const out = { model, batch1: await rate(1), batch64: await rate(64) };
  await scorer.close?.();
  return out;
}

async function main(): Promise<void> {
  const cells: Cell[] = [];
  const headrooms: Headroom[] = [];
  for (const model of MODELS) {
    process.stderr.write(`${model}\n`);
    headrooms.push(await headroom(model, SECONDS / 2));
    cells.push(...(await benchModel(model)));
  }
  report(cells, headrooms);
}

async function benchModel(model: string): Promise<Cell[]> {
  const pipelines = { on: await cascade(model, true), off: await cascade(model, false) };
  const servers = { on: await startServer(model, true), off: await startServer(model, false) };
  /** an in-process cell, then the server cell with the same batching and as many requests */
  const pair = async (batching: 'on' | 'off', workload: Workload, clients: number, seconds: number): Promise<Cell[]> => {
    const local = await inProcess(pipelines[batching], workload, clients, seconds);
    await settle();
    const remote = await throughServer(servers[batching].url, workload, clients, Math.max(2 * clients, local.requests));
    await settle();
    return [
      { model, mode: `in-process, batching ${batching}`, ...local },
      { model, mode: `server, batching ${batching}`, ...remote },
    ];
  };
  const workloads = Object.keys(WORKLOADS) as Workload[];
  const groups = workloads.flatMap((w) => CLIENTS.map((c) => [w, c] as const));
  const cells: Cell[] = [];
  try {
    // warm-up: JIT, ONNX arenas for every shape, connections
    for (const w of workloads) for (const b of ['on', 'off'] as const) await pair(b, w, 4, 1);
    for (let round = 0; round < ROUNDS; round++) {
      const shift = Math.floor((round * groups.length) / ROUNDS);
      for (const [g, [w, c]] of [...groups.slice(shift), ...groups.slice(0, shift)].entries()) {
        // which batching setting goes first alternates, so neither always follows a busy server
        for (const b of round % 2 === 0 ? (['on', 'off'] as const) : (['off', 'on'] as const)) cells.push(...(await pair(b, w, c, SECONDS)));
        process.stderr.write(`\rround ${round + 1}/${ROUNDS}: ${g + 1}/${groups.length} groups`);
      }
    }
    process.stderr.write('\n');
  } finally {
    for (const { child } of Object.values(servers)) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  }
  return cells;
}

function report(cells: Cell[], headrooms: Headroom[]): void {
  const of = (model: string, w: Workload, m: Mode, c: number): Cell[] => cells.filter((x) => x.model === model && x.workload === w && x.mode === m && x.clients === c);
  /** median over rounds of a/b, pairing the two cells of the same round */
  const ratio = (a: Cell[], b: Cell[]): number => median(a.map((x, i) => x.pairsPerSec / b[i].pairsPerSec));
  const rows = MODELS.flatMap((model) =>
    (Object.keys(WORKLOADS) as Workload[]).flatMap((workload) =>
      CLIENTS.flatMap((clients) =>
        MODES.map((mode) => {
          const own = of(model, workload, mode, clients);
          const batching = mode.endsWith('on') ? 'on' : 'off';
          return {
            model,
            workload,
            mode,
            clients,
            requests: own.reduce((s, x) => s + x.requests, 0),
            pairsPerSec: median(own.map((x) => x.pairsPerSec)),
            // service overhead: the server against the in-process cascade it runs
            vsInProcess: mode.startsWith('server') ? ratio(own, of(model, workload, `in-process, batching ${batching}`, clients)) : null,
            // micro-batching gain: on against off, both in-process or both through the server
            batchingGain: batching === 'on' ? ratio(own, of(model, workload, mode.replace(' on', ' off') as Mode, clients)) : null,
            p50: median(own.map((x) => x.p50)),
            p99: median(own.map((x) => x.p99)),
            errors: own.reduce((s, x) => s + x.errors, 0),
          };
        }),
      ),
    ),
  );
  const command = `node dist/bench/serve.js --seconds ${SECONDS} --rounds ${ROUNDS} --models ${MODELS.join(',')}${QUANTIZED ? ' --quantized' : ''}`;
  const result = {
    command,
    date: new Date().toISOString(),
    node: process.version,
    cpus: os.cpus().length,
    cpu: os.cpus()[0]?.model,
    loadAverage: os.loadavg(),
    models: MODELS,
    quantized: QUANTIZED,
    seconds: SECONDS,
    rounds: ROUNDS,
    batcher: { maxBatch: MAX_BATCH, maxWaitMs: 0 },
    headrooms,
    rows,
    cells,
  };
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/serve.json', JSON.stringify(result, null, 2) + '\n');
  const f = (x: number | null, d = 1): string => (x === null ? '' : x.toFixed(d));
  const name = (m: string): string => path.basename(m);
  const row = (model: string, workload: Workload, mode: Mode) => rows.find((r) => r.model === model && r.workload === workload && r.mode === mode && r.clients === 16)!;
  const md = [
    '# winnow serve: POST /v2/rerank throughput and latency',
    '',
    `Command: \`npx tsc -p tsconfig.json && ${command}\` (after \`.venv/models/bin/python tools/make_bench_models.py --shape minilm-l6\` and \`--shape tinybert-l2\`)`,
    '',
    `${result.date}, Node ${process.version}, ${result.cpus} CPUs (${result.cpu}), shared with other work (load average ${result.loadAverage.map((x) => x.toFixed(1)).join(' ')} at the end). ` +
      `Cross-encoders (${QUANTIZED ? 'int8' : 'fp32'} ONNX, CPU): ${MODELS.map((m) => `\`${m}\``).join(', ')}. Workloads: \`passages\` = ${WORKLOADS.passages.length} passages (the first 100 words of Cranfield abstracts) per request, \`titles\` = ${WORKLOADS.titles.length} Cranfield title per request; a different Cranfield query every request; score cache off. ` +
      `${ROUNDS} rounds of ${SECONDS} s per cell, order rotated each round; pairs/s, p50 and p99 are medians over rounds, ratios are medians of per-round ratios. ` +
      `Servers in child processes, load from autocannon in the parent; in-process = \`Pipeline.run\` of the same cascade with the same number of concurrent callers; each server cell sends as many requests as its in-process twin completed and waits for all of them. ` +
      `Batching: at most ${MAX_BATCH} pairs per model call, continuous (requests arriving while the model is busy go into the next batch; \`CrossEncoder.scoreMany\` puts different queries in one padded batch).`,
    '',
    '## The two targets, at 16 clients',
    '',
    'Service overhead: server pairs/s over in-process pairs/s with the same batching (target >= 0.90, i.e. <= 10% overhead). Micro-batching: server with batching over server without (target >= 1.5). Ceiling: the bare scorer on 64 title pairs per call over 1 per call, the most any batcher can gain from one model call per request.',
    '',
    '| model | server / in-process, passages | server / in-process, titles | batching on/off, titles | batching on/off, passages | ceiling: 64 vs 1 pair per call |',
    '|---|---:|---:|---:|---:|---:|',
    ...MODELS.map((m) => {
      const h = headrooms.find((x) => x.model === m)!;
      return `| ${name(m)} | ${f(row(m, 'passages', 'server, batching on').vsInProcess, 2)} | ${f(row(m, 'titles', 'server, batching on').vsInProcess, 2)} | ${f(row(m, 'titles', 'server, batching on').batchingGain, 2)} | ${f(row(m, 'passages', 'server, batching on').batchingGain, 2)} | ${f(h.batch64 / h.batch1, 2)} (${f(h.batch1, 0)} → ${f(h.batch64, 0)} pairs/s) |`;
    }),
    '',
    '## Every cell',
    '',
    '| model | workload | mode | clients | requests | pairs/s | vs in-process | batching on/off | p50 ms | p99 ms | errors |',
    '|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${name(r.model)} | ${r.workload} | ${r.mode} | ${r.clients} | ${r.requests} | ${f(r.pairsPerSec, 0)} | ${f(r.vsInProcess, 2)} | ${f(r.batchingGain, 2)} | ${f(r.p50)} | ${f(r.p99)} | ${r.errors} |`),
    '',
  ].join('\n');
  writeFileSync('bench/results/serve.md', md);
  process.stdout.write(md);
}
