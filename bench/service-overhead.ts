/**
 * Service overhead of `winnow serve`, measured so that it can be believed: what one core serves
 * through POST /v2/rerank against what the same core does running the same cascade in-process.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/service-overhead.js [--seconds 6] [--rounds 3]
 *       [--sizes 20,50,100] [--model bench/.work/minilm-l6-ce] [--fp32] [--max-concurrency 64]
 *       [--profile DIR]
 *
 * The model: a cross-encoder shaped like ms-marco-MiniLM-L-6-v2 with random weights (speed
 * depends on the shape, not the values), made by
 * `.venv/models/bin/python tools/make_bench_models.py --shape minilm-l6` into
 * bench/.work/minilm-l6-ce (git-ignored). int8 (`onnx/model_quantized.onnx`) by default, the
 * variant one serves on a CPU and the faster one, so the harder test of the overhead; `--fp32`
 * for `onnx/model.onnx`. Texts: SciFact (../shared/datasets/scifact), documents = title + " " +
 * text, a different query (and a different window of documents) every request.
 *
 * Processes, each pinned with taskset on a 2-core machine:
 * - core 1: the in-process child: the cascade compiled from the same spec file the server
 *   reads, through the same micro-batcher with `winnow serve`'s default settings, called with
 *   `Pipeline.run` by C concurrent callers (so requests share model batches as in the server);
 * - core 1: `node bin/winnow.js serve --spec … --no-score-cache` (the real CLI, request log on
 *   as by default, 1 intra-op thread from the spec's `threads: 1`); never busy while the
 *   in-process child is, and the other way round;
 * - core 0: the load generator in a child process of its own: autocannon, and fetch for the
 *   open-loop cell below.
 * The parent, not pinned, only orchestrates: it reads the server's CPU time from /proc and
 * drains its stdout (the request log, one line per request, on as by default).
 * onnxruntime-node runs each model call synchronously on the main thread (in a setImmediate),
 * so on one core the event loop, and with it HTTP, waits while the model runs; that costs
 * throughput nothing as long as requests are queued, which is what saturation means.
 *
 * Each cell sends a fixed number of requests with C in flight and waits for every answer:
 * throughput = documents answered / (last answer - first send). A cell cut off by a timer
 * would leave work half-done, which at a few seconds per 100-document request is most of the
 * difference being measured. The amount is sized from the rate measured so far to last about
 * `--seconds`, and is at least C. For the server C doubles from 1 until throughput has not
 * risen by 3% over the best so far twice running, a request failed, or C x documents would
 * pass what the server admits by design (the batcher's queue, 1024 pairs by default, or the
 * pairs the model clears, at the rate measured so far, in the 80% of the default 30 s deadline
 * that admission control allows; beyond either it answers 429 instead of getting faster): the
 * best cell is saturation. Throughput keeps rising past C = 2 because a deeper queue lets the
 * batcher group pairs of similar token length (less padding). The in-process side then runs
 * with the server's saturation C in flight (the same queue depth, so the same batches) and
 * with 2C when that is still admissible; the better counts, so the ratio never flatters the
 * server. In-process goes first in every other (round, size) once a round has found C.
 * The server then gets half its saturation request rate, open loop (a request every 1/rate s
 * whether or not earlier ones are answered; autocannon's `overallRate` is per connection,
 * closed loop and at least 1 request/s, more than half of saturation with 100 documents),
 * for p50/p99 under moderate load.
 * Rounds (default 3) rotate the order of sizes and which side goes first; ratios are medians
 * of per-round ratios. CPU time per document (server: /proc/PID/stat, all threads; in-process:
 * process.cpuUsage) is reported besides, a second view of the same comparison.
 * `--profile DIR` adds `node --cpu-prof` to the server and the in-process child and breaks
 * their main-thread time per document down (model, tokenization, HTTP, JSON, GC, …) in the
 * report: that is where the overhead goes. It slows both sides a little; take the ratios from a
 * run without it.
 *
 * Time: a cell lasts about `--seconds` but never less than C requests, and a 100-document
 * request takes seconds here (int8 MiniLM-L6 on SciFact: ~60 ms of CPU per document on this
 * 2-core EPYC under load, so ~15-20 documents/s on a quiet core). At that speed a default run
 * (3 rounds x 3 sizes) takes about 15-20 minutes, most of it in the cells with many requests
 * in flight and in the half-load cells of large requests; the report says how long it took. Writes bench/results/service-overhead.{json,md}.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Costs } from '../src/core/costs.js';
import type { Doc, Hit } from '../src/core/types.js';
import { WinnowEnv } from '../src/cascade/env.js';
import { compileSpec } from '../src/cascade/spec.js';
import type { Pipeline } from '../src/cascade/pipeline.js';
import { loadServeSpec, SERVE_COMMAND } from '../src/cli/serve.js';
import { percentile } from '../src/eval/stats.js';
import { ADMIT_SHARE } from '../src/serve/admission.js';
import { withBatching } from '../src/serve/batcher.js';
import { DEFAULT_LIMITS } from '../src/serve/server.js';
import { cannon, median, readJsonl, settle } from './common.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '6' },
    rounds: { type: 'string', default: '3' },
    sizes: { type: 'string', default: '20,50,100' },
    model: { type: 'string', default: 'bench/.work/minilm-l6-ce' },
    fp32: { type: 'boolean', default: false },
    'max-concurrency': { type: 'string', default: '64' },
    /** write V8 CPU profiles of the server and the in-process child (`node --cpu-prof`) into this folder */
    profile: { type: 'string' },
    child: { type: 'string' },
    spec: { type: 'string' },
  },
});
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const SIZES = values.sizes!.split(',').map(Number);
const MAX_CONCURRENCY = Number(values['max-concurrency']);
const SCIFACT = path.resolve('../shared/datasets/scifact');
/** a gain below this over the best cell so far counts as flat; two flat cells in a row end the ladder */
const FLAT = 0.03;
/** the 50%-load cell sends at least this many requests, however slow a request is */
const MIN_RATE_REQUESTS = 8;
const SERVER_CORE = '1';
const LOAD_CORE = '0';
const SCRIPT = fileURLToPath(import.meta.url);
const SERVE_DEFAULTS = SERVE_COMMAND.flags;
/** `winnow serve`'s own batcher defaults, so both sides batch alike */
const BATCHING = { maxBatch: Number(SERVE_DEFAULTS['max-batch'].default), maxWaitMs: Number(SERVE_DEFAULTS['max-wait-ms'].default), maxQueue: Number(SERVE_DEFAULTS.queue.default) };

