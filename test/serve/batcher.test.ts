import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Doc } from '../../src/core/types.js';
import { AbortedError, BackpressureError, BatchingScorer, requestScope } from '../../src/serve/batcher.js';
import { Cancellation } from '../../src/serve/cancel.js';
import { GatedScorer, OverlapScorer, SingleQueryScorer, waitFor } from './helpers.js';

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

/** A gated scorer that reports a token length per pair (words in query + doc) and records each call's lengths. */
class LengthScorer extends GatedScorer {
  lengths: number[][] = [];
  static len(query: string, d: Doc): number {
    return (query + ' ' + d.text).split(/\s+/).length;
  }
  tokenLengths(query: string, docs: readonly Doc[]): Int32Array {
    return Int32Array.from(docs, (d) => LengthScorer.len(query, d));
  }
  override async scoreMany(requests: readonly { query: string; docs: readonly Doc[] }[]): Promise<Float32Array[]> {
    this.lengths.push(requests.flatMap((r) => r.docs.map((d) => LengthScorer.len(r.query, d))));
    return super.scoreMany(requests);
  }
}

/** docs of 1..40 words, in an order that mixes short and long */
const mixed = (n: number, seed: number): Doc[] =>
  Array.from({ length: n }, (_, i) => ({ id: `${seed}-${i}`, text: `q${seed} ` + 'w '.repeat(((i * 17 + seed * 7) % 40) + 1).trim() }));

/** padded tokens if each model call is split, sorted, into rows of `rows` padded to their longest */
function padded(calls: number[][], rows: number): number {
  let total = 0;
  for (const c of calls) {
    const s = [...c].sort((a, b) => b - a);
    for (let i = 0; i < s.length; i += rows) total += s[i] * Math.min(rows, s.length - i);
  }
  return total;
}

async function backlog(lengthBuckets: boolean): Promise<{ scorer: LengthScorer; results: Float32Array[]; docs: Doc[][] }> {
  const scorer = new LengthScorer();
  const b = new BatchingScorer(scorer, { maxBatch: 16, maxWaitMs: 0, lengthBuckets });
  scorer.hold();
  const docs = Array.from({ length: 8 }, (_, r) => mixed(20 + r * 3, r));
  const pending = docs.map((d, r) => b.score(`q${r} doc`, d));
  await waitFor(() => scorer.started === 1);
  scorer.release();
  return { scorer, results: await Promise.all(pending), docs };
}

test('length buckets: a backlog is cut into batches of similar lengths, same scores, fewer padded tokens', async () => {
  const fifo = await backlog(false);
  const bucketed = await backlog(true);
  const ref = new OverlapScorer();
  for (let r = 0; r < fifo.docs.length; r++) {
    const want = await ref.score(`q${r} doc`, fifo.docs[r]);
    assert.deepEqual(fifo.results[r], want);
    assert.deepEqual(bucketed.results[r], want, `request ${r}: scores routed back to the right docs`);
  }
  assert.equal(bucketed.scorer.pairs, fifo.scorer.pairs);
  assert.ok(bucketed.scorer.lengths.every((c) => c.length <= 16));
  const [pf, pb] = [padded(fifo.scorer.lengths, 8), padded(bucketed.scorer.lengths, 8)];
  assert.ok(pb < pf * 0.9, `padded tokens with buckets ${pb} vs in arrival order ${pf}`);
  // the first call (sent before the backlog built up) is the same; the rest span narrow ranges
  const span = (c: number[]): number => Math.max(...c) - Math.min(...c);
  const spans = bucketed.scorer.lengths.slice(1, -1).map(span);
  assert.ok(spans.reduce((a, x) => a + x, 0) < fifo.scorer.lengths.slice(1, -1).map(span).reduce((a, x) => a + x, 0) / 2);
});

test('length buckets: the oldest waiting pair always goes in the next batch', async () => {
  const scorer = new LengthScorer();
  const b = new BatchingScorer(scorer, { maxBatch: 4, maxWaitMs: 0 });
  scorer.hold();
  const first = b.score('a', [{ id: 'x', text: 'x' }]);
  await waitFor(() => scorer.started === 1);
  // one very long pair waits behind many short ones arriving later: it is not starved
  const long = b.score('long', [{ id: 'l', text: 'w '.repeat(300) }]);
  const shorts = Array.from({ length: 6 }, (_, i) => b.score(`s${i}`, mixed(4, i)));
  scorer.release();
  await Promise.all([first, long, ...shorts]);
  assert.ok(scorer.lengths[1].includes(LengthScorer.len('long', { id: 'l', text: 'w '.repeat(300) })), `second call ${scorer.lengths[1]}`);
});
