import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { WinnowError } from '../../src/core/errors.js';
import type { Doc } from '../../src/core/types.js';
import { Bm25Index } from '../../src/retrieve/bm25/index.js';
import { Collection } from '../../src/retrieve/collection/collection.js';
import { collectionRetriever } from '../../src/retrieve/collection/env.js';
import { HybridRetriever } from '../../src/retrieve/collection/stages.js';
import { HashEmbedder, type Embedder } from '../../src/retrieve/dense/embedder.js';
import { Costs } from '../../src/core/costs.js';

const WORDS = (
  'protein cell gene cancer tumor virus vaccine immune receptor kinase mouse patient trial dose risk ' +
  'brain neuron memory sleep heart blood pressure insulin diabetes obesity diet exercise muscle bone ' +
  'bacteria antibiotic resistance infection lung smoke air water soil climate carbon plant seed root'
).split(' ');

/** A small deterministic corpus: Zipf-ish word choice from a seeded generator. */
function corpus(n: number, seed = 1, prefix = 'd'): Doc[] {
  let s = seed >>> 0;
  const rnd = (): number => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const docs: Doc[] = [];
  for (let i = 0; i < n; i++) {
    const len = 5 + Math.floor(rnd() * 40);
    const words: string[] = [];
    for (let j = 0; j < len; j++) words.push(WORDS[Math.floor(WORDS.length * rnd() ** 2)]);
    docs.push(i % 3 === 0 ? { id: `${prefix}${i}`, title: WORDS[i % WORDS.length], text: words.join(' ') } : { id: `${prefix}${i}`, text: words.join(' ') });
  }
  return docs;
}

const QUERIES = ['cancer tumor gene', 'sleep memory brain', 'insulin diabetes diet', 'virus vaccine immune response', 'carbon climate soil', 'bone'];

function tmpDir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `winnow-${tag}-`));
}

/** Scores of every hit of a fresh static index over `docs`, keyed by doc id. */
async function freshScores(docs: Doc[], q: string): Promise<Map<string, number>> {
  const index = await Bm25Index.build(docs, { progress: false });
  return new Map(index.search(q, docs.length).map((h) => [h.docId, h.score]));
}

async function assertBm25Exact(c: Collection, live: Map<string, Doc>): Promise<void> {
  assert.equal(c.size, live.size);
  for (const q of QUERIES) {
    const want = await freshScores([...live.values()], q);
    const got = c.searchBm25(q, live.size);
    assert.equal(got.length, want.size, `hit count for "${q}"`);
    for (const h of got) {
      const w = want.get(h.docId);
      assert.ok(w !== undefined, `${h.docId} should not match "${q}"`);
      assert.ok(Math.abs(w - h.score) <= 1e-5, `${h.docId} "${q}": ${h.score} vs fresh ${w}`);
    }
  }
}

test('add/update/delete keep BM25 scores equal to a fresh build over the live documents', async () => {
  const dir = tmpDir('bm25');
  const c = Collection.create(dir, { segmentDocs: 70, maxSegments: 4 });
  const live = new Map<string, Doc>();
  const first = corpus(200);
  await c.add(first, { progress: false });
  for (const d of first) live.set(d.id, d);
  assert.equal(c.segmentCount, 3);
  await assertBm25Exact(c, live);

  const more = corpus(150, 7, 'e');
  const r = await c.add(more, { progress: false });
  for (const d of more) live.set(d.id, d);
  assert.equal(r.added, 150);
  assert.ok(r.merged > 0, 'more than maxSegments segments are merged');
  assert.ok(c.segmentCount <= 4);
  await assertBm25Exact(c, live);

  const changed = corpus(30, 99, 'x').map((d, i) => ({ ...d, id: `d${i * 5}` }));
  const u = await c.update(changed);
  assert.equal(u.replaced, 30);
  for (const d of changed) live.set(d.id, d);
  await assertBm25Exact(c, live);

  const gone = ['d1', 'd2', 'e10', 'e11', 'nope'];
  const del = await c.delete(gone);
  assert.equal(del.deleted, 4);
  assert.deepEqual(del.missing, ['nope']);
  for (const id of gone) live.delete(id);
  await assertBm25Exact(c, live);
  assert.equal(c.get('d1'), undefined);
  assert.deepEqual(c.get('d5'), live.get('d5'));

  // A reopened collection sees the same generation and scores.
  c.close();
  const again = Collection.open(dir);
  assert.equal(again.generation, c.generation);
  await assertBm25Exact(again, live);
  // Garbage collection left only files the manifest names.
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as { files: Record<string, unknown> };
  const extra = fs.readdirSync(dir).filter((f) => f !== 'manifest.json' && f !== 'verified.json' && !(f in manifest.files));
  assert.deepEqual(extra, []);
  again.close();
});

