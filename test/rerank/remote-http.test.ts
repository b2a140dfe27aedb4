import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { Pipeline } from '../../src/cascade/pipeline.js';
import { ScoreCache } from '../../src/cascade/cache.js';
import { WinnowError } from '../../src/core/errors.js';
import { Costs } from '../../src/core/costs.js';
import type { TraceRow } from '../../src/core/stage.js';
import { docText, type Doc, type Ranking } from '../../src/core/types.js';
import { errorInBody, errorMessage, HttpClient } from '../../src/rerank/remote/http.js';
import { isRemoteRef, parseRemoteRef, remoteScorer } from '../../src/rerank/remote/index.js';
import { splitByBudget } from '../../src/rerank/remote/voyage.js';
import { Rerank } from '../../src/rerank/rerank.js';
import { fakeScore, startFakeRerankServer } from '../helpers/fake-rerank-server.js';

test('Retry-After as an HTTP date is measured against the injected clock and capped', async () => {
  const now = Date.parse('2025-01-01T00:00:00Z');
  const server = await startFakeRerankServer({
    shape: 'tei',
    replies: [
      { status: 429, headers: { 'retry-after': new Date(now + 7000).toUTCString() }, body: { error: 'busy', error_type: 'Overloaded' } },
      { status: 503, headers: { 'retry-after': '3600' }, body: { error: 'down', error_type: 'Backend' } },
      { status: 429, headers: { 'retry-after-ms': '1500' }, body: { error: 'busy', error_type: 'Overloaded' } },
    ],
  });
  try {
    const sleeps: number[] = [];
    const http = new HttpClient({ sleep: async (ms) => void sleeps.push(ms), now: () => now, retryAfterMaxMs: 10_000 });
    const json = await http.postJson({ provider: 'tei', url: `${server.url}/rerank`, body: { query: 'q', texts: ['a'] }, resultsKey: 'array' });
    assert.ok(Array.isArray(json));
    assert.deepEqual(sleeps, [7000, 10_000, 1500]);
  } finally {
    await server.close();
  }
});

test('cancelling during a Retry-After wait ends the call without waiting it out', { timeout: 30_000 }, async () => {
  // The server asks for a minute; the abort comes once that answer is in. Without an abortable
  // wait the call would sleep past the test's timeout.
  const server = await startFakeRerankServer({
    shape: 'tei',
    replies: [{ status: 429, headers: { 'retry-after': '60' }, body: { error: 'busy', error_type: 'Overloaded' } }],
  });
  const controller = new AbortController();
  try {
    const http = new HttpClient({ signal: controller.signal, retryAfterMaxMs: 60_000 });
    const call = http.postJson({ provider: 'tei', url: `${server.url}/rerank`, body: { query: 'q', texts: ['a'] }, resultsKey: 'array' });
    while (server.requests.length === 0) await new Promise((resolve) => setImmediate(resolve));
    // Let the client read the 429 and start waiting (an earlier abort passes too, as a cancelled fetch).
    await new Promise((resolve) => setTimeout(resolve, 200));
    controller.abort();
    await assert.rejects(call, (e: unknown) => e instanceof WinnowError && /was cancelled/.test(e.message));
    assert.equal(server.requests.length, 1);
  } finally {
    await server.close();
  }
});

test('gives up after maxAttempts with the last error in the message', async () => {
  const server = await startFakeRerankServer({
    shape: 'vllm',
    replies: [1, 2, 3].map(() => ({ status: 502, body: '<html>bad gateway</html>' })),
  });
  try {
    const sleeps: number[] = [];
    const http = new HttpClient({ sleep: async (ms) => void sleeps.push(ms), maxAttempts: 3, random: () => 0.999, backoffBaseMs: 1000, backoffMaxMs: 1500 });
    await assert.rejects(
      http.postJson({ provider: 'vllm', url: `${server.url}/v1/rerank`, body: {}, resultsKey: 'results' }),
      (e: unknown) => e instanceof WinnowError && e.code === 'unavailable' && /after 3 attempts: HTTP 502: <html>bad gateway<\/html>/.test(e.message),
    );
    assert.equal(sleeps.length, 2);
    assert.ok(sleeps[1] <= 1500, 'backoff ceiling is capped');
    assert.equal(server.requests.length, 3);
  } finally {
    await server.close();
  }
});

