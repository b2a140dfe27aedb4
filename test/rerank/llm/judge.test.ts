import assert from 'node:assert/strict';
import test from 'node:test';
import { ScoreCache } from '../../../src/cascade/cache.js';
import { readJudgement } from '../../../src/rerank/llm/judge.js';
import { startFakeLlm } from '../../helpers/fake-llm-server.js';
import { build, context, corpus, ids, ranking } from './helpers.js';

const docs = corpus(6, (i) => [0, 3, 1, 0, 2, 1][i]);
const input = ranking('q', ['d0', 'd1', 'd2', 'd3', 'd4', 'd5']);

test('yes/no judge with logprobs: score = P(yes), kind probability, request asks for top logprobs', async () => {
  const fake = await startFakeLlm();
  try {
    const stage = await build({ judge: { model: 'openai:m', baseUrl: fake.url } });
    assert.equal(stage.scoreKind, 'probability');
    assert.equal(stage.scoring, 'pointwise');
    const ctx = context(docs);
    const [out] = await stage.run([input], ctx);
    // the fake's P(yes) for s mentions of "relevant" is 1 - 1/(1+s)
    const p = (s: number): number => Math.max(1 - 1 / (1 + s), 1e-6) / (Math.max(1 - 1 / (1 + s), 1e-6) + Math.max(1 / (1 + s), 1e-6));
    assert.deepEqual(ids(out), ['d1', 'd4', 'd5', 'd2', 'd3', 'd0'], 'P(yes) descending, ties by id descending');
    assert.ok(Math.abs(out.hits[0].score - p(3)) < 1e-9);
    assert.ok(Math.abs(out.hits[1].scores[stage.name] - p(2)) < 1e-9);
    const body = fake.requests[0].body;
    assert.equal(body.logprobs, true);
    assert.equal(body.top_logprobs, 10);
    assert.equal(ctx.costs.get('llm.calls'), 6);
    assert.equal(ctx.costs.get('pairs'), 6);
    assert.equal(ctx.costs.get('llm.parse.clean'), 6);
  } finally {
    await fake.close();
  }
});

test('yes/no judge without logprobs reads the text; unusable answers score 0.5', async () => {
  const fake = await startFakeLlm({ noLogprobs: true });
  try {
    const stage = await build({ judge: { model: 'openai:m', baseUrl: fake.url } });
    const [out] = await stage.run([ranking('q', ['d0', 'd1', 'd4'])], context(docs));
    assert.deepEqual(out.hits.map((h) => [h.docId, h.score]), [['d4', 1], ['d1', 1], ['d0', 0]]);
    fake.replies.push({ content: 'It depends.' });
    const ctx = context(docs);
    const [one] = await stage.run([ranking('q', ['d3'])], ctx);
    assert.equal(one.hits[0].score, 0.5);
    assert.equal(ctx.costs.get('llm.parse.fallback'), 1);
  } finally {
    await fake.close();
  }
});

test('graded judge: expected grade over 0-3 from logprobs, else the parsed digit', async () => {
  const fake = await startFakeLlm();
  try {
    const stage = await build({ judge: { model: 'openai:m', baseUrl: fake.url, mode: 'graded' } });
    assert.equal(stage.scoreKind, 'unbounded');
    const [out] = await stage.run([ranking('q', ['d0', 'd1', 'd4'])], context(docs));
    // the fake puts 0.7 on its grade and 0.1 on each other: E = 0.7 g + 0.1 (6 - g)
    const expected = (g: number): number => 0.7 * g + 0.1 * (6 - g);
    assert.deepEqual(ids(out), ['d1', 'd4', 'd0']);
    for (const [h, g] of out.hits.map((h, i) => [h, [3, 2, 0][i]] as const)) assert.ok(Math.abs(h.score - expected(g)) < 1e-9, `${h.docId}: ${h.score}`);
    assert.match(fake.requests[0].prompt, /3 = perfectly relevant/);
    assert.deepEqual(readJudgement('graded', 'Grade: 2', undefined), { score: 2, status: 'clean' });
    assert.deepEqual(readJudgement('graded', 'unsure', undefined), { score: 1.5, status: 'fallback' });
  } finally {
    await fake.close();
  }
});

test('judgements cache per pair; the instruction is in the prompt and in the cache key', async () => {
  const fake = await startFakeLlm();
  const cache = new ScoreCache();
  try {
    const stage = await build({ judge: { model: 'openai:m', baseUrl: fake.url } });
    await stage.run([input], context(docs, cache));
    const ctx = context(docs, cache);
    const [again] = await stage.run([ranking('q', ['d5', 'd1'])], ctx);
    assert.equal(ctx.costs.get('llm.calls'), 0);
    assert.equal(ctx.costs.get('cache.hits'), 2);
    assert.deepEqual(ids(again), ['d1', 'd5']);
    const ruled = await build({ judge: { model: 'openai:m', baseUrl: fake.url, instruction: 'only peer-reviewed sources count' } });
    const c2 = context(docs, cache);
    await ruled.run([ranking('q', ['d5'])], c2);
    assert.equal(c2.costs.get('llm.calls'), 1);
    assert.match(fake.requests[fake.requests.length - 1].prompt, /only peer-reviewed sources count/);
  } finally {
    await fake.close();
  }
});

test('judge budget: the judged head is reordered, the rest follows in its order, degraded', async () => {
  const fake = await startFakeLlm();
  try {
    const stage = await build({ judge: { model: 'openai:m', baseUrl: fake.url, budget: { maxCalls: 3 } } });
    const ctx = context(docs);
    const [out] = await stage.run([input], ctx);
    assert.deepEqual(ids(out), ['d1', 'd2', 'd0', 'd3', 'd4', 'd5']);
    assert.equal(ctx.costs.get('llm.calls'), 3);
    assert.match(out.degraded?.reason ?? '', /maxCalls 3/);
    assert.equal(ctx.costs.get('llm.degraded'), 1);
  } finally {
    await fake.close();
  }
});

test('judge token budget with concurrent calls: reservations keep the total under maxTokens', async () => {
  // Tokens as the fake counts them (prompt characters / 4, answer characters / 4): never more
  // than the stage reserves, so the budget must hold exactly, however many calls are in flight.
  const fake = await startFakeLlm({ delayMs: 20 });
  try {
    const many = corpus(16, (i) => i % 4);
    const all = ranking('q', [...many.keys()]);
    const budget = 400;
    const stage = await build({ judge: { model: 'openai:m', baseUrl: `${fake.url}/budget`, concurrency: 4, budget: { maxTokens: budget } } });
    const ctx = context(many);
    const [out] = await stage.run([all], ctx);
    const used = ctx.costs.get('llm.tokens.in') + ctx.costs.get('llm.tokens.out');
    assert.ok(used <= budget, `${used} tokens used, budget ${budget}`);
    assert.ok(fake.maxInFlight > 1, `calls ran concurrently (${fake.maxInFlight} in flight)`);
    const calls = ctx.costs.get('llm.calls');
    assert.ok(calls >= 2 && calls < 16, `${calls} calls: some, not all`);
    assert.match(out.degraded?.reason ?? '', /maxTokens 400 reached/);
    assert.equal(ctx.costs.get('llm.degraded'), 1);
    assert.equal(out.hits.length, 16, 'the pairs not judged follow in their previous order');
  } finally {
    await fake.close();
  }
});
