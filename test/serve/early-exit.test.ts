import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Pipeline } from '../../src/cascade/pipeline.js';
import { EarlyExit } from '../../src/cascade/early-exit.js';
import { Rerank } from '../../src/rerank/rerank.js';
import { BatchingScorer } from '../../src/serve/batcher.js';
import { DOCS, OverlapScorer, post, QUERY, start } from './helpers.js';

/**
 * A served cascade that ends in an early exit around a logit cross-encoder: the Cohere shape
 * promises [0, 1], so rescored queries get the sigmoid of the inner logits and queries that
 * exit get the early exit's calibration over the light stage's scores. (Before the one
 * interpreter, the server's own walk missed the inner stage: raw logits went out, and its
 * batcher had no metrics.)
 */
test('an early-exit cascade served in the Cohere shape returns probabilities either way', async () => {
  const light = new OverlapScorer('unbounded', 0);
  const heavy = new BatchingScorer(new OverlapScorer('logit', 0, 3), { maxWaitMs: 1 });
  const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
  const cascade = (margin: number) =>
    new Pipeline([new Rerank(light, 'light'), new EarlyExit([new Rerank(heavy, 'heavy')], margin, 1, { kind: 'platt', a: 1, b: -2 })]);
  const { server, url } = await start({ cascades: new Map([['rescore', cascade(1e9)], ['exit', cascade(-1e9)]]), batchers: [heavy], cache: false });
  try {
    const rescored = await post(`${url}/v2/rerank`, { model: 'rescore', query: QUERY, documents: DOCS });
    assert.equal(rescored.status, 200);
    const want = await heavy.score(QUERY, DOCS.map((text, i) => ({ id: String(i), text })));
    for (const r of rescored.json.results as { index: number; relevance_score: number }[]) {
      assert.ok(Math.abs(r.relevance_score - sigmoid(want[r.index])) < 1e-6, `index ${r.index}: ${r.relevance_score} vs sigmoid(${want[r.index]})`);
    }
    const exited = await post(`${url}/v2/rerank`, { model: 'exit', query: QUERY, documents: DOCS });
    const lightScores = await light.score(QUERY, DOCS.map((text, i) => ({ id: String(i), text })));
    for (const r of exited.json.results as { index: number; relevance_score: number }[]) {
      assert.ok(Math.abs(r.relevance_score - sigmoid(lightScores[r.index] - 2)) < 1e-6, 'the early exit calibration maps the light scores');
    }
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(metrics, /winnow_inference_batch_pairs_count\{scorer="[^"]+"\} [1-9]/, 'the inner batcher reports its batches');
  } finally {
    await server.close();
  }
});
