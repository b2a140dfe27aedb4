import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Pipeline } from '../../src/cascade/pipeline.js';
import { loadScorer } from '../../src/rerank/load.js';
import { Rerank } from '../../src/rerank/rerank.js';
import { BatchingScorer } from '../../src/serve/batcher.js';
import { withoutPaths } from '../../src/serve/metrics.js';
import { MAX_DEADLINE_MS } from '../../src/serve/server.js';
import { DOCS, GatedScorer, OverlapScorer, QUERY, parseResponse, post, rawConnect, type RawConnection, start, waitFor } from './helpers.js';

const plain = (): Pipeline => new Pipeline([new Rerank(new BatchingScorer(new OverlapScorer(), { maxWaitMs: 0 }))]);
const body = (n = 0): string => JSON.stringify({ query: QUERY, documents: DOCS, pad: 'x'.repeat(n) });

/** A JSON rerank body of exactly `bytes` bytes. */
function bodyOf(bytes: number): string {
  const b = body(0);
  return body(bytes - b.length);
}

function head(len: number | 'chunked', extra = ''): string {
  const framing = len === 'chunked' ? 'Transfer-Encoding: chunked' : `Content-Length: ${len}`;
  return `POST /v2/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n${framing}\r\n${extra}\r\n`;
}

test('thousands of half-sent requests: past maxConnections, connections are closed on arrival; the server serves again once they go', { timeout: 120_000 }, async () => {
  const cap = 50;
  const n = 2000;
  // long timeouts, so only the connection cap can be what closes them during the test
  const limits = { maxConnections: cap, headersTimeoutMs: 300_000, requestTimeoutMs: 300_000, bodyTimeoutMs: 300_000 };
  const { server, url } = await start({ cascades: new Map([['a', plain()]]), limits, cache: false });
  const conns: RawConnection[] = [];
  try {
    // in waves, so the listen backlog never overflows and every connection reaches the server
    for (let wave = 0; wave < n; wave += 200) {
      const opened = await Promise.all(Array.from({ length: 200 }, () => rawConnect(url)));
      opened.forEach((c, i) => {
        // half stop inside the headers, half inside a 1000-byte body
        if (!c.isClosed()) c.socket.write(i % 2 === 0 ? 'POST /v2/rerank HTTP/1.1\r\nHost: x\r\nContent-Ty' : head(1000) + '{"query": "q", "docu');
      });
      conns.push(...opened);
    }
    const closed = (): number => conns.filter((c) => c.isClosed()).length;
    await waitFor(() => closed() + server.connections === n);
    assert.equal(server.connections, cap, 'the server holds exactly maxConnections connections');
    assert.equal(closed(), n - cap);
    // the cap is full, so a new client is turned away too, without a byte
    const extra = await rawConnect(url);
    extra.socket.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(await extra.closed, '');
    conns.forEach((c) => c.socket.destroy());
    await waitFor(() => server.connections === 0);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(metrics, new RegExp(`winnow_dropped_connections_total ${n - cap + 1}\\b`));
    assert.equal((await post(`${url}/v2/rerank`, { query: QUERY, documents: DOCS })).status, 200);
    await waitFor(() => server.bufferedBytes === 0);
  } finally {
    conns.forEach((c) => c.socket.destroy());
    await server.close();
  }
});

