import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Doc } from '../../src/core/types.js';
import { AbortedError, BackpressureError, BatchingScorer, requestScope } from '../../src/serve/batcher.js';
import { Cancellation } from '../../src/serve/cancel.js';
import { OverlapScorer, SingleQueryScorer } from './helpers.js';

const docs = (n: number, word = 'x'): Doc[] => Array.from({ length: n }, (_, i) => ({ id: String(i), text: `${word} doc ${i} ${'y'.repeat(i)}` }));

test('a call larger than maxBatch is split; scores equal the unbatched scorer', async () => {
  const inner = new OverlapScorer();
  const b = new BatchingScorer(inner, { maxBatch: 8, maxWaitMs: 1 });
  const d = docs(30, 'alpha');
  const got = await b.score('alpha doc', d);
  const want = await new OverlapScorer().score('alpha doc', d);
  assert.deepEqual(got, want);
  assert.deepEqual(inner.batchSizes, [8, 8, 8, 6]);
});

test('concurrent calls with different queries share batches (scoreMany) and get their own scores back', async () => {
  const inner = new OverlapScorer('logit', 5);
  const b = new BatchingScorer(inner, { maxBatch: 64, maxWaitMs: 5 });
  const calls = Array.from({ length: 10 }, (_, i) => b.score(`q${i} doc`, docs(4, `q${i}`)));
  const results = await Promise.all(calls);
  assert.ok(inner.calls <= 2, `${inner.calls} model calls for 10 requests`);
  const ref = new OverlapScorer();
  for (let i = 0; i < 10; i++) assert.deepEqual(results[i], await ref.score(`q${i} doc`, docs(4, `q${i}`)));
  assert.equal(b.batches, inner.calls);
  assert.equal(b.pairs, 40);
});

test('without scoreMany, calls with the same query are merged, others run one by one', async () => {
  const single = new SingleQueryScorer(new OverlapScorer());
  const b = new BatchingScorer(single, { maxBatch: 64, maxWaitMs: 5 });
  const r = await Promise.all([b.score('same', docs(3)), b.score('same', docs(2)), b.score('other', docs(2))]);
  assert.equal(single.calls, 2);
  assert.deepEqual(r[1], await new OverlapScorer().score('same', docs(2)));
  assert.deepEqual(r[2], await new OverlapScorer().score('other', docs(2)));
});

test('a full queue refuses with BackpressureError; an idle queue accepts any size', async () => {
  const b = new BatchingScorer(new OverlapScorer('logit', 30), { maxBatch: 4, maxWaitMs: 0, maxQueue: 5 });
  const big = b.score('q', docs(20)); // idle: accepted though larger than the queue
  // 4 pairs went to the model, 16 wait: the queue is over its bound until they drain
  await assert.rejects(b.score('q', docs(2)), (e) => e instanceof BackpressureError && e.retryAfterSeconds >= 1 && e.queued === 16);
  assert.equal((await big).length, 20);
  const first = b.score('q', docs(5));
  const second = b.score('q', docs(2)); // 1 + 2 pairs waiting: within the bound
  await assert.rejects(b.score('q', docs(3)), (e) => e instanceof BackpressureError);
  assert.equal((await first).length, 5);
  assert.equal((await second).length, 2);
});

test('an aborted request loses its queued pairs; others are unaffected', async () => {
  const inner = new OverlapScorer('logit', 30);
  const b = new BatchingScorer(inner, { maxBatch: 4, maxWaitMs: 0 });
  const first = b.score('a', docs(4));
  const cancel = new Cancellation();
  const doomed = requestScope.run({ cancel }, () => b.score('b', docs(8)));
  const after = b.score('c', docs(4));
  cancel.cancel();
  await assert.rejects(doomed, (e) => e instanceof AbortedError);
  assert.equal((await first).length, 4);
  assert.equal((await after).length, 4);
  assert.equal(inner.pairs, 8, 'the aborted request never reached the model');
  assert.equal(b.queueDepth, 0);
});

test('a failing model call rejects every caller in the batch', async () => {
  const failing = { id: 'boom', kind: 'logit' as const, score: async (): Promise<Float32Array> => { throw new Error('model crashed'); } };
  const b = new BatchingScorer(failing, { maxWaitMs: 2 });
  const r = await Promise.allSettled([b.score('q', docs(2)), b.score('q', docs(3))]);
  assert.deepEqual(r.map((x) => x.status), ['rejected', 'rejected']);
  assert.equal(b.queueDepth, 0);
});