test('duplicate ids are rejected, or replaced with upsert; empty documents error or are skipped', async () => {
  const dir = tmpDir('dup');
  const c = Collection.create(dir);
  await c.add(corpus(20), { progress: false });
  const gen = c.generation;
  await assert.rejects(c.add([{ id: 'new1', text: 'fresh words' }, { id: 'd3', text: 'dup' }], { progress: false }), (e: WinnowError) => {
    assert.equal(e.code, 'bad_input');
    assert.match(e.message, /duplicate document id "d3"/);
    return true;
  });
  assert.equal(c.generation, gen, 'a rejected write commits nothing');
  assert.equal(c.has('new1'), false);
  await assert.rejects(c.add([{ id: 'a', text: 'x' }, { id: 'a', text: 'y' }], { progress: false }), /duplicate document id "a"/);

  const r = await c.add([{ id: 'd3', text: 'replacement sleep' }, { id: 'z', text: 'z one' }, { id: 'z', text: 'z two' }], { upsert: true, progress: false });
  assert.equal(r.replaced, 2);
  assert.equal(r.added, 1);
  assert.equal(c.get('d3')?.text, 'replacement sleep');
  assert.equal(c.get('z')?.text, 'z two');
  assert.equal(c.size, 21);

  await assert.rejects(c.add([{ id: 'e', text: '  ' }], { progress: false }), /has no title and no text/);
  await assert.rejects(c.add([{ id: 'e' } as unknown as Doc], { progress: false }), /has no string "text"/);
  const s = await c.add([{ id: 'e', text: '' }, { id: 'f', text: 'ok words' }], { skipEmpty: true, progress: false });
  assert.equal(s.skippedEmpty, 1);
  assert.equal(s.added, 1);
  await assert.rejects(c.update([{ id: 'missing', text: 'x' }]), /cannot update document "missing"/);
  c.close();
});

test('ids across segments of one write and of the committed ones: upsert finds a copy already flushed, lookups survive reopening', async () => {
  const dir = tmpDir('ids');
  const c = Collection.create(dir, { segmentDocs: 3 });
  await c.add(corpus(7), { progress: false });
  // 'x' lands in this write's first segment, which is flushed before its second copy arrives
  const docs: Doc[] = [{ id: 'x', text: 'first x' }, { id: 'd1', text: 'new d1' }, { id: 'y', text: 'y' }, { id: 'z', text: 'z' }, { id: 'x', text: 'second x' }, { id: 'ünï', text: 'unicode id' }];
  const r = await c.add(docs, { upsert: true, progress: false });
  assert.deepEqual([r.added, r.replaced], [4, 2]);
  await assert.rejects(c.add([{ id: 'd6', text: 'again' }], { progress: false }), /duplicate document id "d6"/);
  c.close();
  const again = Collection.open(dir);
  assert.equal(again.size, 11);
  assert.deepEqual(['x', 'd1', 'ünï', 'd6', 'd0'].map((id) => again.get(id)?.text.slice(0, 8)), ['second x', 'new d1', 'unicode ', ...['d6', 'd0'].map((id) => corpus(7).find((d) => d.id === id)!.text.slice(0, 8))]);
  assert.equal(again.has('un'), false);
  assert.equal(again.get('d7'), undefined);
  const del = await again.delete(['x', 'nope']);
  assert.deepEqual([del.deleted, del.missing], [1, ['nope']]);
  assert.equal(again.has('x'), false);
  again.close();
});

