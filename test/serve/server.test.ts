import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { Costs } from '../../src/core/costs.js';
import type { Doc } from '../../src/core/types.js';
import { calibrate } from '../../src/cascade/calibration.js';
import { Pipeline } from '../../src/cascade/pipeline.js';
import { Rerank } from '../../src/rerank/rerank.js';
import { remoteScorer } from '../../src/rerank/remote/index.js';
import { BatchingScorer } from '../../src/serve/batcher.js';
import { DOCS, GatedScorer, OverlapScorer, QUERY, post, start, twoStage, waitFor } from './helpers.js';

const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

async function inProcess(p: Pipeline, query: string, texts: string[]): Promise<{ index: number; score: number }[]> {
  const docs = new Map<string, Doc>(texts.map((t, i) => [String(i), { id: String(i), text: t }]));
  const hits = texts.map((_, i) => ({ docId: String(i), score: texts.length - i, scores: {} }));
  const [r] = await p.run([{ query: { id: 'q', text: query }, hits }], { docs, costs: new Costs() });
  return r.hits.map((h) => ({ index: Number(h.docId), score: h.score }));
}

test('every route answers in its provider shape with the in-process ordering', async () => {
  const p = twoStage(new OverlapScorer('logit'), new OverlapScorer('logit', 0, 2, 'heavy'), 4);
  const { server, url, logs } = await start({ cascades: new Map([['ce', p]]) });
  try {
    const expected = await inProcess(twoStage(new OverlapScorer('logit'), new OverlapScorer('logit', 0, 2, 'heavy'), 4, false), QUERY, DOCS);
    assert.equal(expected.length, 4);

    const v2 = await post(`${url}/v2/rerank`, { model: 'ce', query: QUERY, documents: DOCS, top_n: 3 }, { 'x-request-id': 'req-1' });
    assert.equal(v2.status, 200);
    assert.equal(v2.headers.get('x-request-id'), 'req-1');
    assert.equal(v2.json.id, 'req-1');
    assert.deepEqual(v2.json.meta, { api_version: { version: '2' }, billed_units: { search_units: 1 } });
    assert.deepEqual(v2.json.results.map((r: { index: number }) => r.index), expected.slice(0, 3).map((e) => e.index));
    // logit scorer: provider shapes get sigmoid scores in [0, 1]
    v2.json.results.forEach((r: { relevance_score: number }, i: number) => assert.ok(Math.abs(r.relevance_score - sigmoid(expected[i].score)) < 1e-6));

    const v1 = await post(`${url}/v1/rerank`, { query: QUERY, documents: DOCS.map((text) => ({ text, source: 'x' })), return_documents: true, top_n: 2 });
    assert.equal(v1.status, 200);
    assert.equal(v1.json.model, 'ce');
    assert.equal(v1.json.results.length, 2);
    assert.deepEqual(v1.json.results[0].document, { text: DOCS[expected[0].index], source: 'x' });

    const jina = await post(`${url}/v1/rerank`, { model: 'ce', query: QUERY, documents: DOCS });
    assert.equal(jina.status, 200);
    assert.deepEqual(jina.json.results.map((r: { index: number }) => r.index), expected.map((e) => e.index));
    assert.equal(jina.json.results[0].document, undefined);

    const teiRaw = await post(`${url}/rerank`, { query: QUERY, texts: DOCS, raw_scores: true, return_text: true });
    assert.equal(teiRaw.status, 200);
    assert.ok(Array.isArray(teiRaw.json));
    assert.deepEqual(teiRaw.json[0], { index: expected[0].index, score: teiRaw.json[0].score, text: DOCS[expected[0].index] });
    assert.ok(Math.abs(teiRaw.json[0].score - expected[0].score) < 1e-6);
    const tei = await post(`${url}/rerank`, { query: QUERY, texts: DOCS });
    assert.ok(Math.abs(tei.json[0].score - sigmoid(expected[0].score)) < 1e-6);
    assert.equal(tei.json[0].text, undefined);

    const nat = await post(`${url}/v1/cascade`, { query: QUERY, documents: [DOCS[0], { id: 'dc', text: DOCS[3], title: 'Washington' }, ...DOCS.slice(1, 3)] });
    assert.equal(nat.status, 200);
    assert.equal(nat.json.results[0].id, 'dc');
    assert.equal(nat.json.results[0].index, 1);
    assert.deepEqual(Object.keys(nat.json.results[0].scores).sort(), ['heavy', 'light']);
    assert.deepEqual(nat.json.stages.map((s: { stage: string }) => s.stage), ['light → top(4)', 'heavy']);
    assert.deepEqual([nat.json.stages[0].in, nat.json.stages[0].out, nat.json.stages[1].in], [4, 4, 4]);
    assert.equal(nat.json.degraded, undefined);

    const log = logs.find((l) => l.request_id === 'req-1');
    assert.ok(log);
    assert.equal(log.route, '/v2/rerank');
    assert.equal(log.status, 200);
    assert.equal(log.docs, 5);
    assert.equal(log.model, 'ce');
    assert.equal(typeof log.ms, 'number');
  } finally {
    await server.close();
  }
});

