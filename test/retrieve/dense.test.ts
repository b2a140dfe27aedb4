import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { AnnIndex, DEFAULT_ANN_PARAMS } from '../../src/retrieve/dense/ann.js';
import { HashEmbedder, normalizeRows, toMatrix } from '../../src/retrieve/dense/embedder.js';
import { exactSearch } from '../../src/retrieve/dense/exact.js';
import { loadEmbedder } from '../../src/retrieve/dense/load.js';
import { Collection } from '../../src/retrieve/collection/collection.js';

function randomUnit(n: number, dim: number, seed: number): Float32Array {
  let s = seed;
  const rnd = (): number => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) - 0.5;
  const m = new Float32Array(n * dim);
  for (let i = 0; i < m.length; i++) m[i] = rnd();
  return normalizeRows(m, dim);
}

test('exact search returns the true top k, best first, skipping excluded rows', () => {
  const dim = 24;
  const m = randomUnit(500, dim, 3);
  const q = randomUnit(1, dim, 9);
  const naive = Array.from({ length: 500 }, (_, r) => {
    let s = 0;
    for (let j = 0; j < dim; j++) s += m[r * dim + j] * q[j];
    return { r, s };
  }).sort((a, b) => b.s - a.s);
  const got = exactSearch(m, dim, q, 10);
  assert.deepEqual([...got.rows], naive.slice(0, 10).map((x) => x.r));
  for (let i = 1; i < got.scores.length; i++) assert.ok(got.scores[i - 1] >= got.scores[i]);
  const skip = new Set(naive.slice(0, 3).map((x) => x.r));
  const skipped = exactSearch(m, dim, q, 5, (r) => skip.has(r));
  assert.deepEqual([...skipped.rows], naive.slice(3, 8).map((x) => x.r));
  assert.equal(exactSearch(m, dim, q, 0).rows.length, 0);
  assert.equal(exactSearch(m, dim, q, 9999).rows.length, 500);
});

test('the HNSW index reaches high recall against exact search and survives save/load', () => {
  const dim = 32;
  const n = 3000;
  const data = randomUnit(n, dim, 5);
  const params = { ...DEFAULT_ANN_PARAMS, efSearch: 128, quantization: 'f32' as const };
  const ann = AnnIndex.create(dim, params);
  ann.add(BigUint64Array.from({ length: n }, (_, i) => BigInt(i)), data);
  assert.equal(ann.size, n);
  let hit = 0;
  const queries = randomUnit(50, dim, 11);
  for (let q = 0; q < 50; q++) {
    const qv = queries.subarray(q * dim, (q + 1) * dim);
    const truth = new Set(exactSearch(data, dim, qv, 10).rows);
    const found = ann.search(qv, 10);
    for (const k of found.keys) if (truth.has(Number(k))) hit++;
    // Scores are inner products, higher first.
    for (let i = 1; i < found.scores.length; i++) assert.ok(found.scores[i - 1] >= found.scores[i] - 1e-6);
  }
  assert.ok(hit / 500 >= 0.95, `recall@10 ${hit / 500}`);
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'winnow-ann-')), 'g.usearch');
  ann.save(file);
  const loaded = AnnIndex.load(file, dim, params);
  const qv = queries.subarray(0, dim);
  assert.deepEqual(loaded.search(qv, 10).keys, ann.search(qv, 10).keys);
  ann.remove(BigUint64Array.from(ann.search(qv, 3).keys));
  assert.equal(ann.search(qv, 10).keys.includes(loaded.search(qv, 1).keys[0]), false);
  fs.writeFileSync(file, 'not a graph');
  assert.throws(() => AnnIndex.load(file, dim, params), (e: Error & { code?: string }) => e.code === 'corrupt_index' && e.message.includes(file));
});

test('the hash embedder is deterministic, unit length, and shapes are checked', async () => {
  const e = new HashEmbedder(16);
  const a = await e.embedQuery('sleep and memory');
  assert.deepEqual(a, await e.embedQuery('sleep and memory'));
  assert.ok(Math.abs(a.reduce((s, x) => s + x * x, 0) - 1) < 1e-5);
  const docs = await e.embedDocs([{ id: '1', text: 'sleep memory' }, { id: '2', text: 'bone' }]);
  assert.equal(docs.length, 32);
  assert.throws(() => toMatrix(new Float32Array(30), 2, 16, 'm'), /30 numbers for 2 documents/);
  assert.throws(() => toMatrix([new Float32Array(16), new Float32Array(15)], 2, 16, 'm'), /dimension 15/);
});

const TINY_BI = path.resolve('test/fixtures/models/tiny-bert-bi');

test('the tiny bi-encoder fixture builds a dense collection and another model is refused', { skip: !fs.existsSync(TINY_BI) && 'tiny bi-encoder fixture missing' }, async () => {
  const model = await loadEmbedder(TINY_BI);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'winnow-tiny-'));
  const c = Collection.create(dir, { embedder: model, modelRef: TINY_BI });
  await c.add(
    [
      { id: 'a', text: 'the cat sat on the mat' },
      { id: 'b', text: 'stock markets fell sharply today' },
      { id: 'c', title: 'Cats', text: 'cats purr when content' },
    ],
    { progress: false },
  );
  const hits = await c.searchDense('the cat sat on the mat', 3);
  assert.equal(hits[0].docId, 'a');
  assert.ok(hits[0].score > 0.99);
  c.close();
  assert.throws(() => Collection.open(dir, { embedder: new HashEmbedder(model.dim) }), (e: Error) => e.message.includes(model.id) && e.message.includes('hash-bow'));
});