test('a truncated or tampered file is reported as corrupt, naming the file', async () => {
  const dir = tmpDir('corrupt');
  const c = Collection.create(dir, { embedder: new HashEmbedder(16) });
  await c.add(corpus(50), { progress: false });
  c.close();
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as { files: Record<string, unknown> };
  const vec = Object.keys(manifest.files).find((f) => f.endsWith('.vec'))!;
  const docs = Object.keys(manifest.files).find((f) => f.endsWith('.docs'))!;
  const embedder = new HashEmbedder(16);

  const vecPath = path.join(dir, vec);
  const original = fs.readFileSync(vecPath);
  fs.writeFileSync(vecPath, original.subarray(0, original.length - 10));
  assert.throws(() => Collection.open(dir, { embedder }), (e: WinnowError) => e.code === 'corrupt_index' && e.message.includes(vec) && /truncated/.test(e.message));
  fs.writeFileSync(vecPath, original);
  Collection.open(dir, { embedder }).close();

  const docsPath = path.join(dir, docs);
  const text = fs.readFileSync(docsPath);
  const tampered = Buffer.from(text);
  tampered[5] ^= 1;
  fs.writeFileSync(docsPath, tampered);
  assert.throws(() => Collection.open(dir, { embedder }), (e: WinnowError) => e.code === 'corrupt_index' && e.message.includes(docs) && /checksum/.test(e.message));
  fs.writeFileSync(docsPath, text);
  Collection.open(dir, { embedder }).close();
});

test('a collection refuses another model (both names) and vectors of the wrong dimension', async () => {
  const dir = tmpDir('model');
  const c = Collection.create(dir, { embedder: new HashEmbedder(16) });
  await c.add(corpus(10), { progress: false });
  c.close();
  assert.throws(
    () => Collection.open(dir, { embedder: new HashEmbedder(16, 3) }),
    (e: WinnowError) => e.code === 'version_mismatch' && e.message.includes('hash-bow(dim=16,seed=0)') && e.message.includes('hash-bow(dim=16,seed=3)'),
  );
  const opened = Collection.open(dir, { embedder: new HashEmbedder(16) });
  assert.throws(() => opened.searchVector(new Float32Array(8), 5), /dimension 8, the collection stores vectors of dimension 16/);
  // An embedder that claims dimension 16 but returns 12 numbers per document.
  const liar: Embedder = {
    id: 'hash-bow(dim=16,seed=0)',
    dim: 16,
    embedDocs: async (docs) => docs.map(() => new Float32Array(12)),
    embedQuery: async () => new Float32Array(16),
  };
  const withLiar = Collection.open(dir, { embedder: liar });
  await assert.rejects(withLiar.add([{ id: 'n', text: 'sleep' }], { progress: false }), /dimension 12, the collection stores vectors of dimension 16/);
  assert.equal(Collection.open(dir).size, 10);
  opened.close();
  withLiar.close();
});

