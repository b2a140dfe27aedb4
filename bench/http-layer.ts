/**
 * What the HTTP layer alone costs: `winnow serve`'s POST /v2/rerank against a scorer that does
 * no work (every score 0), so routing, body reading, JSON parsing, schema validation, the cascade
 * plumbing and the response are all that is measured. Compares this build with a baseline build
 * of another commit, in the same run: rounds alternate between the two servers (each in its own
 * child process, autocannon in the parent) and each ratio is the median of per-round ratios.
 * Two figures: the server's CPU time per answered request (user + system, from the child's
 * `process.cpuUsage()`), which other jobs on a shared machine disturb little, and requests per
 * second, which they disturb a lot.
 *
 *   git archive <commit> | tar -x -C /tmp/base && ln -s $PWD/node_modules /tmp/base/node_modules \
 *     && (cd /tmp/base && npx tsc -p tsconfig.json)
 *   npx tsc -p tsconfig.json && node dist/bench/http-layer.js --baseline /tmp/base/dist --label <commit> [--seconds 5] [--rounds 5]
 *
 * Writes bench/results/http-layer.{json,md}.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import type { Doc } from '../src/core/types.js';
import { percentile } from '../src/eval/stats.js';

const median = (xs: readonly number[]): number => percentile(xs, 50);

const { values } = parseArgs({
  options: {
    baseline: { type: 'string' },
    /** what the baseline build is, for the report (e.g. a commit) */
    label: { type: 'string' },
    child: { type: 'string' },
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '5' },
    connections: { type: 'string', default: '16' },
  },
});

/** 16 short passages: a typical rerank body (about 2 kB), small enough that the HTTP layer dominates */
const DOCS = Array.from({ length: 16 }, (_, i) => `passage ${i}: the boundary layer over a swept wing thickens towards the trailing edge at high angles of attack`);

/** Child: serve one cascade over a scorer that does nothing, from the dist folder given. */
async function child(dist: string): Promise<void> {
  const { createServer } = (await import(pathToFileURL(path.join(dist, 'src/serve/server.js')).href)) as typeof import('../src/serve/server.js');
  const { Pipeline } = (await import(pathToFileURL(path.join(dist, 'src/cascade/pipeline.js')).href)) as typeof import('../src/cascade/pipeline.js');
  const { Rerank } = (await import(pathToFileURL(path.join(dist, 'src/rerank/rerank.js')).href)) as typeof import('../src/rerank/rerank.js');
  const noop = { id: 'noop', kind: 'logit' as const, score: async (_q: string, docs: readonly Doc[]) => new Float32Array(docs.length) };
  const server = createServer({ cascades: new Map([['ce', new Pipeline([new Rerank(noop)])]]), cache: false, log: false });
  const url = await server.listen(0);
  process.send?.({ url });
  // the server's own CPU time, asked for before and after each load: a figure the other jobs
  // on a shared machine disturb far less than requests per second
  process.on('message', () => {
    const u = process.cpuUsage();
    process.send?.({ cpuMicros: u.user + u.system });
  });
}

function cpuOf(proc: ChildProcess): Promise<number> {
  return new Promise((resolve) => {
    proc.once('message', (m) => resolve((m as { cpuMicros: number }).cpuMicros));
    proc.send('cpu');
  });
}

async function start(dist: string): Promise<{ proc: ChildProcess; url: string }> {
  const proc = fork(fileURLToPath(import.meta.url), ['--child', dist], { stdio: 'inherit' });
  const url = await new Promise<string>((resolve, reject) => {
    proc.once('message', (m) => resolve((m as { url: string }).url));
    proc.once('exit', (code) => reject(new Error(`benchmark server exited with code ${code}`)));
  });
  return { proc, url };
}

interface Cell {
  build: string;
  round: number;
  reqPerSec: number;
  /** server CPU time (user + system) per answered request, µs */
  cpuMicrosPerRequest: number;
  p50: number;
  p99: number;
  errors: number;
}

async function load(url: string, seconds: number, connections: number): Promise<Omit<Cell, 'build' | 'round' | 'cpuMicrosPerRequest'> & { answered: number }> {
  let next = 0;
  const r = await autocannon({
    url: `${url}/v2/rerank`,
    connections,
    duration: seconds,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    requests: [{ setupRequest: (req) => ({ ...req, body: JSON.stringify({ model: 'ce', query: `wing flow ${next++}`, documents: DOCS }) }) }],
  });
  const secs = (r.finish.getTime() - r.start.getTime()) / 1000;
  return { answered: r['2xx'], reqPerSec: r['2xx'] / secs, p50: r.latency.p50, p99: r.latency.p99, errors: r.errors + r.non2xx + r.timeouts };
}

