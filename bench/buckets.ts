/**
 * Length buckets in the server's micro-batcher: padded tokens and throughput of a cross-encoder
 * behind `BatchingScorer` with a backlog of concurrent requests, pairs taken in arrival order
 * (`lengthBuckets: false`, the old behaviour) against pairs grouped by token length (default).
 * Writes bench/results/buckets.{json,md}.
 *
 *   npx tsc -p tsconfig.json && .venv/models/bin/python tools/make_bench_models.py --shape tinybert-l2
 *   node dist/bench/buckets.js [--model bench/.work/tinybert-l2-ce] [--requests 48] [--clients 8]
 *       [--rounds 3] [--max-batch 64] [--threads N]
 *
 * Requests: SciFact test queries, each with 20, 50 or 100 corpus documents (in turn) drawn with
 * a fixed seed, document = title + " " + text; `--clients` callers each send their next request
 * when the previous one returns (closed loop), so the batcher always has a backlog. Both modes
 * run every round in alternating order on the same session; per mode: pairs/s, real and padded
 * tokens (the session's counters), request latency p50/p99. The scores of the two modes are
 * compared per request: max |diff| and whether every request's ranking is the same.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import type { Doc } from '../src/core/types.js';
import { percentile } from '../src/eval/stats.js';
import { CrossEncoder } from '../src/rerank/cross-encoder.js';
import { BatchingScorer } from '../src/serve/batcher.js';
import { median, readJsonl } from './common.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'bench/.work/tinybert-l2-ce' },
    dataset: { type: 'string', default: '../shared/datasets/scifact' },
    requests: { type: 'string', default: '48' },
    clients: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '3' },
    'max-batch': { type: 'string', default: '64' },
    threads: { type: 'string', default: String(os.availableParallelism()) },
    out: { type: 'string', default: 'bench/results/buckets' },
  },
});

interface RunResult {
  wall_s: number;
  /** process CPU seconds (ONNX Runtime's threads included): less bent by other jobs than wall time */
  cpu_s: number;
  pairs: number;
  tokens: number;
  paddedTokens: number;
  latencies: number[];
  scores: Float32Array[];
}

/** a small seeded generator, so both modes and every rerun get the same requests */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

async function run(ce: CrossEncoder, requests: { query: string; docs: Doc[] }[], clients: number, maxBatch: number, lengthBuckets: boolean): Promise<RunResult> {
  const b = new BatchingScorer(ce, { maxBatch, maxWaitMs: 0, maxQueue: 1 << 20, lengthBuckets });
  const c0 = { ...ce.counters };
  const scores: Float32Array[] = new Array(requests.length);
  const latencies: number[] = [];
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: clients }, async () => {
    while (next < requests.length) {
      const i = next++;
      const t = performance.now();
      scores[i] = await b.score(requests[i].query, requests[i].docs);
      latencies.push(performance.now() - t);
    }
  }));
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return {
    wall_s: wall,
    cpu_s: (cpu.user + cpu.system) / 1e6,
    pairs: b.pairs,
    tokens: ce.counters.tokens - c0.tokens,
    paddedTokens: ce.counters.paddedTokens - c0.paddedTokens,
    latencies,
    scores,
  };
}

function sameRanking(a: Float32Array, b: Float32Array): boolean {
  const order = (s: Float32Array): number[] => Array.from(s.keys()).sort((x, y) => s[y] - s[x] || x - y);
  const [oa, ob] = [order(a), order(b)];
  return oa.every((v, i) => v === ob[i]);
}

