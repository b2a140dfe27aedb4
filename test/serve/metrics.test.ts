import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as prom from 'prom-client';
import { Pipeline } from '../../src/cascade/pipeline.js';
import { Rerank } from '../../src/rerank/rerank.js';
import { Counter, Gauge, Histogram, Registry } from '../../src/serve/metrics.js';
import { DOCS, OverlapScorer, QUERY, post, start } from './helpers.js';

test('a Registry takes its own metric classes (label names learnt from first use) and prom-client metrics; model paths become slugs', async () => {
  const r = new Registry();
  const hits = r.add(new Counter('winnow_test_cache_lookups_total', 'lookups by tier and result'));
  const sizes = r.add(new Histogram('winnow_test_value_bytes', 'value sizes', [10, 100]));
  r.add(new Gauge('winnow_test_up', 'tier reachable', () => [[{ tier: 'redis' }, 1]]));
  const external = new prom.Counter({ name: 'winnow_test_external_total', help: 'from a prom-client caller', registers: [] });
  r.add(external);
  hits.inc({ tier: 'redis', result: 'hit' }, 3);
  sizes.observe({ scorer: '/srv/models/bge-small' }, 50);
  external.inc(2);
  const text = await r.render();
  assert.match(text, /^winnow_test_cache_lookups_total\{result="hit",tier="redis"\} 3$/m);
  assert.match(text, /^winnow_test_value_bytes_bucket\{scorer="bge-small",le="100"\} 1$/m);
  assert.match(text, /^winnow_test_up\{tier="redis"\} 1$/m);
  assert.match(text, /^winnow_test_external_total 2$/m);
  assert.doesNotMatch(text, /\/srv\/models/);
  assert.equal(r.contentType.split(';')[0], 'text/plain');
});

test('each server has its own registry: counts do not leak between servers in one process, nor into the global one', async () => {
  const mk = () => start({ cascades: new Map([['a', new Pipeline([new Rerank(new OverlapScorer())])]]), cache: false, collectors: [new Counter('winnow_test_extra_total', 'extra', [])] });
  const a = await mk();
  const b = await mk();
  try {
    for (let i = 0; i < 3; i++) assert.equal((await post(`${a.url}/v2/rerank`, { query: QUERY, documents: DOCS })).status, 200);
    assert.equal((await post(`${b.url}/v2/rerank`, { query: QUERY, documents: DOCS })).status, 200);
    assert.match(await (await fetch(`${a.url}/metrics`)).text(), /winnow_http_requests_total\{route="\/v2\/rerank",status="200"\} 3/);
    const textB = await (await fetch(`${b.url}/metrics`)).text();
    assert.match(textB, /winnow_http_requests_total\{route="\/v2\/rerank",status="200"\} 1/);
    assert.match(textB, /^winnow_test_extra_total 0$/m, 'collectors given at creation are served');
    assert.doesNotMatch(await prom.register.metrics(), /winnow_/);
  } finally {
    await a.server.close();
    await b.server.close();
  }
});