test('unbounded scores pass through unsquashed, with a warning at start', async () => {
  const p = new Pipeline([new Rerank(new OverlapScorer('unbounded', 0, 3), 'bm25ish')]);
  const logit = new Pipeline([new Rerank(new OverlapScorer('logit'), 'ce')]);
  const platt = { kind: 'platt', a: 0.5, b: -1 } as const;
  const calibrated = new Pipeline([new Rerank(new OverlapScorer('unbounded', 0, 3), 'bm25ish')]).threshold(0, platt);
  const identity = new Pipeline([new Rerank(new OverlapScorer('unbounded', 0, 3), 'bm25ish')]).threshold(0, { kind: 'identity' });
  const { server, url, logs } = await start({ cascades: new Map([['b', p], ['c', logit], ['cal', calibrated], ['id', identity]]) });
  try {
    const warnings = logs.filter((l) => l.event === 'warning');
    assert.deepEqual(warnings.map((w) => w.cascade), ['b', 'id']);
    // a calibration after the unbounded stage maps its scores to probabilities
    const cal = await post(`${url}/v2/rerank`, { model: 'cal', query: QUERY, documents: DOCS });
    const raw = await inProcess(calibrated, QUERY, DOCS);
    assert.ok(Math.abs(cal.json.results[0].relevance_score - calibrate(platt, raw[0].score)) < 1e-6);
    assert.ok(cal.json.results.every((x: { relevance_score: number }) => x.relevance_score > 0 && x.relevance_score < 1));
    assert.match(String(warnings[0].message), /unbounded scores \("bm25ish"\).*outside the \[0,1\]/);
    const expected = await inProcess(p, QUERY, DOCS);
    const r = await post(`${url}/v2/rerank`, { model: 'b', query: QUERY, documents: DOCS });
    assert.ok(Math.abs(r.json.results[0].relevance_score - expected[0].score) < 1e-6);
    assert.ok(r.json.results[0].relevance_score > 1);
  } finally {
    await server.close();
  }
});

test('unknown model 404, malformed bodies 400/422, unknown route 404', async () => {
  const p = twoStage(new OverlapScorer(), new OverlapScorer('logit', 0, 2, 'heavy'), 4);
  const { server, url } = await start({ cascades: new Map([['a', p], ['b', p]]) });
  try {
    const unknown = await post(`${url}/v2/rerank`, { model: 'nope', query: 'q', documents: ['x'] });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error.code, 'unknown_model');
    assert.match(unknown.json.error.message, /known: a, b/);
    const bad = await post(`${url}/v2/rerank`, { query: 'q', documents: [1, 2] });
    assert.equal(bad.status, 422);
    assert.equal(bad.json.error.code, 'invalid_request');
    const notJson = await post(`${url}/v1/rerank`, '{"query":');
    assert.equal(notJson.status, 400);
    assert.equal(notJson.json.error.code, 'invalid_json');
    const none = await post(`${url}/v9/rerank`, {});
    assert.equal(none.status, 404);
    const method = await fetch(`${url}/v2/rerank`);
    assert.equal(method.status, 405);
    const health = await fetch(`${url}/health`);
    assert.equal(health.status, 200);
    const ready = (await (await fetch(`${url}/ready`)).json()) as { models: string[] };
    assert.deepEqual(ready.models, ['a', 'b']);
    const spec = (await (await fetch(`${url}/openapi.json`)).json()) as { openapi: string; paths: Record<string, unknown> };
    assert.equal(spec.openapi, '3.1.0');
    for (const path of ['/v2/rerank', '/v1/rerank', '/rerank', '/v1/cascade', '/v1/search', '/health', '/ready', '/metrics']) assert.ok(spec.paths[path], path);
  } finally {
    await server.close();
  }
});

