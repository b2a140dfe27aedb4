import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WinnowError } from '../../src/core/errors.js';
import type { Doc } from '../../src/core/types.js';
import { Bm25Index } from '../../src/retrieve/bm25/index.js';
import { quantizeLength } from '../../src/retrieve/bm25/similarity.js';

const plain = { stem: false, stopWords: false, lossyNorms: false, progress: false };

const TINY: Doc[] = [
  { id: 'd1', text: 'apple banana apple' },
  { id: 'd2', text: 'banana cherry' },
  { id: 'd3', text: 'cherry cherry cherry date' },
];

test('scores match Lucene BM25 computed by hand (N=3, avgdl=3, k1=0.9, b=0.4)', async () => {
  const index = await Bm25Index.build(TINY, plain);
  assert.equal(index.size, 3);
  assert.equal(index.avgdl, 3);
  const idf1 = Math.log(1 + (3 - 1 + 0.5) / (1 + 0.5)); // df = 1
  const idf2 = Math.log(1 + (3 - 2 + 0.5) / (2 + 0.5)); // df = 2
  const apple = index.search('apple', 10);
  assert.deepEqual(apple.map((h) => h.docId), ['d1']);
  assert.ok(Math.abs(apple[0].score - idf1 * (2 / (2 + 0.9))) < 1e-6);
  assert.deepEqual(apple[0].scores, { bm25: apple[0].score });

  const hits = index.search('banana cherry', 10);
  const expected: Record<string, number> = {
    d2: 2 * idf2 * (1 / (1 + 0.9 * (0.6 + (0.4 * 2) / 3))),
    d3: idf2 * (3 / (3 + 0.9 * (0.6 + (0.4 * 4) / 3))),
    d1: idf2 * (1 / (1 + 0.9)),
  };
  assert.deepEqual(hits.map((h) => h.docId), ['d2', 'd3', 'd1']);
  for (const h of hits) assert.ok(Math.abs(h.score - expected[h.docId]) < 1e-6, `${h.docId}: ${h.score} vs ${expected[h.docId]}`);
  // Hand values, so a wrong formula cannot agree with itself.
  assert.ok(Math.abs(expected.d2 - 0.528094) < 1e-6);
});

test('k1 and b are configurable', async () => {
  const index = await Bm25Index.build(TINY, { ...plain, params: { k1: 1.2, b: 0.75 } });
  assert.deepEqual(index.params, { k1: 1.2, b: 0.75 });
  const idf1 = Math.log(1 + 2.5 / 1.5);
  const [hit] = index.search('apple', 1);
  assert.ok(Math.abs(hit.score - idf1 * (2 / (2 + 1.2))) < 1e-6);
  await assert.rejects(Bm25Index.build(TINY, { params: { b: 2 } }), (e: unknown) => e instanceof WinnowError && e.code === 'bad_input');
});

test('equal scores go to the earlier-indexed document, for small and large k', async () => {
  const docs: Doc[] = [];
  for (let i = 0; i < 40; i++) docs.push({ id: `z${39 - i}`, text: i % 2 === 0 ? 'same words here' : 'other text' });
  const index = await Bm25Index.build(docs, plain);
  const expectedOrder = docs.filter((_, i) => i % 2 === 0).map((d) => d.id);
  assert.deepEqual(index.search('same', 3).map((h) => h.docId), expectedOrder.slice(0, 3)); // heap path
  assert.deepEqual(index.search('same', 15).map((h) => h.docId), expectedOrder.slice(0, 15)); // partial-sort path
  assert.deepEqual(index.search('same', 100).map((h) => h.docId), expectedOrder);
});

test('top-k agrees with a full sort on random scores', async () => {
  let seed = 7;
  const rand = (): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const vocab = ['alpha', 'beta', 'gamma', 'delta', 'eps', 'zeta', 'eta', 'theta'];
  const docs: Doc[] = [];
  for (let i = 0; i < 500; i++) {
    const n = 1 + Math.floor(rand() * 30);
    docs.push({ id: `doc${i}`, text: Array.from({ length: n }, () => vocab[Math.floor(rand() * vocab.length)]).join(' ') });
  }
  const index = await Bm25Index.build(docs, plain);
  for (const q of ['alpha', 'alpha beta', 'gamma delta eps zeta']) {
    const all = index.search(q, 10_000);
    const order = all.map((h, i) => ({ h, i }));
    for (const k of [1, 5, 40, 100, 300, 499]) {
      const top = index.search(q, k);
      assert.deepEqual(top, all.slice(0, k), `${q} k=${k}`);
    }
    for (let i = 1; i < order.length; i++) assert.ok(all[i - 1].score >= all[i].score);
  }
});

