import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import '../../src/builtins.js';
import { Pipeline } from '../../src/cascade/pipeline.js';
import { Costs } from '../../src/core/costs.js';
import { WinnowError } from '../../src/core/errors.js';
import type { Query, Ranking } from '../../src/core/types.js';
import { HashEmbedder } from '../../src/retrieve/dense/embedder.js';
import { loadEmbedder } from '../../src/retrieve/dense/load.js';
import { parseOpenSearchTarget } from '../../src/retrieve/opensearch/connect.js';
import { OpenSearchConnection, OpenSearchRetriever, openSearchRetriever, type OpenSearchRetrieverOptions } from '../../src/retrieve/opensearch/retriever.js';
import { readCorpus } from '../../src/eval/io/beir.js';
import { Rerank } from '../../src/rerank/rerank.js';
import type { Scorer } from '../../src/rerank/scorer.js';
import { winnow } from '../cli/run.js';

// ---------------------------------------------------------------------------------------------
// Part 1: a loopback fake of OpenSearch's _mapping and _msearch, for the failure modes a real
// engine cannot be made to show on demand (timeouts, failed shards, 429s).
// ---------------------------------------------------------------------------------------------

interface FakeReply {
  status?: number;
  headers?: Record<string, string>;
  body: unknown;
}

interface FakeEngine {
  url: string;
  /** bodies of _msearch requests (NDJSON lines parsed) */
  searches: unknown[][];
  /** replies for _msearch, served in order; when empty, `answer` builds one */
  script: FakeReply[];
  close(): Promise<void>;
}

const MAPPING = {
  idx: {
    mappings: {
      properties: {
        title: { type: 'text' },
        text: { type: 'text' },
        contents: { type: 'text' },
        embedding: { type: 'knn_vector', dimension: 8 },
      },
    },
  },
};

function okResponse(size: number): Record<string, unknown> {
  const hits = Array.from({ length: size }, (_, i) => ({ _id: `d${i}`, _score: 10 - i, _source: { title: `T${i}`, text: `text of d${i}` } }));
  return { took: 1, timed_out: false, _shards: { total: 1, successful: 1, skipped: 0, failed: 0 }, hits: { hits }, status: 200 };
}

async function fakeEngine(answer: (search: Record<string, unknown>) => Record<string, unknown> = (s) => okResponse(Number(s.size))): Promise<FakeEngine> {
  const searches: unknown[][] = [];
  const script: FakeReply[] = [];
  const server: Server = createServer((req: IncomingMessage, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString()));
    req.on('end', () => {
      const send = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify(body));
      };
      if (req.url?.endsWith('/_mapping')) {
        if (req.url.startsWith('/missing/')) return send(404, { error: { type: 'index_not_found_exception', reason: 'no such index [missing]' }, status: 404 });
        return send(200, MAPPING);
      }
      if (req.url?.includes('/_msearch')) {
        const lines = raw.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
        searches.push(lines);
        const next = script.shift();
        if (next) return send(next.status ?? 200, next.body, next.headers);
        const responses = lines.filter((_, i) => i % 2 === 1).map((s) => answer(s));
        return send(200, { took: 1, responses });
      }
      send(404, { error: 'unexpected request ' + req.url });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { url: `opensearch://127.0.0.1:${port}/idx`, searches, script, close: () => new Promise((r) => server.close(() => r())) };
}

const Q: Query[] = [
  { id: 'q1', text: 'alpha beta' },
  { id: 'q2', text: 'gamma' },
];

async function runRetriever(r: OpenSearchRetriever | Pipeline, queries = Q): Promise<{ rankings: Ranking[]; costs: Costs }> {
  const costs = new Costs();
  const rankings = await r.run(queries.map((query) => ({ query, hits: [] })), { costs });
  return { rankings, costs };
}

function retriever(url: string, options: OpenSearchRetrieverOptions = {}, k = 5, timeoutMs = 10_000): OpenSearchRetriever {
  return new OpenSearchRetriever(new OpenSearchConnection(parseOpenSearchTarget(url), timeoutMs), options, k);
}

