import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { RedisTier } from '../../src/cache/redis-tier.js';
import { ScoreCache } from '../../src/cascade/cache.js';
import { Pipeline } from '../../src/cascade/pipeline.js';
import { CACHE_HITS, Costs } from '../../src/core/costs.js';
import type { Doc, Ranking } from '../../src/core/types.js';
import { BiEncoder } from '../../src/rerank/bi-encoder.js';
import { EmbeddingCache } from '../../src/rerank/embedding-cache.js';
import { Rerank } from '../../src/rerank/rerank.js';
import { modelDir } from '../models/fixtures.js';
import { OverlapScorer, post, start, waitFor } from '../serve/helpers.js';
import { missing, redisCli, redisUp } from './services.js';

const skip = missing('redis-server', 'redis-cli');

const docs: Doc[] = Array.from({ length: 40 }, (_, i) => ({ id: `d${i}`, text: `document ${i} about ${i % 3 === 0 ? 'protein folding' : 'the capital of France'} ${'x'.repeat(i)}` }));

function ranking(query: string): Ranking {
  return { query: { id: query, text: query }, hits: docs.map((d, i) => ({ docId: d.id, score: docs.length - i, scores: {} })) };
}

/** one rerank call through a stage with its own in-process cache, as a replica would make it */
async function rerank(scorer: OverlapScorer, cache: ScoreCache, query: string): Promise<{ scores: number[]; hits: number }> {
  const costs = new Costs();
  const [r] = await new Rerank(scorer, 'ce').run([ranking(query)], { docs: new Map(docs.map((d) => [d.id, d])), costs, cache });
  return { scores: r.hits.map((h) => h.score), hits: costs.get(CACHE_HITS) };
}

/** Redis writes are not awaited by the cache: wait until they have landed, and check they all did. */
async function written(tier: RedisTier, n: number): Promise<void> {
  await waitFor(() => tier.stats().pendingWrites === 0);
  assert.equal(tier.stats().writes, n, JSON.stringify(tier.stats().failures));
}

/**
 * A tier whose commands may take as long as a loaded test machine needs: these tests are about
 * what is shared and what survives an outage, not about speed (the slow-Redis test sets its own).
 */
function patientTier(opts: ConstructorParameters<typeof RedisTier>[0]): RedisTier {
  return new RedisTier({ timeoutMs: 5000, ...opts });
}

test('two replicas share scores through Redis: the second one\'s scorer is not called for cached pairs', { skip, timeout: 60_000 }, async () => {
  const redis = redisUp();
  const a = patientTier({ url: redis.url });
  const b = patientTier({ url: redis.url });
  try {
    await waitFor(() => a.stats().connected && b.stats().connected);
    const scorerA = new OverlapScorer();
    const scorerB = new OverlapScorer();
    const cacheA = new ScoreCache({ shared: a });
    const cacheB = new ScoreCache({ shared: b });

    const first = await rerank(scorerA, cacheA, 'capital of France');
    assert.equal(scorerA.pairs, docs.length);
    await written(a, docs.length);

    const second = await rerank(scorerB, cacheB, 'capital of France');
    assert.equal(scorerB.pairs, 0, 'replica B scored nothing');
    assert.equal(second.hits, docs.length);
    assert.deepEqual(second.scores, first.scores);
    assert.equal(cacheB.sharedHits, docs.length);
    // now in B's own LRU: a repeat does not ask Redis again
    const asked = b.stats().lookups.score.asked;
    await rerank(scorerB, cacheB, 'capital of France');
    assert.equal(b.stats().lookups.score.asked, asked);

    // another query, another scorer identity, an edited document: each is a miss
    await rerank(scorerB, cacheB, 'protein folding');
    assert.equal(scorerB.pairs, docs.length);
    const other = new OverlapScorer('logit', 0, 2, 'other');
    await rerank(other, cacheB, 'capital of France');
    assert.equal(other.pairs, docs.length);
    const edited = docs[0];
    docs[0] = { ...edited, text: `${edited.text} (edited)` };
    try {
      await rerank(scorerB, cacheB, 'capital of France');
      assert.equal(scorerB.pairs, docs.length + 1, 'only the edited document was rescored');
    } finally {
      docs[0] = edited;
    }
    assert.equal(a.stats().failures.error + b.stats().failures.error, 0);
    // values carry the TTL
    const key = redisCli(redis.port, '--scan', '--pattern', 'winnow:s:*').split('\n')[0];
    const ttl = Number(redisCli(redis.port, 'TTL', key));
    assert.ok(ttl > 0 && ttl <= 86_400, `TTL ${ttl}`);
  } finally {
    await a.close();
    await b.close();
    redis.down();
  }
});