// ---- the workload, the same in every process ----

let texts: { docs: string[]; queries: string[] } | undefined;

/** Request `i` of `size` documents: query i (mod the query count) and a window of the corpus that moves with i. */
function request(i: number, size: number): { query: string; documents: string[] } {
  texts ??= {
    docs: readJsonl<{ title: string; text: string }>(path.join(SCIFACT, 'corpus.jsonl')).map((d) => `${d.title} ${d.text}`),
    queries: readJsonl<{ text: string }>(path.join(SCIFACT, 'queries.jsonl')).map((q) => q.text),
  };
  const start = (i * size) % (texts.docs.length - size);
  return { query: texts.queries[i % texts.queries.length], documents: texts.docs.slice(start, start + size) };
}

/** What a child is asked to do: `amount` requests of `size` documents, `concurrency` in flight, numbered from `first`. */
interface Order {
  size: number;
  concurrency: number;
  amount: number;
  first: number;
  /** load child only */
  url?: string;
  /** load child only: requests per second, open loop; absent = C connections, each sending when answered */
  rate?: number;
}

/** What a child measured. */
interface Measured {
  ok: number;
  errors: number;
  /** what the failures were: HTTP status or error code, and how many */
  failures: Record<string, number>;
  /** first send to last answer */
  seconds: number;
  /** latencies of the answered requests, ms */
  latencies: number[];
  /** in-process child: its own CPU time over the cell */
  cpuMs?: number;
}

// ---- child: the cascade in-process, on the server's core ----

async function inProcessChild(specFile: string): Promise<void> {
  const { cascades } = loadServeSpec(specFile);
  const { env } = withBatching(await WinnowEnv.create({ progress: false }), BATCHING);
  const [[name, spec]] = [...cascades];
  const pipeline = await compileSpec(spec, env, `${specFile}: ${name}`);
  process.on('message', (m) => void runInProcess(pipeline, m as Order).then((r) => process.send?.(r)));
  // an exit of its own, so a --cpu-prof profile gets written
  process.once('SIGTERM', () => process.exit(0));
  process.send?.({ ready: true });
}

async function runInProcess(pipeline: Pipeline, { size, concurrency, amount, first }: Order): Promise<Measured> {
  const latencies: number[] = [];
  let next = 0;
  let errors = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const caller = async (): Promise<void> => {
    while (next < amount) {
      const i = first + next++;
      const start = performance.now();
      // what the server's route builds from a body: documents keyed by their index
      const { query, documents } = request(i, size);
      const docs = new Map<string, Doc>(documents.map((text, k) => [String(k), { id: String(k), text }]));
      const hits: Hit[] = documents.map((_, k) => ({ docId: String(k), score: 0, scores: {} }));
      try {
        await pipeline.run([{ query: { id: String(i), text: query }, hits }], { docs, costs: new Costs() });
        latencies.push(performance.now() - start);
      } catch (e) {
        errors++;
        lastError = (e as Error).name;
      }
    }
  };
  let lastError = '';
  await Promise.all(Array.from({ length: concurrency }, caller));
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { ok: latencies.length, errors, failures: errors ? { [lastError]: errors } : {}, seconds, latencies, cpuMs: (cpu.user + cpu.system) / 1000 };
}

