import assert from 'node:assert/strict';
import test from 'node:test';
import { bubbleTop, heapTop } from '../../../src/rerank/llm/setwise.js';
import { TopK } from '../../../src/cascade/cutoff.js';
import { Pipeline } from '../../../src/cascade/pipeline.js';
import { startFakeLlm } from '../../helpers/fake-llm-server.js';
import { build, context, corpus, ids, ranking } from './helpers.js';

const value = (i: number): number => (i * 7) % 13;
const best = async (items: number[]): Promise<number> => items.reduce((a, b) => (value(b) > value(a) ? b : a));

test('setwise heap and bubble sorts give the exact top k and keep the rest in order', async () => {
  const items = Array.from({ length: 13 }, (_, i) => i);
  const byValue = [...items].sort((a, b) => value(b) - value(a));
  for (const c of [2, 3, 4, 5]) {
    for (const sort of [heapTop, bubbleTop]) {
      const { items: out, stopped } = await sort(items, 5, c, best);
      assert.equal(stopped, false);
      assert.deepEqual(out.slice(0, 5), byValue.slice(0, 5), `${sort.name} c=${c}`);
      assert.deepEqual([...out].sort((a, b) => a - b), items);
    }
  }
  const { items: out } = await heapTop(items, 3, 4, best);
  const top = new Set(out.slice(0, 3));
  assert.deepEqual(out.slice(3), items.filter((x) => !top.has(x)), 'heap: the rest in its previous order');
});

test('setwise stage through the fake server: labelled sets, exact top k, calls counted, budget', async () => {
  const fake = await startFakeLlm();
  const docs = corpus(10, (i) => (i * 3) % 10);
  const input = ranking('q', Array.from({ length: 10 }, (_, i) => `d${i}`));
  try {
    for (const policy of ['heap', 'bubble']) {
      const stage = await build({ setwise: { model: 'openai:m', baseUrl: fake.url, policy, setSize: 3, topK: 3 } });
      const ctx = context(docs);
      const [out] = await stage.run([input], ctx);
      // relevance (i*3)%10: d3=9, d6=8, d9=7
      assert.deepEqual(ids(out).slice(0, 3), ['d3', 'd6', 'd9'], policy);
      assert.ok(ctx.costs.get('llm.calls') > 0);
      assert.equal(ctx.costs.get('llm.parse.clean'), ctx.costs.get('llm.calls'));
    }
    assert.ok(fake.requests.some((r) => /^\[C\] /m.test(r.prompt)), 'sets of three are labelled A-C');
    const limited = await build({ setwise: { model: 'openai:m', baseUrl: fake.url, policy: 'bubble', setSize: 3, topK: 3, budget: { maxCalls: 5 } } });
    const [out] = await limited.run([input], context(docs));
    assert.match(out.degraded?.reason ?? '', /maxCalls 5/);
    assert.equal(ids(out)[0], 'd3', 'the first bubble pass (5 sets of 3 over 10, overlapping by one) finished');
  } finally {
    await fake.close();
  }
});

test('setwise takes a following top(k) as its budget: fewer calls, the same top k', async () => {
  const fake = await startFakeLlm();
  const docs = corpus(12, (i) => (i * 5) % 12);
  const input = ranking('q', Array.from({ length: 12 }, (_, i) => `d${i}`));
  try {
    for (const policy of ['heap', 'bubble']) {
      const stage = await build({ setwise: { model: 'openai:m', baseUrl: fake.url, policy, setSize: 3, topK: 8 }, name: 'sw' });
      const plain = context(docs);
      const [all] = await stage.run([input], plain);
      const [pushed] = Pipeline.of(stage, new TopK(3)).compile();
      assert.equal(pushed.label, 'sw → top(3)');
      const ctx = context(docs);
      const [out] = await pushed.run([input], ctx);
      assert.deepEqual(ids(out), ids(all).slice(0, 3), policy);
      assert.ok(ctx.costs.get('llm.calls') < plain.costs.get('llm.calls'), `${policy}: ${ctx.costs.get('llm.calls')} < ${plain.costs.get('llm.calls')} calls`);
    }
  } finally {
    await fake.close();
  }
});