test('document embeddings are shared: a second bi-encoder embeds only the query', { skip, timeout: 60_000 }, async () => {
  const redis = redisUp();
  const a = patientTier({ url: redis.url });
  const b = patientTier({ url: redis.url });
  try {
    await waitFor(() => a.stats().connected && b.stats().connected);
    const biA = await BiEncoder.load(modelDir('tiny-bert-bi'), { sharedCache: a });
    const biB = await BiEncoder.load(modelDir('tiny-bert-bi'), { sharedCache: b });
    const small = docs.slice(0, 8);
    const fromA = await biA.score('capital of France', small);
    await written(a, small.length);
    const before = biB.counters.sequences;
    const fromB = await biB.score('capital of France', small);
    assert.equal(biB.counters.sequences - before, 1, 'only the query was embedded');
    assert.equal(biB.cache.sharedHits, small.length);
    assert.deepEqual(Array.from(fromB), Array.from(fromA));
    await biA.close();
    await biB.close();
  } finally {
    await a.close();
    await b.close();
    redis.down();
  }
});

test('Redis Cluster: one query\'s scores come back in one-slot MGETs; embeddings spread over the masters', { skip, timeout: 90_000 }, async () => {
  const redis = redisUp('--cluster');
  const a = patientTier({ cluster: redis.cluster });
  const b = patientTier({ cluster: redis.cluster });
  try {
    assert.equal(redis.cluster?.length, 3);
    await waitFor(() => a.stats().connected && b.stats().connected);
    const scorerA = new OverlapScorer();
    const scorerB = new OverlapScorer();
    const cacheA = new ScoreCache({ shared: a });
    const cacheB = new ScoreCache({ shared: b });
    const queries = Array.from({ length: 12 }, (_, i) => `query number ${i} about the capital`);
    for (const q of queries) await rerank(scorerA, cacheA, q);
    await written(a, queries.length * docs.length);
    for (const q of queries) await rerank(scorerB, cacheB, q);
    assert.equal(scorerB.pairs, 0, 'every pair came from the cluster');
    assert.equal(b.stats().failures.error, 0, 'no CROSSSLOT or MOVED errors');

    const embA = new EmbeddingCache({ namespace: 'test-model', shared: a });
    const embB = new EmbeddingCache({ namespace: 'test-model', shared: b });
    const texts = Array.from({ length: 200 }, (_, i) => `passage ${i}`);
    embA.setMany(texts.map((t, i) => [t, Float32Array.of(i, i / 2, -i)]));
    await written(a, queries.length * docs.length + texts.length);
    const got = await embB.getMany(texts);
    got.forEach((v, i) => assert.deepEqual(Array.from(v ?? []), [i, i / 2, -i]));
    assert.equal(b.stats().failures.error, 0);
    // 12 score tags and 16 embedding buckets: keys on every master, not piled onto one
    for (const node of redis.cluster ?? []) {
      const keys = Number(redisCli(Number(node.split(':')[1]), 'DBSIZE'));
      assert.ok(keys > 0, `master ${node} holds no keys`);
    }
  } finally {
    await a.close();
    await b.close();
    redis.down();
  }
});