// ---- child: the load generator, on the other core ----

function loadChild(): void {
  process.on('message', (m) => {
    const order = m as Order;
    void (order.rate ? openLoop(order) : runLoad(order)).then((r) => process.send?.(r));
  });
  process.send?.({ ready: true });
}

async function runLoad({ url, size, concurrency, amount, first }: Order): Promise<Measured> {
  let next = first;
  const { result: r, seconds, latencies } = await cannon({
    url: `${url}/v2/rerank`,
    connections: concurrency,
    amount,
    // a 100-document request behind a deep queue takes tens of seconds; autocannon's 10 s default would count it failed
    timeout: 600,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    requests: [{ setupRequest: (req) => ({ ...req, body: JSON.stringify({ model: 'ce', ...request(next++, size) }) }) }],
  });
  const failures: Record<string, number> = {};
  for (const [code, { count }] of Object.entries(r.statusCodeStats ?? {})) if (!code.startsWith('2')) failures[code] = count ?? 0;
  if (r.errors) failures.error = r.errors;
  if (r.timeouts) failures.timeout = r.timeouts;
  return { ok: r['2xx'], errors: r.errors + r.non2xx + r.timeouts, failures, seconds, latencies };
}

/** `amount` requests, one every 1/rate s, each sent on time whatever is still unanswered. */
async function openLoop({ url, size, amount, first, rate }: Order): Promise<Measured> {
  const latencies: number[] = [];
  let errors = 0;
  const failures: Record<string, number> = {};
  const fail = (what: string): void => {
    errors++;
    failures[what] = (failures[what] ?? 0) + 1;
  };
  const t0 = performance.now();
  const one = async (k: number): Promise<void> => {
    const wait = t0 + (k * 1000) / rate! - performance.now();
    if (wait > 0) await sleep(wait);
    const body = JSON.stringify({ model: 'ce', ...request(first + k, size) });
    const start = performance.now();
    try {
      const res = await fetch(`${url}/v2/rerank`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      await res.arrayBuffer();
      if (res.ok) latencies.push(performance.now() - start);
      else fail(String(res.status));
    } catch (e) {
      fail(((e as Error).cause as { code?: string } | undefined)?.code ?? (e as Error).name);
    }
  };
  await Promise.all(Array.from({ length: amount }, (_, k) => one(k)));
  return { ok: latencies.length, errors, failures, seconds: (performance.now() - t0) / 1000, latencies };
}

// ---- parent ----

interface Cell {
  round: number;
  size: number;
  side: 'in-process' | 'server';
  /** `closed`: C callers back to back; `half-load`: the server at half its saturation request rate */
  kind: 'closed' | 'half-load';
  concurrency: number;
  requests: number;
  errors: number;
  /** HTTP status or error code of the failed requests, and how many */
  failures: Record<string, number>;
  seconds: number;
  docsPerSec: number;
  reqPerSec: number;
  p50: number;
  p99: number;
  cpuMsPerDoc: number;
  /** half-load: the request rate asked for */
  targetRate?: number;
  /** the best cell of its ladder */
  saturation?: boolean;
}

/** ", 15 failed (429 x15)" for a cell with failures, else nothing */
function failed(c: Cell): string {
  return c.errors ? `, ${c.errors} failed (${Object.entries(c.failures).map(([k, n]) => `${k} x${n}`).join(', ')})` : '';
}

/** node flags for a child: with --profile, a V8 CPU profile (main thread) written at exit */
function profiling(): string[] {
  return values.profile ? ['--cpu-prof', '--cpu-prof-dir', path.resolve(values.profile)] : [];
}

/** A child process on `core` speaking over IPC, started with `args` after the node flags. */
async function startPinned(core: string, args: string[], profiled: boolean): Promise<ChildProcess> {
  const child = spawn('taskset', ['-c', core, process.execPath, ...(profiled ? profiling() : []), ...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with code ${code} before it was ready`)));
  });
  return child;
}

function ask(child: ChildProcess, order: Order): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null): void => reject(new Error(`a benchmark child exited with code ${code}`));
    child.once('exit', onExit);
    child.once('message', (m) => {
      child.off('exit', onExit);
      resolve(m as Measured);
    });
    child.send(order);
  });
}

/** `winnow serve` as a user starts it, pinned; resolves once /ready would answer 200 (warm-up done). */
async function startServer(specFile: string): Promise<{ proc: ChildProcess; url: string }> {
  const args = ['-c', SERVER_CORE, process.execPath, ...profiling(), 'bin/winnow.js', 'serve', '--spec', specFile, '--port', '0', '--no-score-cache'];
  const proc = spawn('taskset', args, { stdio: ['ignore', 'pipe', 'inherit'] });
  // the request log (one line per request, on by default) is read and dropped, as a log shipper would
  const lines = createInterface({ input: proc.stdout! });
  const url = await new Promise<string>((resolve, reject) => {
    let at = '';
    lines.on('line', (line) => {
      if (!line.startsWith('{')) return;
      const e = JSON.parse(line) as { event?: string; url?: string; message?: string };
      if (e.event === 'listening') at = e.url ?? '';
      if (e.event === 'ready') resolve(at);
      if (e.event === 'error') reject(new Error(`winnow serve: ${e.message}`));
    });
    proc.once('exit', (code) => reject(new Error(`winnow serve exited with code ${code}`)));
  });
  return { proc, url };
}

const CLOCK_TICK = ((): number => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** user + system CPU time of a process, ms (fields 14 and 15 of /proc/PID/stat, after the command name) */
function cpuMsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLOCK_TICK;
}

async function main(): Promise<void> {
  const model = path.resolve(values.model!);
  if (!existsSync(path.join(model, 'tokenizer.json'))) {
    throw new Error(`${model}: no model; make it with \`.venv/models/bin/python tools/make_bench_models.py --shape minilm-l6\``);
  }
  const quantized = !values.fp32;
  // one spec for both sides: the cascade, its one model thread and its precision are in it
  mkdirSync('bench/.work', { recursive: true });
  const specFile = path.resolve('bench/.work/service-overhead.json');
  writeFileSync(specFile, JSON.stringify({ cascades: { ce: { stages: [{ rerank: model, name: 'ce', threads: 1, quantized }] } } }, null, 2) + '\n');
  const loadStart = os.loadavg();
  process.stderr.write(`load average at start: ${loadStart.map((x) => x.toFixed(2)).join(' ')}\n`);

  const children: ChildProcess[] = [];
  const stopAll = (): void => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  };
  process.once('SIGINT', () => {
    stopAll();
    process.exit(130);
  });
  const t0 = performance.now();
  let cells: Cell[];
  let pids: { inproc: number; server: number };
  const window = { from: 0, to: 0 };
  try {
    const inproc = await startPinned(SERVER_CORE, [SCRIPT, '--child', 'inproc', '--spec', specFile], true);
    children.push(inproc);
    const load = await startPinned(LOAD_CORE, [SCRIPT, '--child', 'load'], false);
    children.push(load);
    const server = await startServer(specFile);
    children.push(server.proc);
    pids = { inproc: inproc.pid!, server: server.proc.pid! };
    cells = await run(inproc, load, server, window);
  } finally {
    stopAll();
    // profiles are written as the children exit (the server's SIGTERM runs its graceful shutdown)
    await Promise.all(children.map((c) => (c.exitCode !== null || c.signalCode !== null ? undefined : new Promise((r) => c.once('exit', r)))));
  }
  const loadEnd = os.loadavg();
  process.stderr.write(`load average at end: ${loadEnd.map((x) => x.toFixed(2)).join(' ')}\n`);
  const docsOf = (side: Cell['side']): number => cells.filter((c) => c.side === side).reduce((a, c) => a + c.requests * c.size, 0);
  const profile = values.profile
    ? { inProcess: mainThreadMsPerDoc(values.profile, pids.inproc, docsOf('in-process'), window), server: mainThreadMsPerDoc(values.profile, pids.server, docsOf('server'), window) }
    : undefined;
  report(cells, { model, quantized, loadStart, loadEnd, minutes: (performance.now() - t0) / 60_000, profile });
}