test('every limit answers a 4xx naming the limit and its value', async () => {
  const p = new Pipeline([new Rerank(new OverlapScorer())]);
  const limits = { maxBodyBytes: 2000, maxDocs: 3, maxDocChars: 50, maxQueryChars: 20 };
  const { server, url } = await start({ cascades: new Map([['a', p]]), limits });
  try {
    const body = await post(`${url}/v2/rerank`, { query: 'q', documents: ['x'.repeat(40)].concat(Array(60).fill('y'.repeat(40))) });
    assert.equal(body.status, 413);
    assert.equal(body.json.error.code, 'body_too_large');
    assert.match(body.json.error.message, /maxBodyBytes\) is 2000/);
    const docs = await post(`${url}/v1/rerank`, { query: 'q', documents: ['a', 'b', 'c', 'd'] });
    assert.equal(docs.status, 400);
    assert.equal(docs.json.error.code, 'too_many_documents');
    assert.match(docs.json.error.message, /maxDocs\) is 3/);
    const long = await post(`${url}/rerank`, { query: 'q', texts: ['a', 'b'.repeat(51)] });
    assert.equal(long.status, 400);
    assert.equal(long.json.error.code, 'document_too_long');
    assert.match(long.json.error.message, /document 1 has 51 characters; the limit \(maxDocChars\) is 50/);
    const query = await post(`${url}/v1/cascade`, { query: 'q'.repeat(21), documents: ['a'] });
    assert.equal(query.status, 400);
    assert.equal(query.json.error.code, 'query_too_long');
    assert.match(query.json.error.message, /maxQueryChars\) is 20/);
    const ok = await post(`${url}/v1/rerank`, { query: 'q', documents: ['a', 'b', 'c'] });
    assert.equal(ok.status, 200);
  } finally {
    await server.close();
  }
});

test('bearer auth: 401 without or with a wrong key, 200 with a right one', async () => {
  const p = new Pipeline([new Rerank(new OverlapScorer())]);
  const { server, url } = await start({ cascades: new Map([['a', p]]), apiKeys: ['k1', 'k2'] });
  try {
    const none = await post(`${url}/v2/rerank`, { query: 'q', documents: ['a'] });
    assert.equal(none.status, 401);
    assert.equal(none.json.error.code, 'unauthorized');
    assert.equal((await post(`${url}/v2/rerank`, { query: 'q', documents: ['a'] }, { authorization: 'Bearer k3' })).status, 401);
    assert.equal((await post(`${url}/v2/rerank`, { query: 'q', documents: ['a'] }, { authorization: 'Bearer k2' })).status, 200);
    assert.equal((await fetch(`${url}/health`)).status, 200);
  } finally {
    await server.close();
  }
});