test('Redis killed mid-run: requests keep succeeding, errors are counted, and after a restart it is used again', { skip, timeout: 120_000 }, async () => {
  const redis = redisUp();
  const tier = new RedisTier({ url: redis.url, resetMs: 200, timeoutMs: 5000 });
  const scorer = new OverlapScorer();
  const cache = new ScoreCache({ shared: tier });
  const { server, url } = await start({ cascades: new Map([['ce', new Pipeline([new Rerank(scorer, 'ce')])]]), cache });
  const ask = async (query: string): Promise<void> => {
    const r = await post(`${url}/v2/rerank`, { query, documents: docs.slice(0, 10).map((d) => d.text) });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.json.results.length, 10);
  };
  try {
    await waitFor(() => tier.stats().connected);
    for (let i = 0; i < 5; i++) await ask(`before ${i}`);
    assert.equal(tier.stats().failures.error, 0);

    process.kill(redis.pids[0], 'SIGKILL');
    await waitFor(() => !tier.stats().connected);
    for (let i = 0; i < 20; i++) await ask(`during ${i}`);
    const down = tier.stats();
    assert.ok(down.failures.error > 0, JSON.stringify(down.failures));
    assert.notEqual(down.breaker, 'closed', 'the breaker stopped calling a dead Redis');
    assert.ok(down.failures.breaker_open > 0);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(metrics, /winnow_shared_cache_errors_total\{backend="redis",kind="error"\} [1-9]/);
    assert.match(metrics, /winnow_shared_cache_breaker_state\{backend="redis"\} [12]/);
    assert.match(metrics, /winnow_shared_cache_connected\{backend="redis"\} 0/);

    redisUp('--port', String(redis.port), '--dir', redis.dir);
    await waitFor(() => tier.stats().connected);
    // Two replica-like caches on the same tier, each with an empty LRU: once the breaker has
    // let a probe through and closed, what one of them scores, the other reads from Redis.
    const writer = new ScoreCache({ shared: tier });
    const reader = new ScoreCache({ shared: tier });
    let round = 0;
    await waitFor(async () => {
      const q = `after ${round++}`;
      await ask(q);
      await rerank(new OverlapScorer(), writer, q);
      const hitsBefore = reader.sharedHits;
      await rerank(new OverlapScorer(), reader, q);
      return reader.sharedHits > hitsBefore;
    });
    assert.equal(tier.stats().breaker, 'closed');
    const after = await (await fetch(`${url}/metrics`)).text();
    assert.match(after, /winnow_shared_cache_connected\{backend="redis"\} 1/);
    assert.match(after, /winnow_cache_hits_total\{cache="score",tier="redis"\} [1-9]/);
  } finally {
    await server.close();
    await tier.close();
    redis.down();
  }
});

test('slow Redis (DEBUG SLEEP): lookups time out, requests succeed from the local tier', { skip, timeout: 60_000 }, async () => {
  const redis = redisUp();
  const tier = new RedisTier({ url: redis.url, timeoutMs: 50 });
  const scorer = new OverlapScorer();
  const cache = new ScoreCache({ shared: tier });
  try {
    await waitFor(() => tier.stats().connected);
    await rerank(scorer, cache, 'warm');
    assert.equal(redisCli(redis.port, 'DEBUG', 'SLEEP', '0'), 'OK', 'redis.sh allows DEBUG from loopback');
    // Redis stalls for 3 s: every command sent meanwhile waits for it.
    const sleeper = spawn('redis-cli', ['-h', '127.0.0.1', '-p', String(redis.port), 'DEBUG', 'SLEEP', '3'], { stdio: 'ignore' });
    const stall = new Promise<void>((resolve) => sleeper.on('exit', () => resolve()));
    // until the stall has begun, lookups may still be answered
    await waitFor(async () => {
      await rerank(scorer, cache, `probe ${Math.random()}`);
      return tier.stats().failures.timeout > 0;
    });
    const pairs = scorer.pairs;
    for (let i = 0; i < 10; i++) {
      const r = await rerank(scorer, cache, `during stall ${i}`);
      assert.equal(r.scores.length, docs.length);
    }
    assert.equal(scorer.pairs - pairs, 10 * docs.length, 'every pair was scored locally');
    const s = tier.stats();
    assert.ok(s.failures.timeout > 0, JSON.stringify(s.failures));
    assert.ok(s.failures.breaker_open > 0, 'after repeated timeouts the breaker skips Redis');
    await stall;
  } finally {
    await tier.close();
    redis.down();
  }
});