async function rejectsWith(p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof WinnowError, `expected a WinnowError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, message);
    return true;
  });
}

describe('OpenSearch retriever against a loopback fake', () => {
  test('references parse, and malformed ones say what is wrong', () => {
    assert.deepEqual(parseOpenSearchTarget('opensearch://h1:9200,h2:9201/scifact'), { nodes: ['http://h1:9200', 'http://h2:9201'], index: 'scifact' });
    assert.deepEqual(parseOpenSearchTarget('opensearch:https://u:p@h:9200/x'), { nodes: ['https://u:p@h:9200'], index: 'x' });
    assert.deepEqual(parseOpenSearchTarget('opensearch+https://h:9200/x'), { nodes: ['https://h:9200'], index: 'x' });
    assert.throws(() => parseOpenSearchTarget('opensearch://h:9200'), /names no index/);
    assert.throws(() => parseOpenSearchTarget('opensearch://h:9200/Bad'), /not a valid index name/);
    assert.throws(() => parseOpenSearchTarget('elastic://h/x'), /not an OpenSearch reference/);
  });

  test('BM25: multi_match over the given fields and boosts; a following top-k becomes size; _source text rides on the hits', async () => {
    const fake = await fakeEngine();
    try {
      const r = retriever(fake.url, { fields: ['title^2', 'text'], matchType: 'most_fields' }, 1000);
      const pipeline = Pipeline.of(r).top(7);
      const { rankings, costs } = await runRetriever(pipeline);
      assert.equal(fake.searches.length, 1, 'both queries go in one _msearch');
      const body = fake.searches[0][1] as { size: number; query: { multi_match: { fields: string[]; type: string; query: string } }; _source: string[] };
      assert.equal(body.size, 7, 'top(7) pushed down into size');
      assert.deepEqual(body.query.multi_match, { query: 'alpha beta', fields: ['title^2', 'text'], type: 'most_fields' });
      assert.deepEqual(body._source, ['text', 'title']);
      assert.equal(rankings[0].hits.length, 7);
      assert.deepEqual(rankings[0].hits[0].doc, { id: 'd0', title: 'T0', text: 'text of d0' });
      assert.equal(rankings[0].hits[0].scores.opensearch, 10);
      assert.equal(costs.get('opensearch.requests'), 2, 'one mapping look plus one _msearch');
      await r.close();
    } finally {
      await fake.close();
    }
  });

  test('a reranker after the first pass reads the _source text on the hits, with no document lookup', async () => {
    const fake = await fakeEngine();
    try {
      const seen: string[] = [];
      const scorer: Scorer = {
        id: 'length',
        kind: 'unbounded',
        async score(_query, docs) {
          seen.push(...docs.map((d) => `${d.title}|${d.text}`));
          return Float32Array.from(docs, (d) => d.text.length);
        },
      };
      const pipeline = Pipeline.of(retriever(fake.url, {}, 100)).top(3).andThen(new Rerank(scorer));
      const costs = new Costs();
      const [r] = await pipeline.run([{ query: Q[0], hits: [] }], { costs, docs: new Map() });
      assert.deepEqual(seen.sort(), ['T0|text of d0', 'T1|text of d1', 'T2|text of d2']);
      assert.equal(r.hits.length, 3);
      await pipeline.close();
    } finally {
      await fake.close();
    }
  });

  test('default fields: contents when the index has it', async () => {
    const fake = await fakeEngine();
    try {
      const r = retriever(fake.url);
      await runRetriever(r);
      const body = fake.searches[0][1] as { query: { multi_match: { fields: string[] } } };
      assert.deepEqual(body.query.multi_match.fields, ['contents']);
      await r.close();
    } finally {
      await fake.close();
    }
  });

  test('k-NN: the query is embedded by Winnow and sent as a knn query with k = size; a wrong dimension is refused', async () => {
    const fake = await fakeEngine();
    try {
      const embedder = new HashEmbedder(8);
      const r = retriever(fake.url, { mode: 'knn', embedder }, 4);
      await runRetriever(r);
      const body = fake.searches[0][1] as { size: number; query: { knn: { embedding: { vector: number[]; k: number } } } };
      assert.equal(body.size, 4);
      assert.equal(body.query.knn.embedding.k, 4);
      assert.deepEqual(body.query.knn.embedding.vector, Array.from(await embedder.embedQuery('alpha beta')));
      await r.close();
      const wrong = retriever(fake.url, { mode: 'knn', embedder: new HashEmbedder(16) }, 4);
      await rejectsWith(runRetriever(wrong), 'bad_spec', /dimension 8.*makes 16/);
      await wrong.close();
      const engine = retriever(fake.url, { mode: 'knn', engineModel: 'm-1' }, 3);
      await runRetriever(engine);
      assert.deepEqual((fake.searches.at(-1)![1] as { query: unknown }).query, { neural: { embedding: { query_text: 'alpha beta', model_id: 'm-1', k: 3 } } });
      await engine.close();
    } finally {
      await fake.close();
    }
  });

  test('an engine timeout is an error, or with allowPartial a list counted as partial', async () => {
    const fake = await fakeEngine((s) => ({ ...okResponse(Number(s.size)), timed_out: true }));
    try {
      const strict = retriever(fake.url, {}, 5, 50);
      await rejectsWith(runRetriever(strict), 'unavailable', /timed out after 50 ms on query "q1".*partial list/);
      const lenient = retriever(fake.url, { allowPartial: true }, 5, 50);
      const { rankings, costs } = await runRetriever(lenient);
      assert.equal(rankings[0].hits.length, 5);
      assert.equal(costs.get('opensearch.partial'), 2);
      await strict.close();
      await lenient.close();
    } finally {
      await fake.close();
    }
  });

  test('failed shards are an error naming the reason', async () => {
    const fake = await fakeEngine((s) => ({
      ...okResponse(Number(s.size)),
      _shards: { total: 2, successful: 1, failed: 1, failures: [{ shard: 1, index: 'idx', reason: { type: 'node_disconnected_exception', reason: 'node left' } }] },
    }));
    try {
      const r = retriever(fake.url);
      await rejectsWith(runRetriever(r), 'unavailable', /1 of 2 shards failed \(node_disconnected_exception: node left\)/);
      await r.close();
    } finally {
      await fake.close();
    }
  });

  test('429s are retried with backoff (Retry-After honoured), then an error', async () => {
    const fake = await fakeEngine();
    try {
      const rejected = { status: 429, headers: { 'retry-after': '0' }, body: { error: { type: 'es_rejected_execution_exception', reason: 'search queue full' }, status: 429 } };
      fake.script.push(rejected, { status: 200, body: { responses: [{ status: 429, error: { type: 'es_rejected_execution_exception', reason: 'queue full' } }, okResponse(5)] } });
      const r = retriever(fake.url, { retries: 3 });
      const { rankings, costs } = await runRetriever(r);
      assert.equal(rankings[1].hits.length, 5);
      assert.equal(costs.get('opensearch.rejected'), 2, 'one request-level and one item-level 429');
      assert.equal(fake.searches.length, 3);
      fake.script.push(rejected, rejected);
      const impatient = retriever(fake.url, { retries: 1 });
      await rejectsWith(runRetriever(impatient), 'unavailable', /429 Too Many Requests/);
      await r.close();
      await impatient.close();
    } finally {
      await fake.close();
    }
  });

  test('an item error other than 429 names the query and the engine reason', async () => {
    const fake = await fakeEngine(() => ({ status: 400, error: { type: 'search_phase_execution_exception', reason: 'all shards failed', root_cause: [{ type: 'query_shard_exception', reason: 'failed to create query' }] } }));
    try {
      const r = retriever(fake.url);
      await rejectsWith(runRetriever(r), 'bad_spec', /query "q1".*search_phase_execution_exception: all shards failed; query_shard_exception: failed to create query/);
      await r.close();
    } finally {
      await fake.close();
    }
  });

  test('unreachable nodes: an error when none answers; a dead node among live ones is skipped', async () => {
    const dead = await new Promise<number>((resolve) => {
      const s = createServer();
      s.listen(0, '127.0.0.1', () => {
        const { port } = s.address() as AddressInfo;
        s.close(() => resolve(port));
      });
    });
    const none = retriever(`opensearch://127.0.0.1:${dead}/idx`);
    await rejectsWith(runRetriever(none), 'unavailable', new RegExp(`cannot reach OpenSearch at 127.0.0.1:${dead}`));
    await none.close();
    const fake = await fakeEngine();
    try {
      const live = new URL(fake.url.replace('opensearch:', 'http:')).host;
      const mixed = retriever(`opensearch://127.0.0.1:${dead},${live}/idx`);
      for (let i = 0; i < 3; i++) assert.equal((await runRetriever(mixed)).rankings[0].hits.length, 5);
      await mixed.close();
    } finally {
      await fake.close();
    }
  });

  test('a missing index and unknown fields are clear errors; spec typos are named', async () => {
    const fake = await fakeEngine();
    try {
      const missing = retriever(fake.url.replace('/idx', '/missing'));
      await rejectsWith(runRetriever(missing), 'not_found', /no index "missing"/);
      await assert.rejects(runRetriever(missing), (e: WinnowError) => /winnow index --to/.test(e.hint ?? ''));
      await missing.close();
      const typo = retriever(fake.url, { fields: ['titel'] });
      await rejectsWith(runRetriever(typo), 'bad_spec', /has no field "titel"/);
      await typo.close();
      await rejectsWith(openSearchRetriever(fake.url, { feilds: ['x'] }, 'spec'), 'bad_spec', /unknown opensearch option "feilds".*fields/);
      await rejectsWith(openSearchRetriever(fake.url, { mode: 'knn' }, 'spec').then((r) => r.close()), 'bad_spec', /needs a model/);
    } finally {
      await fake.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Part 2: a real OpenSearch 2.19 with the k-NN plugin, started by deploy/cluster/opensearch.sh.
// ---------------------------------------------------------------------------------------------

const SCRIPT = path.resolve('deploy/cluster/opensearch.sh');
const SCIFACT = '/work/shared/datasets/scifact';
const TINY_BI = path.resolve('test/fixtures/models/tiny-bert-bi');

function missingTools(): string | undefined {
  const missing = ['java', 'javac', 'mvn', 'curl', 'node'].filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
  return missing.length ? missing.join(', ') : undefined;
}

const externalUrl = process.env.WINNOW_TEST_OPENSEARCH_URL;
const missing = externalUrl ? undefined : missingTools();
const skipReal = missing ? `OpenSearch tests SKIPPED: ${missing} not installed (apt-get install -y openjdk-17-jdk-headless maven curl)` : false;
if (skipReal) process.stderr.write(`\n!!! ${skipReal}\n\n`);

describe('OpenSearch retriever and loader against a real engine', { skip: skipReal }, () => {
  let url = '';
  let pid = '';
  let work = '';
  let dataset = '';
  const index = `scifact-${process.pid}`;

  before(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), 'winnow-os-test-'));
    if (externalUrl) {
      url = externalUrl;
    } else {
      const out = execFileSync('bash', [SCRIPT, 'up', '--timeout', '240'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 600_000 });
      const vars = Object.fromEntries(out.trim().split('\n').map((l) => l.split('=', 2) as [string, string]));
      url = vars.OPENSEARCH_URL;
      pid = vars.OPENSEARCH_PID;
    }
    dataset = subsetOfScifact(path.join(work, 'scifact-subset'));
  });

  after(async () => {
    // A cluster this test did not start keeps running; only the test's own indexes go.
    if (externalUrl && url) for (const name of [index, `${index}-killed`]) await fetch(`${url}/${name}`, { method: 'DELETE' }).catch(() => undefined);
    if (pid) execFileSync('bash', [SCRIPT, 'down', pid], { stdio: 'inherit' });
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const target = (): string => `${url.replace(/^http/, 'opensearch')}/${index}`;

  test('winnow index --to loads the corpus with vectors, resumes after an interrupted load, and refuses another model', () => {
    const corpus = path.join(dataset, 'corpus.jsonl');
    const total = readFileSync(corpus, 'utf8').trim().split('\n').length;
    const first = winnow(['index', '--to', target(), '--corpus', dataset, '--model', TINY_BI, '--limit', '300', '--batch-docs', '100']);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /created, indexed 300 in .* → 300 documents/);
    const rest = winnow(['index', '--to', target(), '--corpus', dataset, '--model', TINY_BI, '--batch-docs', '250']);
    assert.equal(rest.code, 0, rest.stderr);
    assert.match(rest.stdout, new RegExp(`indexed ${total - 300}, skipped 300 already present in .* → ${total} documents`));
    const other = winnow(['index', '--to', target(), '--corpus', dataset]);
    assert.equal(other.code, 4, other.stdout);
    assert.match(other.stderr, /was made with the model .*tiny-bert-bi.*has no model/);
  });

  test('a load killed with SIGKILL mid-way is finished by running it again: nothing lost, nothing sent twice', async () => {
    const killedIndex = `${target()}-killed`;
    const plain = killedIndex.replace(/^opensearch/, 'http');
    const corpus = path.join(dataset, 'corpus.jsonl');
    const total = readFileSync(corpus, 'utf8').trim().split('\n').length;
    const child = spawn(process.execPath, [path.resolve('bin/winnow.js'), 'index', '--to', killedIndex, '--corpus', corpus, '--model', TINY_BI, '--batch-docs', '20'], {
      env: { ...process.env, WINNOW_NO_PROGRESS: '1' },
      stdio: 'ignore',
    });
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    let alive = true;
    void exited.then(() => (alive = false));
    let seen = 0;
    while (alive && seen < 100) {
      await new Promise((r) => setTimeout(r, 100));
      const refreshed = await fetch(`${plain}/_refresh`, { method: 'POST' }).catch(() => undefined);
      if (!refreshed?.ok) continue;
      seen = ((await (await fetch(`${plain}/_count`)).json()) as { count: number }).count;
    }
    assert.ok(alive, `the load ended (${await exited}) before 100 documents were seen; nothing was interrupted`);
    child.kill('SIGKILL');
    await exited;
    const again = winnow(['index', '--to', killedIndex, '--corpus', corpus, '--model', TINY_BI]);
    assert.equal(again.code, 0, again.stderr);
    const m = /indexed (\d+), skipped (\d+) already present .* → (\d+) documents/.exec(again.stdout);
    assert.ok(m, again.stdout);
    const [indexed, skipped, count] = m.slice(1).map(Number);
    assert.ok(skipped >= seen, `skipped ${skipped} >= the ${seen} seen before the kill`);
    assert.equal(indexed + skipped, total);
    assert.equal(count, total);
  });

  test('BM25 through OpenSearch scores SciFact like Winnow\'s own BM25 (same k1, b and analyzer)', () => {
    const json = (name: string): string => path.join(work, `${name}.json`);
    const viaEngine = winnow(['eval', '--dataset', dataset, '--first-pass', target(), '--first-k', '100', '--json', json('os')]);
    assert.equal(viaEngine.code, 0, viaEngine.stderr);
    const own = winnow(['eval', '--dataset', dataset, '--first-pass', 'bm25', '--first-k', '100', '--json', json('bm25'), '--index-cache', path.join(work, 'idx')]);
    assert.equal(own.code, 0, own.stderr);
    type Result = { final: Record<string, number>; stages: { stage: string; in: number; out: number; metrics: Record<string, number>; costs: Record<string, number> }[] };
    const a = JSON.parse(readFileSync(json('os'), 'utf8')) as Result;
    const b = JSON.parse(readFileSync(json('bm25'), 'utf8')) as Result;
    process.stdout.write(`# SciFact subset BM25 nDCG@10: OpenSearch ${a.final['nDCG@10'].toFixed(4)} vs Winnow ${b.final['nDCG@10'].toFixed(4)}; R@100 ${a.stages[0].metrics['R@out'].toFixed(4)} vs ${b.stages[0].metrics['R@out'].toFixed(4)}\n`);
    // Lucene stores lengths in one byte (lossy) and Winnow exactly, so a few ties can break differently.
    assert.ok(Math.abs(a.final['nDCG@10'] - b.final['nDCG@10']) < 0.01, `nDCG@10 ${a.final['nDCG@10']} vs ${b.final['nDCG@10']}`);
    assert.ok(Math.abs(a.stages[0].metrics['R@out'] - b.stages[0].metrics['R@out']) < 0.01);
    assert.ok(a.stages[0].out > 99, 'k=100 pushed down: a full list per query');
    assert.ok(a.stages[0].costs['opensearch.requests'] >= a.stages[0].out / 100, 'the engine was asked');
  });

  test('k-NN with a Winnow bi-encoder finds what an exact scan over the same embeddings finds; hybrid fuses both with docs on the hits', async () => {
    const embedder = await loadEmbedder(TINY_BI);
    const docs = [];
    for await (const d of readCorpus(path.join(dataset, 'corpus.jsonl'))) docs.push(d);
    const matrix = (await embedder.embedDocs(docs)) as Float32Array;
    const queries = readFileSync(path.join(dataset, 'queries.jsonl'), 'utf8').trim().split('\n').slice(0, 20).map((l) => {
      const q = JSON.parse(l) as { _id: string; text: string };
      return { id: q._id, text: q.text };
    });
    const knn = await openSearchRetriever(target(), { mode: 'knn', model: TINY_BI }, 'test');
    const { rankings } = await runRetriever(Pipeline.of(knn).top(10) as Pipeline, queries);
    let agree = 0;
    for (const r of rankings) {
      assert.equal(r.hits.length, 10);
      const q = await embedder.embedQuery(r.query.text);
      const exact = docs
        .map((d, i) => ({ id: d.id, s: q.reduce((acc, x, j) => acc + x * matrix[i * embedder.dim + j], 0) }))
        .sort((x, y) => y.s - x.s)
        .slice(0, 10)
        .map((x) => x.id);
      agree += r.hits.filter((h) => exact.includes(h.docId)).length;
      for (const h of r.hits) assert.ok(h.score > 0 && h.score <= 1, `lucene cosine scores are in (0, 1]: ${h.score}`);
    }
    assert.ok(agree / (rankings.length * 10) >= 0.9, `HNSW recall@10 against the exact scan: ${agree / (rankings.length * 10)}`);
    await knn.close();

    const hybrid = await openSearchRetriever(target(), { mode: 'hybrid', model: TINY_BI, rrfK: 60 }, 'test');
    const fused = await runRetriever(Pipeline.of(hybrid).top(20) as Pipeline, queries.slice(0, 5));
    for (const r of fused.rankings) {
      assert.equal(r.hits.length, 20);
      for (const h of r.hits) {
        assert.ok(h.doc && h.doc.text.length > 0, 'the _source text survives the fusion');
        assert.ok('opensearch.bm25' in h.scores || 'opensearch.knn' in h.scores);
        assert.ok(h.score <= 2 / 61 + 1e-12, 'an RRF score');
      }
    }
    await hybrid.close();
  });

  test('winnow serve with an OpenSearch first pass and no --corpus answers /v1/search with the engine\'s documents', async () => {
    const spec = path.join(work, 'serve-opensearch.yaml');
    writeFileSync(spec, `name: os\nstages:\n  - retrieve: ${target()}\n    k: 20\n  - rerank: ${TINY_BI}\n    name: tiny\n  - top: 5\n`);
    const child = spawn(process.execPath, [path.resolve('bin/winnow.js'), 'serve', '--spec', spec, '--host', '127.0.0.1', '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<void>((r) => child.on('exit', () => r()));
    try {
      let url = '';
      for (let i = 0; i < 300 && !url; i++) {
        url = /"event":"listening","url":"([^"]+)"/.exec(out)?.[1] ?? '';
        if (!url) await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(url, `the server said where it listens: ${out.slice(-500)}`);
      let ready = 0;
      for (let i = 0; i < 300 && ready !== 200; i++) {
        ready = (await fetch(`${url}/ready`)).status;
        if (ready !== 200) await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(ready, 200, 'ready after the warm-up request went through the engine');
      const res = await fetch(`${url}/v1/search`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: 'stem cells and cancer', return_documents: true }) });
      const body = (await res.json()) as { results: { id: string; text: string; scores: Record<string, number> }[]; stages: { name: string }[] };
      assert.equal(res.status, 200, JSON.stringify(body));
      assert.equal(body.results.length, 5);
      const ids = new Set(readFileSync(path.join(dataset, 'corpus.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { _id: string })._id));
      for (const r of body.results) {
        assert.ok(ids.has(r.id), `${r.id} is a corpus document`);
        assert.ok(r.text.length > 0, 'text from the hit\'s _source: the server has no corpus of its own');
        assert.ok('tiny' in r.scores, 'the rerank stage scored it');
      }
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
  });
});

/**
 * SciFact's test queries with every judged document plus a slice of the rest: big enough for
 * BM25 statistics to matter, small enough to index in seconds on a busy machine.
 */
function subsetOfScifact(dir: string): string {
  mkdirSync(path.join(dir, 'qrels'), { recursive: true });
  const qrels = readFileSync(path.join(SCIFACT, 'qrels/test.tsv'), 'utf8');
  const judged = new Set(qrels.trim().split('\n').slice(1).map((l) => l.split('\t')[1]));
  const lines = readFileSync(path.join(SCIFACT, 'corpus.jsonl'), 'utf8').trim().split('\n');
  const keep = lines.filter((l, i) => i < 600 || judged.has((JSON.parse(l) as { _id: string })._id));
  writeFileSync(path.join(dir, 'corpus.jsonl'), `${keep.join('\n')}\n`);
  const queryIds = new Set(qrels.trim().split('\n').slice(1).map((l) => l.split('\t')[0]));
  const queries = readFileSync(path.join(SCIFACT, 'queries.jsonl'), 'utf8').trim().split('\n').filter((l) => queryIds.has((JSON.parse(l) as { _id: string })._id));
  writeFileSync(path.join(dir, 'queries.jsonl'), `${queries.slice(0, 60).join('\n')}\n`);
  const kept = new Set(queries.slice(0, 60).map((l) => (JSON.parse(l) as { _id: string })._id));
  writeFileSync(path.join(dir, 'qrels/test.tsv'), [qrels.split('\n')[0], ...qrels.trim().split('\n').slice(1).filter((l) => kept.has(l.split('\t')[0]))].join('\n') + '\n');
  return dir;
}