test('micro-batching merges concurrent requests into fewer model calls', async () => {
  const scorer = new GatedScorer(0, 'overlap');
  const b = new BatchingScorer(scorer, { maxBatch: 64, maxWaitMs: 0 });
  const p = new Pipeline([new Rerank(b)]);
  const { server, url } = await start({ cascades: new Map([['a', p]]), batchers: [b], cache: false });
  try {
    const n = 12;
    // the first request occupies the model; the other eleven arrive while it is busy
    scorer.hold();
    const first = post(`${url}/v2/rerank`, { query: `${QUERY} 0`, documents: DOCS });
    await waitFor(() => scorer.started === 1);
    const rest = Array.from({ length: n - 1 }, (_, i) => post(`${url}/v2/rerank`, { query: `${QUERY} ${i + 1}`, documents: DOCS }));
    await waitFor(() => b.queueDepth === (n - 1) * DOCS.length);
    scorer.release();
    for (const r of await Promise.all([first, ...rest])) assert.equal(r.status, 200);
    assert.equal(scorer.pairs, n * DOCS.length);
    assert.deepEqual(scorer.batchSizes, [DOCS.length, (n - 1) * DOCS.length], 'eleven requests, different queries, one model call');
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(metrics, /winnow_inference_batch_pairs_count\{scorer="overlap\(scale=1\)"\} 2/);
    assert.match(metrics, /winnow_inference_batch_requests_bucket\{scorer="overlap\(scale=1\)",le="16"\} 2/);
    assert.match(metrics, /winnow_http_requests_total\{route="\/v2\/rerank",status="200"\} 12/);
    assert.match(metrics, /winnow_stage_duration_seconds_bucket\{cascade="a",stage="overlap\(scale=1\)",le="\+Inf"\} 12/);
    assert.match(metrics, /winnow_queue_pairs\{scorer="overlap\(scale=1\)"\} 0/);
    assert.match(metrics, /winnow_http_request_duration_seconds_bucket/);
  } finally {
    scorer.release();
    await server.close();
  }
});

test('score cache: a repeated request is served from the cache', async () => {
  const scorer = new OverlapScorer();
  const p = new Pipeline([new Rerank(scorer)]);
  const { server, url } = await start({ cascades: new Map([['a', p]]) });
  try {
    await post(`${url}/v2/rerank`, { query: QUERY, documents: DOCS });
    await post(`${url}/v2/rerank`, { query: QUERY, documents: DOCS });
    assert.equal(scorer.pairs, DOCS.length);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(metrics, /winnow_score_cache_hit_ratio 0\.5/);
  } finally {
    await server.close();
  }
});

test('a full queue answers 429 with Retry-After', async () => {
  const scorer = new GatedScorer();
  const b = new BatchingScorer(scorer, { maxBatch: 5, maxWaitMs: 0, maxQueue: 10 });
  const p = new Pipeline([new Rerank(b)]);
  const { server, url, logs } = await start({ cascades: new Map([['a', p]]), cache: false });
  try {
    scorer.hold();
    // the first goes straight to the model, two more fill the 10-pair queue, the rest are refused
    const accepted = [post(`${url}/v2/rerank`, { query: 'q0', documents: DOCS })];
    await waitFor(() => scorer.started === 1);
    accepted.push(...[1, 2].map((i) => post(`${url}/v2/rerank`, { query: `q${i}`, documents: DOCS })));
    await waitFor(() => b.queueDepth === 10);
    const refused = await Promise.all([3, 4, 5].map((i) => post(`${url}/v2/rerank`, { query: `q${i}`, documents: DOCS })));
    for (const r of refused) {
      assert.equal(r.status, 429);
      assert.equal(r.json.error.code, 'queue_full');
      assert.ok(Number(r.headers.get('retry-after')) >= 1);
    }
    scorer.release();
    for (const r of await Promise.all(accepted)) assert.equal(r.status, 200);
    assert.equal(logs.filter((l) => l.status === 429).length, 3);
    assert.match(await (await fetch(`${url}/metrics`)).text(), /winnow_rejected_requests_total\{reason="queue_full",scorer="gated\(scale=1\)"\} 3/);
  } finally {
    scorer.release();
    await server.close();
  }
});