/** Where a V8 CPU profile's main-thread time went, by what the code is. */
function category(url: string, fn: string): string | undefined {
  if (fn === '(idle)') return undefined;
  if (url.includes('/onnxruntime-')) return 'model: ONNX Runtime run (synchronous, on the main thread)';
  if (url.includes('/@huggingface/tokenizers/') || url.includes('/dist/src/text/')) return 'tokenization';
  if (fn === '(garbage collector)') return 'garbage collection';
  if (url === '' && (fn === 'parse' || fn === 'stringify')) return 'JSON parse / stringify';
  if (/\/node_modules\/(fastify|@fastify|ajv|fast-json-stringify|find-my-way|avvio|light-my-request|fast-uri|secure-json-parse|fast-querystring|process-warning)/.test(url)) return 'fastify, schema validation';
  if (url.includes('/dist/src/serve/')) return 'winnow serve (routes, runner, batcher)';
  if (url.startsWith('node:')) return 'Node internals (HTTP, sockets, streams, timers)';
  if (url === '') return 'other native';
  return 'other JS';
}

/** CLOCK_MONOTONIC in µs: the clock V8 stamps profile samples with, and the one process.hrtime reads */
const monotonicMicros = (): number => Number(process.hrtime.bigint() / 1000n);

/**
 * Main-thread (sampled) ms per document answered, by category, from the profile `node --cpu-prof`
 * wrote for process `pid`: the samples within `window` (the measured rounds, so neither
 * start-up nor warm-up).
 */
