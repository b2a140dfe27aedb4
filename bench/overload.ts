/**
 * Goodput under overload: `winnow serve` with its default settings, offered 1x, 2x and 4x the
 * load its model can carry, by an open-loop client (requests arrive on a fixed schedule whether
 * or not earlier ones were answered, as users do; a closed-loop client slows down with the
 * server and can never overload it).
 *
 *   npx tsc -p tsconfig.json && node dist/bench/overload.js [--seconds 20] [--docs 20]
 *
 * The model is a plugin scorer with a fixed service time (5 ms per call + 1 ms per pair, one
 * call at a time, like one ONNX session on one core) that sleeps instead of computing. That
 * makes capacity a property of the model, not of how busy this shared machine is, so what the
 * figures show is the server's admission policy: does it keep the model busy with requests that
 * will finish in time, and refuse the rest at once?
 *
 * Capacity is measured first, closed loop (32 clients, every request answered). Then each load
 * level runs for `--seconds`; goodput = 200 answers to requests sent during the window, per
 * second, over capacity. Requests carry no deadline header: the server's default deadline
 * (30 s) applies. Writes bench/results/overload.{md,json}.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { percentile } from '../src/eval/stats.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '20' },
    docs: { type: 'string', default: '20' },
    'call-ms': { type: 'string', default: '5' },
    'pair-ms': { type: 'string', default: '1' },
  },
});
const SECONDS = Number(values.seconds);
const DOCS = Array.from({ length: Number(values.docs) }, (_, i) => `passage ${i} about wing flutter and boundary layers`);
const CALL_MS = Number(values['call-ms']);
const PAIR_MS = Number(values['pair-ms']);

// The plugin's model: scoreMany lets the server's batcher merge requests, as it does for a
// cross-encoder; one call at a time is the batcher's default concurrency.
const PLUGIN = `
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export default function register(registry) {
  registry.defineScorer('fixed', (ref) => ({
    id: ref,
    kind: 'probability',
    async score(query, docs) { return (await this.scoreMany([{ query, docs }]))[0]; },
    async scoreMany(requests) {
      const pairs = requests.reduce((n, r) => n + r.docs.length, 0);
      await sleep(${CALL_MS} + ${PAIR_MS} * pairs);
      return requests.map((r) => Float32Array.from(r.docs, (_, i) => 1 / (2 + i)));
    },
  }), 'fixed service time stand-in model');
}
`;

interface Outcome {
  status: number;
  /** a 200 whose ranking skipped the model (the server's X-Winnow-Degraded header) */
  degraded: boolean;
  ms: number;
  sentAt: number;
}

/** Every request of the run gets another query, so the server's score cache never answers. */
let nextQuery = 0;

async function send(url: string): Promise<Outcome> {
  const i = nextQuery++;
  const sentAt = performance.now();
  try {
    const res = await fetch(`${url}/v2/rerank`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'fixed', query: `query ${i}`, documents: DOCS }),
    });
    await res.arrayBuffer();
    return { status: res.status, degraded: res.headers.has('x-winnow-degraded'), ms: performance.now() - sentAt, sentAt };
  } catch {
    return { status: 0, degraded: false, ms: performance.now() - sentAt, sentAt };
  }
}

async function capacity(url: string): Promise<number> {
  let done = 0;
  const start = performance.now();
  const until = start + 8000;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (performance.now() < until) {
        const o = await send(url);
        if (o.status === 200 && !o.degraded) done++;
      }
    }),
  );
  return (done * 1000) / (performance.now() - start);
}

/** Open loop: one request every 1000/rate ms for `seconds`, then wait for every answer. */
async function offer(url: string, rate: number, seconds: number): Promise<Outcome[]> {
  const start = performance.now();
  const n = Math.round(rate * seconds);
  const pending: Promise<Outcome>[] = [];
  for (let i = 0; i < n; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    pending.push(send(url));
  }
  return Promise.all(pending);
}