test('a client that hangs up has its queued pairs dropped and is logged as 499', async () => {
  const scorer = new GatedScorer();
  const b = new BatchingScorer(scorer, { maxBatch: 5, maxWaitMs: 0 });
  const p = new Pipeline([new Rerank(b)]);
  const { server, url, logs } = await start({ cascades: new Map([['a', p]]), cache: false });
  try {
    scorer.hold();
    const first = post(`${url}/v2/rerank`, { query: 'q1', documents: DOCS });
    await waitFor(() => scorer.started === 1);
    // queued behind the first request's model call when its client gives up
    const hangUp = new AbortController();
    const second = fetch(`${url}/v2/rerank`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: 'q2', documents: DOCS }), signal: hangUp.signal });
    await waitFor(() => b.queueDepth === DOCS.length);
    hangUp.abort();
    await assert.rejects(second);
    await waitFor(() => logs.some((l) => l.status === 499 && l.error === 'client_closed_request'));
    assert.equal(b.queueDepth, 0, 'its pairs left the queue');
    scorer.release();
    assert.equal((await first).status, 200);
    assert.equal(scorer.pairs, DOCS.length, 'only the first request was scored');
    assert.match(await (await fetch(`${url}/metrics`)).text(), /winnow_http_requests_total\{route="\/v2\/rerank",status="499"\} 1/);
  } finally {
    scorer.release();
    await server.close();
  }
});

test('deadline: a slow later stage is skipped (degraded); nothing completed gives 504', async () => {
  const light = new OverlapScorer('logit', 0);
  const heavy = new GatedScorer(0, 'heavy');
  const p = twoStage(light, heavy, 4);
  const { server, url } = await start({ cascades: new Map([['ce', p]]), cache: false });
  const slowModel = new GatedScorer();
  const s2 = await start({ cascades: new Map([['slow', new Pipeline([new Rerank(slowModel)])]]), cache: false });
  try {
    heavy.hold();
    // in flight when the deadline passes: the light ranking comes back
    const nat = await post(`${url}/v1/cascade`, { query: QUERY, documents: DOCS, deadline_ms: 2000 });
    assert.equal(nat.status, 200);
    assert.equal(nat.json.degraded, true);
    assert.equal(nat.json.skipped_stage, 'heavy');
    assert.deepEqual(nat.json.stages.map((s: { stage: string }) => s.stage), ['light → top(4)']);
    assert.deepEqual(Object.keys(nat.json.results[0].scores), ['light']);
    assert.equal(heavy.started, 1);
    // the heavy stage's recent cost (at least 2000 ms for 4 documents) now predicts an overrun of
    // a 1000 ms budget, so it is skipped up front: it never reaches the model
    const v2 = await post(`${url}/v2/rerank`, { query: QUERY, documents: DOCS }, { 'x-request-deadline-ms': '1000' });
    assert.equal(v2.status, 200);
    assert.equal(v2.headers.get('x-winnow-degraded'), 'heavy');
    assert.equal(v2.json.results.length, 4);
    assert.equal(heavy.started, 1, 'skipped without queueing for the model');
    heavy.release();
    const full = await post(`${url}/v1/cascade`, { query: QUERY, documents: DOCS, deadline_ms: 120_000 });
    assert.equal(full.json.degraded, undefined);
    assert.equal(full.json.stages.length, 2);

    slowModel.hold();
    const r = await post(`${s2.url}/v2/rerank`, { query: QUERY, documents: DOCS }, { 'x-request-deadline-ms': '50' });
    assert.equal(r.status, 504);
    assert.equal(r.json.error.code, 'deadline_exceeded');
    const bad = await post(`${s2.url}/v2/rerank`, { query: QUERY, documents: DOCS }, { 'x-request-deadline-ms': 'soon' });
    assert.equal(bad.status, 400);
  } finally {
    heavy.release();
    slowModel.release();
    await s2.server.close();
    await server.close();
  }
});

test('deadline: after a timeout, requests skipped on the learnt cost let the stage run again before long', async () => {
  const slow = new GatedScorer();
  const { server, url } = await start({ cascades: new Map([['slow', new Pipeline([new Rerank(slow)])]]), cache: false });
  try {
    slow.hold();
    // one overload: the model does not answer within 500 ms, which is now the stage's cost for 4 documents
    const late = await post(`${url}/v2/rerank`, { query: QUERY, documents: DOCS }, { 'x-request-deadline-ms': '500' });
    assert.equal(late.status, 504);
    slow.release();
    const calls = slow.started;
    // the model is fast again; without a way back every request with a smaller budget would be refused unseen, forever
    let status = 0;
    for (let i = 0; i < 20 && status !== 200; i++) {
      status = (await post(`${url}/v2/rerank`, { query: QUERY, documents: DOCS }, { 'x-request-deadline-ms': '400' })).status;
    }
    assert.equal(status, 200);
    assert.ok(slow.started > calls, 'the stage ran again');
  } finally {
    slow.release();
    await server.close();
  }
});