test('connection refused is retried and reported with its code', async () => {
  // a port that was just free: listen, note it, close
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((r) => probe.close(() => r()));
  const sleeps: number[] = [];
  const http = new HttpClient({ sleep: async (ms) => void sleeps.push(ms), maxAttempts: 2 });
  await assert.rejects(
    http.postJson({ provider: 'tei', url: `http://127.0.0.1:${port}/rerank`, body: {}, resultsKey: 'array' }),
    /tei: POST .* failed after 2 attempts: network error: ECONNREFUSED/,
  );
  assert.equal(sleeps.length, 1);
});

test('a 200 error body with an embedded 429/5xx status is retried', async () => {
  const server = await startFakeRerankServer({ shape: 'jina', replies: [{ status: 200, body: { error: { code: 503, message: 'overloaded' } } }] });
  try {
    const sleeps: number[] = [];
    const http = new HttpClient({ sleep: async (ms) => void sleeps.push(ms) });
    const json = (await http.postJson({
      provider: 'jina',
      url: `${server.url}/v1/rerank`,
      body: { model: 'm', query: 'q', documents: ['a'] },
      resultsKey: 'results',
    })) as { results: unknown[] };
    assert.equal(json.results.length, 1);
    assert.equal(sleeps.length, 1);
  } finally {
    await server.close();
  }
});

test('errorInBody and errorMessage read the shapes providers use', () => {
  assert.equal(errorInBody({ results: [], message: 'ok' }, 'results'), undefined);
  assert.equal(errorInBody([{ index: 0, score: 1 }], 'array'), undefined);
  assert.equal(errorInBody({ data: [] }, 'results'), undefined, 'no error markers: left to the parser');
  assert.deepEqual(errorInBody({ error: 'boom' }, 'array'), { message: 'boom', status: undefined });
  assert.deepEqual(errorInBody({ object: 'error', message: 'bad', code: 400 }, 'results'), { message: 'bad', status: 400 });
  assert.equal(errorInBody({ detail: [{ loc: ['body', 'top_n'], msg: 'must be > 0' }] }, 'results')?.message, 'body.top_n: must be > 0');
  assert.equal(errorMessage('{"error":{"message":"quota"}}'), 'quota');
  assert.equal(errorMessage(''), '(empty body)');
  assert.equal(errorMessage('x'.repeat(500)).length, 201);
});

test('ref grammar: hosted models, URLs with model paths, aliases and errors', () => {
  assert.deepEqual(parseRemoteRef('cohere:rerank-v3.5'), { provider: 'cohere', model: 'rerank-v3.5' });
  assert.deepEqual(parseRemoteRef('mxbai:mxbai-rerank-large-v1'), { provider: 'mixedbread', model: 'mxbai-rerank-large-v1' });
  assert.deepEqual(parseRemoteRef('tei:http://gpu1:8080'), { provider: 'tei', baseUrl: 'http://gpu1:8080' });
  assert.deepEqual(parseRemoteRef('tei:'), { provider: 'tei', baseUrl: undefined });
  assert.deepEqual(parseRemoteRef('vllm:http://gpu1:8000/BAAI/bge-reranker-v2-m3'), { provider: 'vllm', baseUrl: 'http://gpu1:8000', model: 'BAAI/bge-reranker-v2-m3' });
  assert.deepEqual(parseRemoteRef('winnow:https://rank.example:7700/fast'), { provider: 'winnow', baseUrl: 'https://rank.example:7700', model: 'fast' });
  assert.deepEqual(parseRemoteRef('winnow:http://h:1'), { provider: 'winnow', baseUrl: 'http://h:1', model: undefined });
  assert.throws(() => parseRemoteRef('openia:x'), /not a remote scorer ref/);
  assert.throws(() => parseRemoteRef('vllm:gpu1:8000/m'), /not a URL|only http/);
  assert.throws(() => remoteScorer('voyage:rerank-2', { env: {} }), (e: unknown) => e instanceof WinnowError && /VOYAGE_API_KEY/.test(e.hint ?? ''));
  assert.throws(() => remoteScorer('tei:', { env: {} }), /no server URL/);
  assert.throws(() => remoteScorer('cohere:a', { env: {}, apiKey: 'k', model: 'b' }), /names model "a" but options.model is "b"/);
  assert.equal(isRemoteRef('cohere:rerank-v3.5'), true);
  assert.equal(isRemoteRef('./models/ce'), false);
  assert.equal(isRemoteRef('C:\\models\\ce'), false);
});

