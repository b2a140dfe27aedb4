/**
 * Speed-dependent: autocannon load for a few seconds, with bounds on how much memory grows.
 * Part of `npm run test:perf`, not `npm test`, so a loaded machine cannot fail the main suite.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import vm from 'node:vm';
import autocannon from 'autocannon';
import { ScoreCache } from '../../src/cascade/cache.js';
import { DOCS, OverlapScorer, QUERY, start, twoStage } from '../../test/serve/helpers.js';

/** Growth allowed between the end of warm-up and the end of the load run, after a full GC. */
const RSS_BOUND_MB = 64;
const HEAP_BOUND_MB = 16;

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

function load(url: string, seconds: number, connections: number): Promise<autocannon.Result> {
  let i = 0;
  return autocannon({
    url: `${url}/v2/rerank`,
    connections,
    duration: seconds,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    requests: [
      {
        // distinct queries, so every request reaches the scorers rather than the score cache
        setupRequest: (req) => ({ ...req, body: JSON.stringify({ model: 'ce', query: `${QUERY} ${i++ % 5000}`, documents: DOCS, top_n: 3 }) }),
      },
    ],
  });
}

test('load: zero errors and non-2xx, bounded RSS growth', { timeout: 30_000 }, async () => {
  const p = twoStage(new OverlapScorer(), new OverlapScorer('logit', 0, 2, 'heavy'), 4, { maxBatch: 64, maxWaitMs: 1 });
  const { server, url } = await start({ cascades: new Map([['ce', p]]), cache: new ScoreCache({ maxEntries: 20_000 }), log: false });
  try {
    await load(url, 2, 16);
    gc();
    const before = process.memoryUsage();
    const r = await load(url, 4, 16);
    gc();
    const after = process.memoryUsage();
    const growthMb = (after.rss - before.rss) / 2 ** 20;
    const heapMb = (after.heapUsed - before.heapUsed) / 2 ** 20;
    console.log(`load: ${r.requests.total} requests in 4 s (${r.requests.average}/s), p50 ${r.latency.p50} ms, p99 ${r.latency.p99} ms, RSS growth ${growthMb.toFixed(1)} MB, heap growth ${heapMb.toFixed(1)} MB`);
    assert.ok(r.requests.total > 100, `served ${r.requests.total} requests`);
    assert.equal(r.errors, 0);
    assert.equal(r.timeouts, 0);
    assert.equal(r.non2xx, 0);
    assert.ok(growthMb < RSS_BOUND_MB, `RSS grew ${growthMb.toFixed(1)} MB (bound ${RSS_BOUND_MB} MB)`);
    assert.ok(heapMb < HEAP_BOUND_MB, `heap grew ${heapMb.toFixed(1)} MB (bound ${HEAP_BOUND_MB} MB)`);
  } finally {
    await server.close();
  }
});