function mainThreadMsPerDoc(dir: string, pid: number, docs: number, window: { from: number; to: number }): Record<string, number> {
  const file = readdirSync(dir).find((f) => f.endsWith(`.${pid}.0.001.cpuprofile`));
  if (!file) return {};
  const prof = JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as {
    nodes: { id: number; callFrame: { url: string; functionName: string } }[];
    startTime: number;
    samples: number[];
    timeDeltas: number[];
  };
  const nodes = new Map(prof.nodes.map((n) => [n.id, n.callFrame]));
  const out: Record<string, number> = {};
  let at = prof.startTime;
  prof.samples.forEach((id, i) => {
    at += prof.timeDeltas[i];
    if (at < window.from || at > window.to) return;
    const frame = nodes.get(id)!;
    const c = category(frame.url, frame.functionName || '(anonymous)');
    if (c) out[c] = (out[c] ?? 0) + prof.timeDeltas[i] / 1000 / docs;
  });
  return out;
}

async function run(inproc: ChildProcess, load: ChildProcess, server: { proc: ChildProcess; url: string }, window: { from: number; to: number }): Promise<Cell[]> {
  /** requests numbered across the whole run, so no two share a query and document window until the queries wrap */
  let counter = 0;
  /** documents/s seen so far per size, to size the next cell's amount */
  const rateSeen = new Map<number, number>();

  const measure = async (side: Cell['side'], round: number, size: number, concurrency: number, rate?: number, requests?: number): Promise<Cell> => {
    const expected = rateSeen.get(size) ?? 0;
    const sized = rate ? Math.max(MIN_RATE_REQUESTS, Math.ceil(SECONDS * rate)) : Math.max(concurrency, expected > 0 ? Math.ceil((SECONDS * expected) / size) : 0);
    const amount = requests ?? sized;
    const order: Order = { size, concurrency, amount, first: counter };
    counter += amount;
    let m: Measured;
    let cpuMs: number;
    if (side === 'in-process') {
      m = await ask(inproc, order);
      cpuMs = m.cpuMs ?? 0;
    } else {
      const cpu0 = cpuMsOf(server.proc.pid!);
      m = await ask(load, { ...order, url: server.url, rate });
      cpuMs = cpuMsOf(server.proc.pid!) - cpu0;
    }
    await settle();
    const lat = [...m.latencies].sort((a, b) => a - b);
    const docs = m.ok * size;
    return {
      round, size, side, kind: rate ? 'half-load' : 'closed', concurrency,
      requests: m.ok, errors: m.errors, failures: m.failures, seconds: m.seconds,
      docsPerSec: docs / m.seconds, reqPerSec: m.ok / m.seconds,
      p50: lat.length ? percentile(lat, 50) : NaN, p99: lat.length ? percentile(lat, 99) : NaN,
      cpuMsPerDoc: docs > 0 ? cpuMs / docs : NaN,
      ...(rate ? { targetRate: rate } : {}),
    };
  };

  /** C = 1, 2, 4, … until the best throughput stops rising; marks the best cell as saturation */
  /**
   * The most requests in flight worth trying: beyond what the batcher's queue holds, or what the
   * model clears within the share of the default deadline admission control allows, the server
   * refuses requests by design (429) instead of getting faster.
   */
  const mostInFlight = (size: number): number => {
    const admitted = (ADMIT_SHARE * DEFAULT_LIMITS.defaultDeadlineMs * (rateSeen.get(size) ?? 0)) / 1000;
    return Math.max(1, Math.min(MAX_CONCURRENCY, Math.floor(BATCHING.maxQueue / size), Math.floor(admitted / size)));
  };

  /** The server: C = 1, 2, 4, … until the best throughput stops rising; marks the best cell as saturation. */
  const ladder = async (round: number, size: number): Promise<Cell[]> => {
    const side = 'server';
    const cells: Cell[] = [];
    let best: Cell | undefined;
    let flat = 0;
    // the limit is asked again each step: it grows with the rate measured so far
    for (let c = 1; c <= mostInFlight(size); c *= 2) {
      const cell = await measure(side, round, size, c);
      cells.push(cell);
      process.stderr.write(`  ${side} ${size} docs, ${c} in flight: ${cell.docsPerSec.toFixed(1)} docs/s (${cell.requests} requests${failed(cell)})\n`);
      // a cell with refused requests is past saturation: its answered requests had the core to themselves part of the time
      if (cell.errors > 0) break;
      flat = best && cell.docsPerSec <= best.docsPerSec * (1 + FLAT) ? flat + 1 : 0;
      if (!best || cell.docsPerSec > best.docsPerSec) best = cell;
      rateSeen.set(size, Math.max(rateSeen.get(size) ?? 0, best.docsPerSec));
      if (flat >= 2) break;
    }
    if (!best) throw new Error(`${side}, ${size} documents: even one request at a time failed`);
    best.saturation = true;
    return cells;
  };

  /**
   * The cascade in-process with the server's saturation C in flight (the same queue depth, so
   * the batcher forms the same batches) and with twice as many when that is still worth trying;
   * the better of the two counts, so the in-process side is never held below what it can do.
   */
  const inProcess = async (round: number, size: number, c: number): Promise<Cell[]> => {
    const cells: Cell[] = [];
    for (const k of c * 2 <= mostInFlight(size) ? [c, 2 * c] : [c]) {
      const cell = await measure('in-process', round, size, k);
      process.stderr.write(`  in-process ${size} docs, ${k} in flight: ${cell.docsPerSec.toFixed(1)} docs/s (${cell.requests} requests${failed(cell)})\n`);
      cells.push(cell);
    }
    const best = cells.filter((x) => x.errors === 0).sort((a, b) => b.docsPerSec - a.docsPerSec)[0];
    if (!best) throw new Error(`in-process, ${size} documents: requests failed`);
    best.saturation = true;
    return cells;
  };

  // warm-up, not reported: JIT on both sides, ONNX Runtime's arenas for every batch shape, sockets; also the first rate estimate
  process.stderr.write('warm-up\n');
  for (const size of SIZES) {
    const warm = await measure('in-process', -1, size, 2);
    await measure('server', -1, size, 2);
    // a first estimate, so the ladder's first cells already last about --seconds
    rateSeen.set(size, warm.docsPerSec);
  }
  // the open-loop path too (fetch loads lazily), so its first measured request is not the first ever
  await measure('server', -1, SIZES[0], 0, 1, 2);

  const cells: Cell[] = [];
  /** per size, the C at which the server saturated in the round before */
  const saturatedAt = new Map<number, number>();
  const serverCells = async (round: number, size: number): Promise<void> => {
    const climbed = await ladder(round, size);
    cells.push(...climbed);
    const sat = climbed.find((c) => c.saturation)!;
    saturatedAt.set(size, sat.concurrency);
    const half = await measure('server', round, size, 0, sat.reqPerSec / 2);
    process.stderr.write(`  server at ${half.targetRate!.toFixed(2)} req/s (half of saturation): p50 ${half.p50.toFixed(0)} ms, p99 ${half.p99.toFixed(0)} ms${failed(half)}\n`);
    cells.push(half);
  };
  window.from = monotonicMicros();
  for (let round = 0; round < ROUNDS; round++) {
    const shift = round % SIZES.length;
    for (const [k, size] of [...SIZES.slice(shift), ...SIZES.slice(0, shift)].entries()) {
      process.stderr.write(`round ${round + 1}/${ROUNDS}, ${size} documents per request\n`);
      // which side goes first alternates; the in-process side can go first once a round has found the server's saturation C
      const before = saturatedAt.get(size);
      if ((round + k) % 2 === 1 && before !== undefined) {
        cells.push(...(await inProcess(round, size, before)));
        await serverCells(round, size);
      } else {
        await serverCells(round, size);
        cells.push(...(await inProcess(round, size, saturatedAt.get(size)!)));
      }
    }
  }
  window.to = monotonicMicros();
  return cells;
}