test('close() does not wait for keep-alive or never-used connections', { timeout: 10_000 }, async () => {
  // client timeouts far beyond the test's: if close() waited for them, the test would time out
  const limits = { headersTimeoutMs: 600_000, requestTimeoutMs: 600_000 };
  const { server, url } = await start({ cascades: new Map([['a', new Pipeline([new Rerank(new OverlapScorer())])]]), cache: false, limits });
  server.http.keepAliveTimeout = 600_000;
  assert.equal((await post(`${url}/v2/rerank`, { query: QUERY, documents: DOCS })).status, 200); // leaves a keep-alive socket
  const { port } = new URL(url);
  const silent = connect(Number(port), '127.0.0.1'); // connected, never sends a request
  await new Promise((r) => silent.once('connect', r));
  const silentClosed = new Promise((r) => silent.once('close', r));
  silent.on('error', () => undefined);
  const { unfinished } = await server.close();
  assert.equal(unfinished, 0);
  await silentClosed;
});

test('/metrics counts the search units a hosted rerank stage bills, per cascade and stage', async () => {
  // the "hosted API" is another Winnow answering in the Cohere v2 shape, which bills 1 unit per 100 documents
  const upstream = await start({ cascades: new Map([['rerank-v3.5', new Pipeline([new Rerank(new OverlapScorer())])]]), cache: false });
  const cohere = remoteScorer('cohere:rerank-v3.5', { baseUrl: upstream.url, apiKey: 'k', env: {} });
  const { server, url } = await start({ cascades: new Map([['hosted', new Pipeline([new Rerank(cohere, 'cohere')])]]), cache: false });
  try {
    for (const q of ['a capital', 'the United States']) assert.equal((await post(`${url}/v2/rerank`, { query: q, documents: DOCS })).status, 200);
    assert.match(await (await fetch(`${url}/metrics`)).text(), /winnow_stage_cost_total\{cascade="hosted",cost="billed.search_units",stage="cohere",unit="units"\} 2/);
  } finally {
    await server.close();
    await upstream.server.close();
  }
});

test('one Winnow as a remote stage of another, in the TEI and the native shape', async () => {
  // a remote stage must score every document it sends, so the upstream cascade cuts nothing
  const local = twoStage(new OverlapScorer(), new OverlapScorer('logit', 0, 2, 'heavy'), DOCS.length);
  const upstream = await start({ cascades: new Map([['ce', local]]), cache: false });
  const viaTei = new Pipeline([new Rerank(remoteScorer(`tei:${upstream.url}`, { env: {} }), 'tei')]);
  const viaNative = new Pipeline([new Rerank(remoteScorer(`winnow:${upstream.url}/ce`, { env: {} }), 'winnow')]);
  const downstream = await start({ cascades: new Map([['tei', viaTei], ['native', viaNative]]), cache: false });
  try {
    const expected = await inProcess(local, QUERY, DOCS);
    for (const p of [viaTei, viaNative]) {
      const got = await inProcess(p, QUERY, DOCS);
      assert.deepEqual(got.map((h) => h.index), expected.map((h) => h.index));
      got.forEach((h, i) => assert.ok(Math.abs(h.score - expected[i].score) < 1e-5, `${h.score} vs ${expected[i].score}`));
    }
    // and the downstream serves them to a Cohere-shaped client like any other cascade
    for (const model of ['tei', 'native']) {
      const r = await post(`${downstream.url}/v2/rerank`, { model, query: QUERY, documents: DOCS, top_n: 4 });
      assert.equal(r.status, 200, JSON.stringify(r.json));
      assert.deepEqual(r.json.results.map((x: { index: number }) => x.index), expected.slice(0, 4).map((h) => h.index));
    }
  } finally {
    await downstream.server.close();
    await upstream.server.close();
  }
});