test('request bodies across requests are bounded: one that would go over maxBufferedBytes gets 503 with Retry-After', { timeout: 60_000 }, async () => {
  const limits = { maxBodyBytes: 8000, maxBufferedBytes: 10_000, headersTimeoutMs: 60_000, requestTimeoutMs: 60_000, bodyTimeoutMs: 60_000 };
  const { server, url } = await start({ cascades: new Map([['a', plain()]]), limits, cache: false });
  try {
    const full = bodyOf(8000);
    const a = await rawConnect(url);
    a.socket.write(head(8000, 'Connection: close\r\n') + full.slice(0, 100));
    // its whole declared length is held from the start, not just the 100 bytes sent
    await waitFor(() => server.bufferedBytes === 8000);

    const b = await rawConnect(url);
    b.socket.write(head(6000, 'Connection: close\r\n'));
    const refused = parseResponse(await b.closed);
    assert.equal(refused.status, 503);
    assert.equal(refused.json.error.code, 'server_busy');
    assert.match(refused.json.error.message, /maxBufferedBytes 10000/);
    assert.ok(Number(refused.headers['retry-after']) >= 1);

    // without a Content-Length the budget is taken as bytes arrive
    const c = await rawConnect(url);
    c.socket.write(head('chunked', 'Connection: close\r\n') + `bb8\r\n${'x'.repeat(3000)}\r\n`);
    assert.equal(parseResponse(await c.closed).status, 503);

    a.socket.write(full.slice(100));
    assert.equal(parseResponse(await a.closed).status, 200);
    await waitFor(() => server.bufferedBytes === 0);
    assert.equal((await post(`${url}/v2/rerank`, bodyOf(6000))).status, 200, 'room again once the first request is answered');
    assert.match(await (await fetch(`${url}/metrics`)).text(), /winnow_rejected_requests_total\{reason="buffer_budget"\} 2/);
  } finally {
    await server.close();
  }
});

test('slow senders are cut: headers after headersTimeoutMs, a paused body after bodyTimeoutMs, a trickling body after requestTimeoutMs', { timeout: 60_000 }, async () => {
  const limits = { headersTimeoutMs: 300, requestTimeoutMs: 1500, bodyTimeoutMs: 300 };
  const { server, url } = await start({ cascades: new Map([['a', plain()]]), limits, cache: false });
  let trickle: NodeJS.Timeout | undefined;
  try {
    const headers = await rawConnect(url);
    headers.socket.write('POST /v2/rerank HTTP/1.1\r\nHost: x\r\n');
    const paused = await rawConnect(url);
    paused.socket.write(head(5000) + '{"query": ');
    const trickling = await rawConnect(url);
    trickling.socket.write(head(100_000));
    // a byte at a time, never pausing as long as bodyTimeoutMs: only the whole-request timeout ends it
    trickle = setInterval(() => trickling.socket.write('x'), 20);

    assert.equal(parseResponse(await headers.closed).status, 408);
    const p = parseResponse(await paused.closed);
    assert.equal(p.status, 408);
    assert.equal(p.json.error.code, 'body_timeout');
    assert.equal(parseResponse(await trickling.closed).status, 408);
    await waitFor(() => server.connections === 0 && server.bufferedBytes === 0);
  } finally {
    clearInterval(trickle);
    await server.close();
  }
});

test('SIGTERM with a client stuck mid-body: its connection is cut after --shutdown-grace-ms and the process exits 0', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'winnow-serve-'));
  const spec = path.join(dir, 'spec.yaml');
  writeFileSync(spec, 'name: bm25\nstages:\n  - rerank: bm25\n');
  // body and request timeouts far beyond this test's own timeout: only the grace period can end it
  const child = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `import('${path.resolve('dist/src/cli/serve.js')}').then((m) => m.serveCommand(process.argv.slice(1))).then((c) => process.exit(c), (e) => { console.error(e.message); process.exit(1); })`,
      '--',
      '--spec', spec, '--corpus', path.resolve('../shared/datasets/cranfield/corpus.jsonl'), '--port', '0', '--shutdown-grace-ms', '300',
      '--headers-timeout-ms', '600000', '--request-timeout-ms', '600000', '--body-timeout-ms', '600000',
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const lines: Record<string, unknown>[] = [];
  const listening = new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      const e = JSON.parse(line) as Record<string, unknown>;
      lines.push(e);
      if (e.event === 'listening') resolve(e.url as string);
    });
    child.once('exit', (code) => reject(new Error(`server exited early with ${code}`)));
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    const url = await listening;
    const slow = await rawConnect(url);
    slow.socket.write(head(4321) + '{"query": "wing');
    await waitFor(async () => /winnow_buffered_request_bytes 4321/.test(await (await fetch(`${url}/metrics`)).text()));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    const got = await slow.closed;
    assert.doesNotMatch(got, /HTTP\/1\.1 200/);
    const stopped = lines.find((l) => l.event === 'stopped');
    assert.ok(stopped, 'logged its shutdown');
    assert.equal(stopped.cut_after_grace, 1, 'the stuck request was cut, not finished');
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});