interface RunInfo {
  model: string;
  quantized: boolean;
  loadStart: number[];
  loadEnd: number[];
  minutes: number;
  /** with --profile: main-thread ms per document by category, per side */
  profile?: { inProcess: Record<string, number>; server: Record<string, number> };
}

/** The --profile table: what the server's main thread does per document that the in-process one does not. */
function profileSection(profile: RunInfo['profile'], f: (x: number, d?: number) => string): string[] {
  const what =
    'What the server does per request that the in-process caller does not: read the body from a loopback socket, parse the JSON and validate it against the route schema (fastify, ajv), ' +
    'check admission (predicted queue wait against the deadline), race the cascade against the deadline and the client hanging up (`CascadeRunner`), serialise the response and write one request-log line. ' +
    'Tokenization, batching and the model calls are the same code on both sides. None of the extra scales with model work, so its share shrinks as documents per request and model cost grow.';
  if (!profile) {
    return ['## What the overhead consists of', '', what, '', 'Run with `--profile DIR` for a CPU profile of both sides (`node --cpu-prof`) summarised here; it slows both a little, so take the ratios from a run without it.', ''];
  }
  const cats = [...new Set([...Object.keys(profile.server), ...Object.keys(profile.inProcess)])].sort((a, b) => (profile.server[b] ?? 0) - (profile.server[a] ?? 0));
  const total = (r: Record<string, number>): number => Object.values(r).reduce((a, x) => a + x, 0);
  return [
    '## What the overhead consists of (CPU profile of this run)',
    '',
    what,
    '',
    'Main-thread time per document answered over the measured rounds (warm-up left out), from `node --cpu-prof` (V8\'s sampling profiler) of the in-process child and of the server. ONNX Runtime runs each model call synchronously on the main thread, so model time is in it. On a busy machine a sample also holds the time the process waited for the core, spread over whatever was running.',
    '',
    '| main thread | in-process ms/doc | server ms/doc | server − in-process |',
    '|---|---:|---:|---:|',
    ...cats.map((c) => `| ${c} | ${f(profile.inProcess[c] ?? 0, 3)} | ${f(profile.server[c] ?? 0, 3)} | ${f((profile.server[c] ?? 0) - (profile.inProcess[c] ?? 0), 3)} |`),
    `| total | ${f(total(profile.inProcess), 3)} | ${f(total(profile.server), 3)} | ${f(total(profile.server) - total(profile.inProcess), 3)} |`,
    '',
  ];
}