async function main(): Promise<void> {
  const load0 = os.loadavg();
  const corpus = readJsonl<{ _id: string; title?: string; text: string }>(path.join(values.dataset!, 'corpus.jsonl'));
  const queries = readJsonl<{ _id: string; text: string }>(path.join(values.dataset!, 'queries.jsonl'));
  const nReq = Number(values.requests);
  const rand = rng(20261207);
  const sizes = [20, 50, 100];
  const requests = Array.from({ length: nReq }, (_, i) => ({
    query: queries[i % queries.length].text,
    docs: Array.from({ length: sizes[i % sizes.length] }, (): Doc => {
      const d = corpus[Math.floor(rand() * corpus.length)];
      return { id: d._id, title: d.title, text: d.text };
    }),
  }));
  const ce = await CrossEncoder.load(values.model!, { threads: Number(values.threads) });
  const maxBatch = Number(values['max-batch']);
  const clients = Number(values.clients);
  // warm the tokenizer memo and the session so neither mode pays first-use costs
  await run(ce, requests.slice(0, clients), clients, maxBatch, false);
  const modes = { arrival: false, buckets: true } as const;
  const results: Record<string, RunResult[]> = { arrival: [], buckets: [] };
  for (let r = 0; r < Number(values.rounds); r++) {
    const names = r % 2 === 0 ? (['arrival', 'buckets'] as const) : (['buckets', 'arrival'] as const);
    for (const name of names) {
      const res = await run(ce, requests, clients, maxBatch, modes[name]);
      results[name].push(res);
      process.stderr.write(`[buckets] round ${r + 1} ${name}: ${res.wall_s.toFixed(2)} s, padded ${(100 * (1 - res.tokens / res.paddedTokens)).toFixed(1)}%\n`);
    }
  }
  await ce.close();
  let maxDiff = 0;
  let rankingsSame = 0;
  const [a, b] = [results.arrival[0].scores, results.buckets[0].scores];
  for (let i = 0; i < a.length; i++) {
    for (let j = 0; j < a[i].length; j++) maxDiff = Math.max(maxDiff, Math.abs(a[i][j] - b[i][j]));
    if (sameRanking(a[i], b[i])) rankingsSame++;
  }
  const summary = Object.fromEntries(Object.entries(results).map(([name, rs]) => {
    const lat = rs.flatMap((x) => x.latencies);
    return [name, {
      walls: rs.map((x) => Number(x.wall_s.toFixed(3))),
      median_cpu_s: median(rs.map((x) => x.cpu_s)),
      median_wall_s: median(rs.map((x) => x.wall_s)),
      pairs_per_s: rs[0].pairs / median(rs.map((x) => x.wall_s)),
      padded_fraction: 1 - rs[0].tokens / rs[0].paddedTokens,
      tokens: rs[0].tokens,
      padded_tokens: rs[0].paddedTokens,
      latency_p50_ms: percentile(lat, 50),
      latency_p99_ms: percentile(lat, 99),
    }];
  }));
  const ratios = results.arrival.map((x, i) => x.wall_s / results.buckets[i].wall_s).sort((p, q) => p - q);
  const cpuRatios = results.arrival.map((x, i) => x.cpu_s / results.buckets[i].cpu_s).sort((p, q) => p - q);
  const load1 = os.loadavg();
  const cmd = `node dist/bench/buckets.js --model ${values.model} --requests ${nReq} --clients ${clients} --rounds ${values.rounds} --max-batch ${maxBatch} --threads ${values.threads}`;
  const json = { command: cmd, model: values.model, requests: nReq, pairs: results.arrival[0].pairs, clients, maxBatch, threads: Number(values.threads),
    loadavg_start: load0, loadavg_end: load1, summary, speedup_median: median(ratios), cpu_ratio_median: median(cpuRatios), max_abs_score_diff: maxDiff, rankings_same: `${rankingsSame}/${a.length}` };
  fs.writeFileSync(`${values.out}.json`, JSON.stringify(json, null, 2) + '\n');
  const s = summary;
  const row = (n: string): string => `| ${n} | ${s[n].median_wall_s.toFixed(2)} | ${s[n].median_cpu_s.toFixed(2)} | ${s[n].pairs_per_s.toFixed(1)} | ${(100 * s[n].padded_fraction).toFixed(1)}% | ${s[n].latency_p50_ms.toFixed(0)} | ${s[n].latency_p99_ms.toFixed(0)} |`;
  const md = [
    '# Length buckets in the serve batcher',
    '',
    `Command: \`${cmd}\``,
    '',
    `${nReq} requests (SciFact queries, 20/50/100 random corpus documents each, ${json.pairs} pairs), ${clients} closed-loop clients, maxBatch ${maxBatch}, model ${values.model}, ${values.threads} threads.`,
    `Load average at start ${load0.map((x) => x.toFixed(1)).join(' / ')}, at end ${load1.map((x) => x.toFixed(1)).join(' / ')} (shared machine).`,
    '',
    '| batches | median wall s | median CPU s | pairs/s (wall) | padded tokens | latency p50 ms | latency p99 ms |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    row('arrival'),
    row('buckets'),
    '',
    `Speed-up (median of per-round ratios, arrival / buckets): wall ${json.speedup_median.toFixed(2)}x, CPU ${json.cpu_ratio_median.toFixed(2)}x.`,
    `Scores: max |arrival - buckets| = ${maxDiff.toExponential(2)}; rankings identical for ${json.rankings_same} requests.`,
    '',
  ].join('\n');
  fs.writeFileSync(`${values.out}.md`, md);
  process.stdout.write(md);
}

void main();