test('rare terms (sparse accumulation) select the same top-k as a full ranking', async () => {
  const docs: Doc[] = [];
  for (let i = 0; i < 400; i++) {
    // 'rare' in 24 docs (< N/8), with 4 distinct lengths so scores repeat: ties at every k.
    const text = i % 17 === 0 ? `rare ${'filler '.repeat(i % 4)}` : `common words number ${i % 5}`;
    docs.push({ id: `r${i}`, text });
  }
  const index = await Bm25Index.build(docs, plain);
  const all = index.search('rare', 1000);
  assert.equal(all.length, 24);
  for (let i = 1; i < all.length; i++) {
    const a = all[i - 1];
    const b = all[i];
    assert.ok(a.score > b.score || (a.score === b.score && Number(a.docId.slice(1)) < Number(b.docId.slice(1))));
  }
  for (const k of [1, 2, 3, 5, 10, 23, 24]) assert.deepEqual(index.search('rare', k), all.slice(0, k), `k=${k}`);
});

test('a repeated query term counts twice, like two BooleanQuery clauses', async () => {
  const index = await Bm25Index.build(TINY, plain);
  const once = index.search('cherry', 10);
  const twice = index.search('cherry cherry', 10);
  assert.deepEqual(twice.map((h) => h.docId), once.map((h) => h.docId));
  for (let i = 0; i < once.length; i++) assert.equal(twice[i].score, 2 * once[i].score);
});

test('scoreDocs equals search scores for indexed docs and scores unseen docs', async () => {
  const index = await Bm25Index.build(TINY, { progress: false });
  for (const q of ['banana cherry', 'apple apple date', 'cherry']) {
    const hits = index.search(q, 10);
    const byId = new Map(TINY.map((d) => [d.id, d]));
    const scores = index.scoreDocs(q, hits.map((h) => byId.get(h.docId)!));
    hits.forEach((h, i) => assert.equal(scores[i], h.score, `${q} ${h.docId}`));
  }
  const fresh = index.scoreDocs('banana kiwi', [{ id: 'new', title: 'Banana', text: 'kiwi' }, { id: 'x', text: '' }]);
  assert.ok(fresh[0] > 0);
  assert.equal(fresh[1], 0);
});

test('empty documents are indexed and counted but never match', async () => {
  const index = await Bm25Index.build(
    [...TINY, { id: 'e1', text: '' }, { id: 'e2', title: 'the', text: 'of and' }],
    { progress: false },
  );
  assert.equal(index.size, 5);
  assert.equal(index.emptyDocs, 2);
  assert.equal(index.docCount, 3);
  assert.ok(index.has('e1'));
  assert.ok(!index.has('nope'));
  assert.deepEqual(index.search('the of', 10), []);
  assert.deepEqual(index.search('', 10), []);
  assert.deepEqual(index.search('apple', 0), []);
});

test('duplicate document ids are rejected, naming the id', async () => {
  async function* docs(): AsyncGenerator<Doc> {
    yield { id: 'a', text: 'x' };
    yield { id: 'b', text: 'y' };
    yield { id: 'a', text: 'z' };
  }
  await assert.rejects(Bm25Index.build(docs(), { progress: false }), (e: unknown) => {
    assert.ok(e instanceof WinnowError);
    assert.equal(e.code, 'bad_input');
    assert.match(e.message, /duplicate document id "a"/);
    assert.match(e.message, /#1 and #3/);
    return true;
  });
});

test('stage name keys the per-stage scores', async () => {
  const index = await Bm25Index.build(TINY, plain);
  const [hit] = index.search('apple', 1, 'first');
  assert.deepEqual(hit.scores, { first: hit.score });
});

test('quantizeLength matches Lucene SmallFloat.byte4ToInt(intToByte4(n))', () => {
  // Exact up to 39, then n - 24 keeps 4 significant bits (derived by hand from SmallFloat).
  assert.deepEqual([0, 1, 23, 24, 31, 32, 33, 40, 41, 100, 161, 1000].map(quantizeLength), [0, 1, 23, 24, 31, 32, 33, 40, 40, 96, 152, 984]);
});