async function startServer(dir: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [path.resolve('bin/winnow.js'), 'serve', '--spec', path.join(dir, 'spec.yaml'), '--port', '0'], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, WINNOW_NO_PROGRESS: '1' },
  });
  const url = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const e = JSON.parse(line) as Record<string, unknown>;
        if (e.event === 'listening') resolve(e.url as string);
      } catch {
        // not a log line
      }
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  return { child, url };
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'winnow-overload-'));
writeFileSync(path.join(dir, 'plugin.mjs'), PLUGIN);
writeFileSync(path.join(dir, 'spec.yaml'), 'name: fixed\nplugins: [./plugin.mjs]\nstages:\n  - rerank: fixed:v1\n');
const { child, url } = await startServer(dir);
const rows: Record<string, number | string>[] = [];
try {
  // warm: the batcher needs a few calls before it knows the model's pairs/s
  for (let i = 0; i < 20; i++) await send(url);
  const cap = await capacity(url);
  console.log(`capacity ${cap.toFixed(1)} requests/s (${DOCS.length} documents each)`);
  for (const x of [1, 2, 4]) {
    const rate = cap * x;
    const t0 = performance.now();
    const out = await offer(url, rate, SECONDS);
    const wall = (performance.now() - t0) / 1000;
    const ok = out.filter((o) => o.status === 200 && !o.degraded);
    const degraded = out.filter((o) => o.status === 200 && o.degraded);
    const shed = out.filter((o) => o.status === 429 || o.status === 503);
    const late = out.filter((o) => o.status === 504);
    const other = out.length - ok.length - degraded.length - shed.length - late.length;
    const acceptedMs = ok.map((o) => o.ms);
    const row = {
      load: `${x}x`,
      offered_rps: Number(rate.toFixed(1)),
      requests: out.length,
      ok: ok.length,
      degraded_200: degraded.length,
      shed: shed.length,
      timed_out_504: late.length,
      other_errors: other,
      goodput_rps: Number((ok.length / SECONDS).toFixed(1)),
      goodput_of_capacity: Number((ok.length / SECONDS / cap).toFixed(3)),
      shed_rate: Number((shed.length / out.length).toFixed(3)),
      p50_accepted_ms: Math.round(percentile(acceptedMs, 50)),
      p99_accepted_ms: Math.round(percentile(acceptedMs, 99)),
      p99_shed_ms: Math.round(percentile(shed.map((o) => o.ms), 99)),
      drain_s: Number((wall - SECONDS).toFixed(1)),
    };
    console.log(JSON.stringify(row));
    rows.push(row);
  }
  const load = os.loadavg().map((l) => l.toFixed(2)).join(' ');
  const cmd = `npx tsc -p tsconfig.json && node dist/bench/overload.js --seconds ${SECONDS} --docs ${DOCS.length}`;
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/overload.json', JSON.stringify({ command: cmd, capacity_rps: cap, call_ms: CALL_MS, pair_ms: PAIR_MS, docs: DOCS.length, seconds: SECONDS, loadavg: load, rows }, null, 2) + '\n');
  const head = Object.keys(rows[0]);
  const md = [
    '# Goodput under overload (default `winnow serve` settings)',
    '',
    `Command: \`${cmd}\``,
    '',
    `Model: a stand-in with a fixed service time (${CALL_MS} ms per call + ${PAIR_MS} ms per pair, one call at a time; it sleeps, so capacity does not depend on how busy the machine is). ${DOCS.length} documents per request, every request a new query (so the score cache never answers), no deadline header (the default 30 s deadline applies), open-loop arrivals for ${SECONDS} s per level. Capacity, measured closed-loop first: **${cap.toFixed(1)} requests/s**. Load average at the end: ${load} (2 cores, shared with other jobs).`,
    '',
    `| ${head.join(' | ')} |`,
    `|${head.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${head.map((k) => r[k]).join(' | ')} |`),
    '',
    'goodput = full answers (200 without `X-Winnow-Degraded`) per second of offered load, over capacity; degraded_200 = a 200 whose ranking skipped the model to meet its deadline; shed = 429/503 answers (sent at once, with Retry-After); p99_shed_ms is how long a refused client waited for its refusal.',
    '',
  ].join('\n');
  writeFileSync('bench/results/overload.md', md);
} finally {
  child.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
}