function report(cells: Cell[], run: RunInfo): void {
  const sat = (side: Cell['side'], size: number): Cell[] => cells.filter((c) => c.side === side && c.size === size && c.saturation).sort((a, b) => a.round - b.round);
  const perRound = (size: number, f: (server: Cell, inproc: Cell) => number): number[] => {
    const s = sat('server', size);
    const i = sat('in-process', size);
    return s.map((x, k) => f(x, i[k]));
  };
  const rows = SIZES.map((size) => {
    const server = sat('server', size);
    const inproc = sat('in-process', size);
    const half = cells.filter((c) => c.size === size && c.kind === 'half-load');
    const ratios = perRound(size, (s, i) => s.docsPerSec / i.docsPerSec);
    const cpuRatios = perRound(size, (s, i) => i.cpuMsPerDoc / s.cpuMsPerDoc);
    return {
      size,
      inProcessDocsPerSec: median(inproc.map((c) => c.docsPerSec)),
      inProcessConcurrency: inproc.map((c) => c.concurrency),
      inProcessCpuMsPerDoc: median(inproc.map((c) => c.cpuMsPerDoc)),
      serverDocsPerSec: median(server.map((c) => c.docsPerSec)),
      serverReqPerSec: median(server.map((c) => c.reqPerSec)),
      serverConcurrency: server.map((c) => c.concurrency),
      serverCpuMsPerDoc: median(server.map((c) => c.cpuMsPerDoc)),
      serverP50: median(server.map((c) => c.p50)),
      serverP99: median(server.map((c) => c.p99)),
      /** server / in-process throughput at saturation, median of per-round ratios: 1 - overhead */
      ratio: median(ratios),
      ratios,
      /** in-process / server CPU time per document, median of per-round ratios */
      cpuRatio: median(cpuRatios),
      cpuRatios,
      halfLoadReqPerSec: median(half.map((c) => c.targetRate ?? 0)),
      halfLoadAchieved: median(half.map((c) => c.reqPerSec)),
      halfLoadP50: median(half.map((c) => c.p50)),
      halfLoadP99: median(half.map((c) => c.p99)),
      halfLoadRequests: half.reduce((a, c) => a + c.requests, 0),
      errors: cells.filter((c) => c.size === size && c.side === 'server').reduce((a, c) => a + c.errors, 0),
    };
  });
  const command = `node dist/bench/service-overhead.js --seconds ${SECONDS} --rounds ${ROUNDS} --sizes ${SIZES.join(',')} --model ${values.model}${run.quantized ? '' : ' --fp32'}${MAX_CONCURRENCY !== 64 ? ` --max-concurrency ${MAX_CONCURRENCY}` : ''}${values.profile ? ` --profile ${values.profile}` : ''}`;
  const result = {
    command,
    date: new Date().toISOString(),
    node: process.version,
    cpus: os.cpus().length,
    cpu: os.cpus()[0]?.model,
    loadAverageStart: run.loadStart,
    loadAverageEnd: run.loadEnd,
    model: run.model,
    precision: run.quantized ? 'int8' : 'fp32',
    seconds: SECONDS,
    rounds: ROUNDS,
    minutes: run.minutes,
    profile: run.profile,
    rows,
    cells,
  };
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/service-overhead.json', JSON.stringify(result, null, 2) + '\n');
  const f = (x: number, d = 1): string => (Number.isFinite(x) ? x.toFixed(d) : '–');
  const pct = (r: number): string => `${f(100 * (1 - r))}%`;
  const md = [
    '# winnow serve: service overhead on one core',
    '',
    `Command: \`npx tsc -p tsconfig.json && ${command}\` (model made by \`.venv/models/bin/python tools/make_bench_models.py --shape minilm-l6\`; see the header of \`bench/service-overhead.ts\`).`,
    '',
    `${result.date}, Node ${process.version}, ${result.cpus} CPUs (${result.cpu}); load average ${run.loadStart.map((x) => f(x, 2)).join(' ')} at the start, ${run.loadEnd.map((x) => f(x, 2)).join(' ')} at the end. ` +
      `Model: MiniLM-L6-shaped cross-encoder, random weights, ${result.precision} ONNX, 1 intra-op thread. SciFact documents (title + text), a different query every request, score cache off. ` +
      `${ROUNDS} round(s), ${f(run.minutes)} minutes in all; each cell sends a fixed number of requests (sized to last about ${SECONDS} s, at least one per connection) and waits for all of them.`,
    '',
    'What is compared: **in-process** = the cascade compiled from the same spec, through the same micro-batcher with `winnow serve`\'s defaults (64 pairs per model call, no wait), `Pipeline.run` called by C concurrent callers in a process pinned to core 1; ' +
      '**server** = `node bin/winnow.js serve --spec … --no-score-cache` pinned to core 1 (request log on, as by default), POST /v2/rerank from autocannon in its own process pinned to core 0. ' +
      `The server climbs C = 1, 2, 4, … until throughput has not gained ${FLAT * 100}% over the best twice running, a request fails, or C × documents would pass what it admits by design (its queue of ${BATCHING.maxQueue} pairs, or what the model clears in ${ADMIT_SHARE * 100}% of the default ${DEFAULT_LIMITS.defaultDeadlineMs / 1000} s deadline); the best cell is saturation. ` +
      'In-process runs with the server\'s saturation C in flight (the same queue depth, so the same batches) and with 2C when admissible; the better of the two counts. ' +
      'Ratio = server docs/s over in-process docs/s at saturation, median of per-round ratios (goal ≥ 0.90, i.e. ≤ 10% overhead). CPU ratio = in-process CPU ms per document over the server\'s, the same comparison in CPU time, which other jobs on the machine disturb less.',
    '',
    ...(ROUNDS < 3 || SECONDS < 6 || SIZES.length < 3 ? ['**A smoke run** (fewer rounds, shorter cells or fewer sizes than the defaults): it shows the bench works, its figures are not a result.', ''] : []),
    '## At saturation',
    '',
    '| docs/request | in-process docs/s (C) | server docs/s (C) | server req/s | server / in-process | overhead | CPU ms/doc in-process / server | CPU ratio | server p50 ms | server p99 ms | failed requests, all server cells |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.size} | ${f(r.inProcessDocsPerSec)} (${r.inProcessConcurrency.join(',')}) | ${f(r.serverDocsPerSec)} (${r.serverConcurrency.join(',')}) | ${f(r.serverReqPerSec, 2)} | **${f(r.ratio, 3)}** | ${pct(r.ratio)} | ${f(r.inProcessCpuMsPerDoc, 2)} / ${f(r.serverCpuMsPerDoc, 2)} | ${f(r.cpuRatio, 3)} | ${f(r.serverP50, 0)} | ${f(r.serverP99, 0)} | ${r.errors} |`,
    ),
    '',
    `Per-round ratios: ${rows.map((r) => `${r.size} docs: ${r.ratios.map((x) => f(x, 3)).join(', ')}`).join('; ')}.`,
    '',
    '## At half the saturation request rate (server)',
    '',
    'Open loop: one request every 1/rate s from the load process, sent whether or not earlier ones are answered. p99 over few requests is close to their maximum; the request counts say how many there were.',
    '',
    '| docs/request | target req/s | achieved req/s | requests (all rounds) | p50 ms | p99 ms |',
    '|---:|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.size} | ${f(r.halfLoadReqPerSec, 2)} | ${f(r.halfLoadAchieved, 2)} | ${r.halfLoadRequests} | ${f(r.halfLoadP50, 0)} | ${f(r.halfLoadP99, 0)} |`),
    '',
    ...profileSection(run.profile, f),
    '## Every cell',
    '',
    '| round | docs | side | kind | C | requests | s | docs/s | req/s | p50 ms | p99 ms | CPU ms/doc | errors |',
    '|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...cells.map(
      (c) =>
        `| ${c.round + 1} | ${c.size} | ${c.side} | ${c.kind}${c.saturation ? ' (saturation)' : ''} | ${c.kind === 'half-load' ? 'open' : c.concurrency} | ${c.requests} | ${f(c.seconds)} | ${f(c.docsPerSec)} | ${f(c.reqPerSec, 2)} | ${f(c.p50, 0)} | ${f(c.p99, 0)} | ${f(c.cpuMsPerDoc, 2)} | ${c.errors ? failed(c).slice(2) : 0} |`,
    ),
    '',
  ].join('\n');
  writeFileSync('bench/results/service-overhead.md', md);
  process.stdout.write(md);
}

if (values.child === 'inproc') await inProcessChild(values.spec!);
else if (values.child === 'load') loadChild();
else await main();