test('deadlines above the maximum are clamped, never an instant 504 (header, body and server default)', async () => {
  const { server, url, logs } = await start({ cascades: new Map([['a', plain()]]), limits: { defaultDeadlineMs: 2 ** 40 }, cache: false });
  try {
    assert.ok(logs.some((l) => l.event === 'warning' && String(l.message).includes(`using ${MAX_DEADLINE_MS} ms`)));
    assert.equal((await post(`${url}/v2/rerank`, { query: QUERY, documents: DOCS })).status, 200, 'server default 2^40 ms');
    for (const h of [String(2 ** 31), '99999999999', '9'.repeat(400)]) {
      const r = await post(`${url}/v2/rerank`, { query: QUERY, documents: DOCS }, { 'x-request-deadline-ms': h });
      assert.equal(r.status, 200, `X-Request-Deadline-Ms ${h.slice(0, 20)}: ${JSON.stringify(r.json)}`);
    }
    const nat = await post(`${url}/v1/cascade`, { query: QUERY, documents: DOCS, deadline_ms: 2 ** 31 });
    assert.equal(nat.status, 200, JSON.stringify(nat.json));
    assert.equal(nat.json.degraded, undefined);
    assert.equal((await post(`${url}/v2/rerank`, { query: QUERY, documents: DOCS }, { 'x-request-deadline-ms': '1e9' })).status, 400);
  } finally {
    await server.close();
  }
});

test('a body that is not declared JSON gets 415 (no cross-site request without a preflight); JSON and +json types pass', async () => {
  const { server, url } = await start({ cascades: new Map([['a', plain()]]), cache: false });
  try {
    // what a cross-site fetch or form may send without a preflight
    for (const type of ['text/plain;charset=UTF-8', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
      const r = await fetch(`${url}/v2/rerank`, { method: 'POST', headers: { 'content-type': type }, body: body() });
      assert.equal(r.status, 415, type);
      assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'unsupported_media_type');
    }
    const bare = await rawConnect(url);
    bare.socket.write(`POST /v2/rerank HTTP/1.1\r\nHost: x\r\nContent-Length: ${body().length}\r\nConnection: close\r\n\r\n${body()}`);
    assert.equal(parseResponse(await bare.closed).status, 415, 'no Content-Type at all');
    for (const type of ['application/json', 'application/json; charset=utf-8', 'Application/JSON', 'application/vnd.winnow+json']) {
      assert.equal((await post(`${url}/v2/rerank`, body(), { 'content-type': type })).status, 200, type);
    }
  } finally {
    await server.close();
  }
});

