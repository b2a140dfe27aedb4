import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Costs, TRUNCATED, WINDOWED } from '../../src/core/costs.js';
import { CrossEncoder } from '../../src/rerank/cross-encoder.js';
import { loadScorer } from '../../src/rerank/load.js';
import { isMultiQueryScorer } from '../../src/serve/batcher.js';
import { assertClose, expected, modelDir } from '../models/fixtures.js';

const TOL = 1e-4;
const docs = (texts: string[]) => texts.map((text, i) => ({ id: `d${i}`, text }));

/** scores every fixture pair, one query at a time, with the docs of that query in one call */
async function scoreAll(ce: CrossEncoder, pairs: [string, string][]): Promise<number[]> {
  const out: number[] = [];
  const byQuery = new Map<string, string[]>();
  for (const [q, d] of pairs) byQuery.set(q, [...(byQuery.get(q) ?? []), d]);
  for (const [q, ds] of byQuery) out.push(...(await ce.score(q, docs(ds))));
  return out;
}

test('tiny-bert-ce: logits and sigmoid equal sentence-transformers CrossEncoder, any batch size', async () => {
  const ex = expected['tiny-bert-ce'];
  for (const batchSize of [1, 3, 32]) {
    const raw = await CrossEncoder.load(modelDir('tiny-bert-ce'), { batchSize, truncation: 'longest_first' });
    assert.equal(raw.kind, 'logit');
    assertClose(await scoreAll(raw, ex.pairs), ex.logits, TOL, `logits batch ${batchSize}`);
    assertClose(await scoreAll(raw, ex.pairs), ex.rustLogits, TOL, 'rust-tokenizer logits');
    await raw.close();
  }
  const sig = await CrossEncoder.load(modelDir('tiny-bert-ce'), { activation: 'sigmoid' });
  assert.equal(sig.kind, 'probability');
  // keep_query (the default) equals longest_first here: every fixture query is short
  assertClose(await scoreAll(sig, ex.pairs), ex.sigmoid, TOL, 'sigmoid');
  await sig.close();
});

test('tiny-xlmr-ce: 2-label softmax(positive) and log-odds; no token_type_ids input', async () => {
  const ex = expected['tiny-xlmr-ce'];
  const soft = await CrossEncoder.load(modelDir('tiny-xlmr-ce'), { activation: 'softmax', batchSize: 4 });
  const got = await scoreAll(soft, ex.pairs);
  assertClose(got, ex.rustSoftmax, TOL, 'softmax');
  // CrossEncoder (transformers) tokenizes whitespace-only / empty documents differently from
  // the Rust tokenizer; compare with it where the two agree
  const agree = ex.transformersAgrees as boolean[];
  assert.ok(agree.filter(Boolean).length >= ex.pairs.length - 4);
  assertClose(got.filter((_, i) => agree[i]), ex.softmax.filter((_: number, i: number) => agree[i]), TOL, 'CrossEncoder softmax');
  await soft.close();
  const raw = await CrossEncoder.load(modelDir('tiny-xlmr-ce'));
  const logOdds = (ex.rustLogits as number[][]).map(([a, b]) => b - a);
  assertClose(await scoreAll(raw, ex.pairs), logOdds, TOL, 'log-odds');
  await raw.close();
});

test('truncation and windows are counted; windows score the best passage', async () => {
  const ex = expected['tiny-bert-ce'];
  const long = ex.pairs[0][1] as string;
  const q = 'what causes cancer?';
  const plain = await CrossEncoder.load(modelDir('tiny-bert-ce'));
  const stats = new Costs();
  const [cut] = await plain.score(q, docs([long]), stats);
  assert.equal(stats.get(TRUNCATED), 1);
  const win = await CrossEncoder.load(modelDir('tiny-bert-ce'), { windows: { size: 20, stride: 10 } });
  assert.notEqual(win.id, plain.id);
  const ws = new Costs();
  const [best] = await win.score(q, docs([long, 'a']), ws);
  assert.equal(ws.get(WINDOWED), 1);
  assert.equal(ws.get(TRUNCATED), 0);
  // the max over windows is at least the first window's score
  const tok = plain.folder.tokenizer;
  const firstWindow = tok.encodePairIds(tok.ids(q), tok.ids(long).subarray(0, 20), plain.maxLength);
  const first = await CrossEncoder.load(modelDir('tiny-bert-ce'), { windows: { size: 20, aggregate: 'first' } });
  const [f] = await first.score(q, docs([long]));
  assert.ok(best >= f - 1e-6);
  assert.ok(firstWindow.ids.length <= plain.maxLength);
  assert.ok(Number.isFinite(cut));
  for (const s of [plain, win, first]) await s.close();
});

test('quantized int8 model loads the same way and gives close scores', async () => {
  const ex = expected['tiny-bert-ce'];
  const q8 = await CrossEncoder.load(modelDir('tiny-bert-ce'), { quantized: true });
  assert.match(q8.id, /model_quantized\.onnx/);
  const got = await scoreAll(q8, ex.pairs);
  const meanAbs = got.reduce((s, v, i) => s + Math.abs(v - ex.logits[i]), 0) / got.length;
  assert.ok(meanAbs < 0.2, `int8 mean abs diff ${meanAbs}`);
  await q8.close();
});

test('loadScorer picks the scorer from the folder; id carries max length and activation', async () => {
  const ce = await loadScorer(modelDir('tiny-bert-ce'), { activation: 'sigmoid', maxLength: 32 });
  assert.ok(ce instanceof CrossEncoder);
  assert.match(ce.id, /max=32/);
  assert.match(ce.id, /act=sigmoid/);
  await ce.close?.();
});

test('scoreMany merges queries into shared batches and equals per-query score', async () => {
  const ex = expected['tiny-bert-ce'];
  const byQuery = new Map<string, string[]>();
  for (const [q, d] of ex.pairs as [string, string][]) byQuery.set(q, [...(byQuery.get(q) ?? []), d]);
  const requests = [...byQuery].map(([query, ds]) => ({ query, docs: docs(ds) }));
  assert.ok(requests.length >= 2, 'the fixture needs several queries');
  // a query repeated with other documents, and an empty request, must route back correctly
  requests.push({ query: requests[0].query, docs: docs(['another document', 'and one more']) }, { query: 'empty', docs: [] });
  const ce = await CrossEncoder.load(modelDir('tiny-bert-ce'), { batchSize: 3 });
  assert.ok(isMultiQueryScorer(ce), 'the server batcher must see scoreMany');
  const before = ce.counters.runs;
  const stats = new Costs();
  const many = await ce.scoreMany(requests, stats);
  const mergedRuns = ce.counters.runs - before;
  const pairs = requests.reduce((n, r) => n + r.docs.length, 0);
  assert.equal(mergedRuns, Math.ceil(pairs / 3), 'one model call per batch of 3 pairs, across queries');
  assert.equal(many.length, requests.length);
  const single = new Costs();
  for (let i = 0; i < requests.length; i++) {
    const one = await ce.score(requests[i].query, requests[i].docs, single);
    assert.equal(many[i].length, requests[i].docs.length);
    assertClose(many[i], one, 1e-5, `request ${i}`);
  }
  assert.equal(stats.get(TRUNCATED), single.get(TRUNCATED));
  await ce.close();
});