test('the ANN graph finds added documents and never returns deleted ones', async () => {
  const dir = tmpDir('ann');
  const embedder = new HashEmbedder(32);
  // exactBelow 0: the graph is used even for a small collection.
  const c = Collection.create(dir, { embedder, ann: { exactBelow: 0, m: 8, efConstruction: 64, efSearch: 64 } });
  const docs = corpus(300);
  await c.add(docs, { progress: false });
  assert.ok(c.usesAnn);
  const exact = Collection.create(tmpDir('exact'), { embedder });
  await exact.add(docs, { progress: false });
  assert.equal(exact.usesAnn, false);
  let overlap = 0;
  for (const q of QUERIES) {
    const a = new Set((await c.searchDense(q, 10)).map((h) => h.docId));
    for (const h of await exact.searchDense(q, 10)) if (a.has(h.docId)) overlap++;
  }
  assert.ok(overlap / (10 * QUERIES.length) >= 0.9, `recall@10 vs exact ${overlap / (10 * QUERIES.length)}`);

  await c.add([{ id: 'needle', text: 'zebrafish quasar' }], { progress: false });
  const found = await c.searchDense('zebrafish quasar', 3);
  assert.equal(found[0].docId, 'needle');
  assert.ok(found[0].score > 0.99);

  const top = (await c.searchDense('cancer tumor gene', 20)).map((h) => h.docId);
  await c.delete([...top.slice(0, 10), 'needle']);
  for (const q of [...QUERIES, 'zebrafish quasar']) {
    const hits = await c.searchDense(q, 50);
    assert.equal(hits.length, 50);
    for (const h of hits) assert.ok(!top.slice(0, 10).includes(h.docId) && h.docId !== 'needle', `${h.docId} was deleted`);
  }
  // Reopened from disk: the graph of the new generation, same answers.
  const before = await c.searchDense('sleep memory', 10);
  c.close();
  const again = Collection.open(dir, { embedder });
  assert.deepEqual(await again.searchDense('sleep memory', 10), before);
  again.close();
  exact.close();
});

test('hybrid RRF and union fuse BM25 and dense through the Fusion stage', async () => {
  const dir = tmpDir('hybrid');
  const c = Collection.create(dir, { embedder: new HashEmbedder(32) });
  await c.add(corpus(120), { progress: false });
  const query = { id: 'q1', text: 'insulin diabetes diet' };
  const ctx = { costs: new Costs() };
  const bm25 = collectionRetriever(c, 'bm25', {}, 'test')!.withK(20);
  const dense = collectionRetriever(c, 'dense', {}, 'test')!.withK(20);
  const b = await bm25.retrieve(query, 20, ctx);
  const d = await dense.retrieve(query, 20, ctx);

  const rrf = new HybridRetriever(c, 10, { rrfK: 60 });
  const hits = await rrf.retrieve(query, 10, ctx);
  assert.equal(hits.length, 10);
  const expected = new Map<string, number>();
  b.forEach((h, r) => expected.set(h.docId, (expected.get(h.docId) ?? 0) + 1 / (60 + r + 1)));
  d.forEach((h, r) => expected.set(h.docId, (expected.get(h.docId) ?? 0) + 1 / (60 + r + 1)));
  const ranked = [...expected].sort((x, y) => y[1] - x[1] || (x[0] > y[0] ? -1 : 1));
  // RRF with k=10 per list sees only the top 10 of each; recompute with the hybrid's depths.
  const rrf20 = new HybridRetriever(c, 10, { rrfK: 60, bm25K: 20, denseK: 20 });
  const hits20 = await rrf20.retrieve(query, 10, ctx);
  assert.deepEqual(hits20.map((h) => h.docId), ranked.slice(0, 10).map((x) => x[0]));
  for (const h of hits20) assert.ok(Math.abs(h.score - expected.get(h.docId)!) < 1e-12);
  assert.ok('bm25' in hits20[0].scores || 'dense' in hits20[0].scores);

  const union = new HybridRetriever(c, 40, { method: 'union', bm25K: 20, denseK: 20 });
  const u = await union.retrieve(query, 40, ctx);
  const all = new Set([...b, ...d].map((h) => h.docId));
  assert.equal(u.length, all.size);
  assert.deepEqual(new Set(u.map((h) => h.docId)), all);
  assert.match(JSON.stringify(rrf.describe()), /"k":60/);
  c.close();
});