test('/metrics with keys: 401 without a token, 200 with one, open with publicMetrics; labels name models, not absolute paths', async (t) => {
  const folder = path.resolve('test/fixtures/models/tiny-bert-ce');
  const ce = await loadScorer(folder, {});
  // the folder has no manifest id, so its absolute path is in the scorer id: what /metrics must not show
  assert.ok(ce.id.includes(folder), ce.id);
  const batched = new BatchingScorer(ce, { maxWaitMs: 0 });
  const p = new Pipeline([new Rerank(batched)]);
  const { server, url } = await start({ cascades: new Map([['ce', p]]), apiKeys: ['k'], batchers: [batched], cache: false });
  const open = await start({ cascades: new Map([['ce', plain()]]), apiKeys: ['k'], publicMetrics: true });
  t.after(async () => {
    await server.close();
    await open.server.close();
  });
  assert.equal((await post(`${url}/v2/rerank`, { query: QUERY, documents: DOCS }, { authorization: 'Bearer k' })).status, 200);
  const none = await fetch(`${url}/metrics`);
  assert.equal(none.status, 401);
  assert.equal(none.headers.get('www-authenticate'), 'Bearer');
  assert.equal((await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer nope' } })).status, 401);
  const ok = await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer k' } });
  assert.equal(ok.status, 200);
  const text = await ok.text();
  assert.ok(!text.includes(path.dirname(folder)), 'no absolute model path in /metrics');
  assert.match(text, /winnow_stage_duration_seconds_count\{cascade="ce",stage="cross-encoder:tiny-bert-ce\|onnx=onnx\/model\.onnx\|/);
  assert.match(text, /winnow_queue_pairs\{scorer="cross-encoder:tiny-bert-ce\|/);
  assert.equal((await fetch(`${url}/health`)).status, 200, 'liveness stays open for probes');
  assert.equal((await fetch(`${open.url}/metrics`)).status, 200);
  assert.equal((await post(`${open.url}/v2/rerank`, { query: QUERY, documents: DOCS })).status, 401, 'publicMetrics opens /metrics only');

  assert.equal(withoutPaths('/home/me/.cache/winnow/models/bge-small/'), 'bge-small');
  assert.equal(withoutPaths('bi-encoder:C:\\models\\e5|qp=""'), 'bi-encoder:e5|qp=""');
  assert.equal(withoutPaths('light → top(4)'), 'light → top(4)');
});

test('admission control: a request whose predicted queue wait exceeds its deadline gets 429 with Retry-After at once, body read or not', { timeout: 60_000 }, async () => {
  // The model "takes" 10 s per pair on the scorer's own clock: the batcher measures exactly that,
  // and the deadlines below are measured against it, not against how fast this machine is.
  const model = new GatedScorer(10_000);
  const b = new BatchingScorer(model, { maxBatch: 5, maxWaitMs: 0, clock: model.clock });
  const { server, url, logs } = await start({ cascades: new Map([['a', new Pipeline([new Rerank(b)])]]), batchers: [b], cache: false });
  try {
    const deadline = (ms: number): Record<string, string> => ({ 'x-request-deadline-ms': String(ms) });
    assert.equal((await post(`${url}/v2/rerank`, { query: 'warm', documents: DOCS })).status, 200, 'nothing measured yet: admitted');
    assert.equal(b.pairsPerSecond, 0.1);

    model.hold();
    const first = post(`${url}/v2/rerank`, { query: 'q1', documents: DOCS }, deadline(MAX_DEADLINE_MS));
    await waitFor(() => model.started === 2);
    const second = post(`${url}/v2/rerank`, { query: 'q2', documents: DOCS }, deadline(MAX_DEADLINE_MS));
    await waitFor(() => b.queueDepth === 5);
    // ahead of a new 5-document request: 5 pairs in the model, 5 queued, and its own 5: 150 s predicted
    assert.equal(b.predictWaitMs(5), 150_000);

    const refused = await post(`${url}/v2/rerank`, { query: 'q3', documents: DOCS }, deadline(150_000));
    assert.equal(refused.status, 429);
    assert.equal(refused.json.error.code, 'overloaded');
    assert.match(refused.json.error.message, /about 150000 ms/);
    assert.ok(Number(refused.headers.get('retry-after')) >= 30, `Retry-After ${refused.headers.get('retry-after')}`);
    // the same through the cascade route's deadline_ms
    const viaBody = await post(`${url}/v1/cascade`, { query: 'q4', documents: DOCS, deadline_ms: 100_000 });
    assert.equal(viaBody.status, 429);

    // Queue alone (100 s) over what a 100 s budget admits: refused on the headers, before any body byte.
    const early = await rawConnect(url);
    early.socket.write(head(1000, 'X-Request-Deadline-Ms: 100000\r\nConnection: close\r\n'));
    const e = parseResponse(await early.closed);
    assert.equal(e.status, 429);
    assert.equal(e.json.error.code, 'overloaded');

    // a budget the queue can meet is let in and waits its turn
    const third = post(`${url}/v2/rerank`, { query: 'q5', documents: DOCS }, deadline(MAX_DEADLINE_MS));
    await waitFor(() => b.queueDepth === 10);
    assert.equal(model.started, 2, 'refused requests never reached the model');
    model.release();
    for (const r of await Promise.all([first, second, third])) assert.equal(r.status, 200);
    assert.equal(model.pairs, 4 * DOCS.length);
    assert.equal(logs.filter((l) => l.status === 429).length, 3);
    assert.match(await (await fetch(`${url}/metrics`)).text(), /winnow_rejected_requests_total\{reason="predicted_wait",scorer="gated\(scale=1\)"\} 3/);
  } finally {
    model.release();
    await server.close();
  }
});