async function main(): Promise<void> {
  if (values.child) return child(values.child);
  if (!values.baseline) throw new Error('--baseline DIST (the dist folder of the build to compare against) is required');
  const seconds = Number(values.seconds);
  const rounds = Number(values.rounds);
  const connections = Number(values.connections);
  const here = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const builds = { baseline: path.resolve(values.baseline), current: here };
  const servers = { baseline: await start(builds.baseline), current: await start(builds.current) };
  const cells: Cell[] = [];
  try {
    // warm both (JIT, sockets) before measuring
    for (const s of Object.values(servers)) await load(s.url, 1, connections);
    for (let round = 0; round < rounds; round++) {
      // alternate which goes first, so drift in the shared machine's load hits both alike
      const order = round % 2 === 0 ? (['baseline', 'current'] as const) : (['current', 'baseline'] as const);
      for (const build of order) {
        const cpu0 = await cpuOf(servers[build].proc);
        const { answered, ...measured } = await load(servers[build].url, seconds, connections);
        const cpu = (await cpuOf(servers[build].proc)) - cpu0;
        cells.push({ build, round, ...measured, cpuMicrosPerRequest: cpu / Math.max(1, answered) });
        await new Promise((r) => setTimeout(r, 300));
      }
    }
  } finally {
    for (const s of Object.values(servers)) s.proc.kill();
  }
  const of = (b: string): Cell[] => cells.filter((c) => c.build === b);
  const ratios = Array.from({ length: rounds }, (_, r) => cells.find((c) => c.build === 'current' && c.round === r)!.reqPerSec / cells.find((c) => c.build === 'baseline' && c.round === r)!.reqPerSec);
  const cpuRatios = Array.from({ length: rounds }, (_, r) => cells.find((c) => c.build === 'current' && c.round === r)!.cpuMicrosPerRequest / cells.find((c) => c.build === 'baseline' && c.round === r)!.cpuMicrosPerRequest);
  const summary = {
    seconds,
    rounds,
    connections,
    cpus: os.cpus().length,
    baseline: values.baseline,
    baselineReqPerSec: median(of('baseline').map((c) => c.reqPerSec)),
    currentReqPerSec: median(of('current').map((c) => c.reqPerSec)),
    baselineP99: median(of('baseline').map((c) => c.p99)),
    currentP99: median(of('current').map((c) => c.p99)),
    ratio: median(ratios),
    baselineCpuMicros: median(of('baseline').map((c) => c.cpuMicrosPerRequest)),
    currentCpuMicros: median(of('current').map((c) => c.cpuMicrosPerRequest)),
    cpuRatio: median(cpuRatios),
    errors: cells.reduce((a, c) => a + c.errors, 0),
    cells,
  };
  const out = path.join(here, '..', 'bench', 'results');
  mkdirSync(out, { recursive: true });
  writeFileSync(path.join(out, 'http-layer.json'), JSON.stringify(summary, null, 2) + '\n');
  const md = [
    '# HTTP layer: POST /v2/rerank over a scorer that does no work',
    '',
    `Same run, ${rounds} alternating rounds of ${seconds} s, ${connections} connections, 16 short documents per request, ${summary.cpus} CPUs (shared). Baseline: ${values.label ?? `\`${values.baseline}\``}.`,
    '',
    '| build | server CPU µs per request (median) | req/s (median) | p99 ms (median) |',
    '|---|---|---|---|',
    `| baseline | ${summary.baselineCpuMicros.toFixed(0)} | ${summary.baselineReqPerSec.toFixed(0)} | ${summary.baselineP99} |`,
    `| current | ${summary.currentCpuMicros.toFixed(0)} | ${summary.currentReqPerSec.toFixed(0)} | ${summary.currentP99} |`,
    '',
    `current / baseline server CPU per request: **${summary.cpuRatio.toFixed(3)}x** (median of per-round ratios: ${cpuRatios.map((r) => r.toFixed(3)).join(', ')}; below 1 is cheaper).`,
    `current / baseline throughput: ${summary.ratio.toFixed(3)}x (median of per-round ratios: ${ratios.map((r) => r.toFixed(3)).join(', ')}); errors: ${summary.errors}.`,
    'CPU per request is the figure to read on a shared machine: requests per second swing with whatever else runs, the CPU a request costs the server much less.',
    '',
    'Reproduce: see the header of `bench/http-layer.ts`.',
    '',
  ].join('\n');
  writeFileSync(path.join(out, 'http-layer.md'), md);
  process.stdout.write(md);
}

await main();