test('env supplies keys and URLs; ids carry provider, host, model and truncation', () => {
  const env = { COHERE_API_KEY: 'k', TEI_URL: 'http://gpu2:8080', PINECONE_API_KEY: 'p' };
  const c = remoteScorer('cohere:rerank-v3.5', { env });
  assert.equal(c.id, 'cohere/v2:rerank-v3.5@api.cohere.com');
  const t1 = remoteScorer('tei:', { env, model: 'BAAI/bge-reranker-base' });
  const t2 = remoteScorer('tei:', { env, model: 'BAAI/bge-reranker-base', truncate: false });
  const t3 = remoteScorer('tei:http://gpu3:8080', { env, model: 'BAAI/bge-reranker-base' });
  assert.equal(t1.id, 'tei:BAAI/bge-reranker-base@gpu2:8080[truncate=right,raw_scores=true]');
  assert.notEqual(t1.id, t2.id);
  assert.notEqual(t1.id, t3.id);
  assert.notEqual(remoteScorer('pinecone:bge-reranker-v2-m3', { env }).id, remoteScorer('pinecone:bge-reranker-v2-m3', { env, truncate: 'NONE' }).id);
  assert.notEqual(remoteScorer('pinecone:bge-reranker-v2-m3', { env }).id, remoteScorer('pinecone:pinecone-rerank-v0', { env }).id);
});

test('splitByBudget keeps q x n + sum(d) under the budget', () => {
  assert.deepEqual(splitByBudget(10, [10, 10, 10, 10, 10], 45), [2, 2, 1]);
  assert.deepEqual(splitByBudget(10, [100, 5], 50), [1, 1], 'an oversized document goes alone');
  assert.deepEqual(splitByBudget(1, [1, 1, 1], 1000), [3]);
});

test('a remote scorer inside a pipeline: Rerank + top, stats in the trace, cache hits on the second run', async () => {
  const server = await startFakeRerankServer({ shape: 'cohere-v2', apiKey: 'k', maxDocs: 4 });
  try {
    const docs: Doc[] = [
      { id: 'a', text: 'ocean waves and granite' },
      { id: 'b', text: 'cascade rerankers cut cost' },
      { id: 'c', title: 'Cost', text: 'how rerankers cut serving cost' },
      { id: 'd', text: 'a violin' },
      { id: 'e', text: 'cascade of waterfalls' },
      { id: 'f', text: 'bread recipes' },
    ];
    const byId = new Map(docs.map((d) => [d.id, d]));
    const query = { id: 'q1', text: 'how do cascade rerankers cut cost' };
    const input: Ranking[] = [{ query, hits: docs.map((d, i) => ({ docId: d.id, score: -i, scores: { bm25: -i } })) }];
    const scorer = remoteScorer('cohere:rerank-v3.5', { baseUrl: server.url, apiKey: 'k', env: {}, maxDocsPerRequest: 4 });
    const pipeline = Pipeline.of(new Rerank(scorer, 'cohere')).top(3);
    const cache = new ScoreCache();
    const rows: TraceRow[] = [];
    const ctx = { docs: { get: (id: string) => byId.get(id) }, costs: new Costs(), cache };
    const policy = { after: (_: unknown, row: TraceRow) => void rows.push(row) };

    const {
      rankings: [out],
    } = await pipeline.execute(input, ctx, policy);
    const want = docs
      .map((d) => ({ id: d.id, s: Math.fround(fakeScore('cohere-v2', query.text, docText(d))) }))
      .sort((x, y) => y.s - x.s || (x.id < y.id ? -1 : 1))
      .slice(0, 3);
    assert.deepEqual(out.hits.map((h) => h.docId), want.map((w) => w.id));
    assert.equal(out.hits[0].scores.bm25 !== undefined, true, 'earlier stage scores are kept');
    assert.equal(out.hits[0].scores.cohere, want[0].s);
    assert.equal(server.requests.length, 2, '6 candidates under a cap of 4');
    assert.equal(rows.length, 1);
    assert.equal(rows[0].costs.pairs, 6);
    assert.equal(rows[0].costs['billed.search_units'], 2, 'one search unit per sub-request from meta.billed_units');
    assert.equal(rows[0].in, 6);
    assert.equal(rows[0].out, 3);

    const [again] = await pipeline.run(input, { ...ctx, costs: new Costs() });
    assert.deepEqual(again.hits, out.hits);
    assert.equal(server.requests.length, 2, 'second run served from the cache');
  } finally {
    await server.close();
  }
});
