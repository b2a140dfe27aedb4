import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ScoreCache } from '../../src/cascade/cache.js';
import { Threshold, TopK } from '../../src/cascade/cutoff.js';
import { Fusion } from '../../src/cascade/fusion.js';
import { Pipeline, chain } from '../../src/cascade/pipeline.js';
import { checkSpec, compileSpec } from '../../src/cascade/spec.js';
import { WinnowEnv } from '../../src/cascade/env.js';
import { registry } from '../../src/core/registry.js';
import { WinnowError } from '../../src/core/errors.js';
import { Costs } from '../../src/core/costs.js';
import type { StageDescription, TraceRow } from '../../src/core/stage.js';
import type { Doc, Hit, Query, Ranking } from '../../src/core/types.js';
import { Rerank } from '../../src/rerank/rerank.js';
import type { Scorer } from '../../src/rerank/scorer.js';
import { Retriever } from '../../src/retrieve/retriever.js';

/** A retriever over a fixed list that records how deep it was asked to go. */
class ListRetriever extends Retriever {
  static asked: number[] = [];
  constructor(
    readonly list: readonly [string, number][],
    k?: number,
    name = 'list',
  ) {
    super(name, k);
  }
  withK(k: number): ListRetriever {
    return new ListRetriever(this.list, k, this.name);
  }
  async retrieve(_q: Query, k: number): Promise<Hit[]> {
    ListRetriever.asked.push(k);
    return this.list.slice(0, k).map(([docId, score]) => ({ docId, score, scores: { [this.name]: score } }));
  }
  describe(): StageDescription {
    return { retrieve: this.name, k: this.k };
  }
}

/** Scores a document by the number in its text; counts the pairs it was sent. */
class NumberScorer implements Scorer {
  readonly kind = 'unbounded' as const;
  calls = 0;
  constructor(readonly id = 'num') {}
  async score(_q: string, docs: readonly Doc[]): Promise<Float32Array> {
    this.calls += docs.length;
    return Float32Array.from(docs.map((d) => Number(d.text)));
  }
}

const docs = new Map<string, Doc>(
  ['a', 'b', 'c', 'd', 'e'].map((id, i) => [id, { id, text: String([5, 1, 4, 2, 3][i]) }]),
);
const list: [string, number][] = [['a', 10], ['b', 9], ['c', 8], ['d', 7], ['e', 6]];
const q: Query = { id: 'q1', text: 'query' };

async function run(p: Pipeline, batch: Ranking[] = [{ query: q, hits: [] }], cache?: ScoreCache) {
  const rows: TraceRow[] = [];
  const { rankings: out } = await p.execute(batch, { docs, costs: new Costs(), cache }, { after: (_, row) => rows.push(row) });
  return { out, rows };
}

test('a cut-off right after a retriever is pushed into it', async () => {
  ListRetriever.asked = [];
  const p = Pipeline.of(new ListRetriever(list)).top(3).andThen(new Rerank(new NumberScorer())).top(2);
  assert.deepEqual(p.compile().map((s) => s.describe()), [{ retrieve: 'list', k: 3 }, { rerank: 'num', name: 'num' }, { top: 2 }]);
  const { out, rows } = await run(p);
  assert.deepEqual(ListRetriever.asked, [3]);
  assert.deepEqual(out[0].hits.map((h) => h.docId), ['a', 'c']);
  // each hit keeps the score every stage gave it
  assert.deepEqual(out[0].hits[0].scores, { list: 10, num: 5 });
  assert.equal(rows.length, 2);
  assert.deepEqual([rows[1].in, rows[1].out, rows[1].costs.pairs ?? 0], [3, 2, 3]);
  assert.equal(rows[1].stage, 'num → top(2)');
});

test('fluent and functional composition compile to the same stages', () => {
  const r = new ListRetriever(list);
  const s = new Rerank(new NumberScorer());
  const a = Pipeline.of(r).top(4).andThen(s).top(2);
  const b = chain(chain(r, new TopK(4)), s, new TopK(2));
  assert.deepEqual(a.describe(), b.describe());
});

test('a spec compiles to the same pipeline as the fluent API', async () => {
  const scorer = new NumberScorer();
  registry.defineRetriever('list', () => new ListRetriever(list), 'test: a fixed list');
  registry.defineScorer('num', () => scorer, 'test: the number in the text');
  const env = await WinnowEnv.create({});
  const spec = { stages: [{ retrieve: 'list', k: 4 }, { rerank: 'num' }, { top: 2 }] };
  const fromSpec = await compileSpec(spec, env);
  const fluent = Pipeline.of(new ListRetriever(list)).top(4).andThen(new Rerank(scorer)).top(2);
  assert.deepEqual(fromSpec.describe(), fluent.describe());
  const { out } = await run(fromSpec);
  assert.deepEqual(out[0].hits.map((h) => h.docId), ['a', 'c']);
});

test('bad specs fail with a message naming the place', async () => {
  const env = await WinnowEnv.create({});
  const bad: [unknown, RegExp][] = [
    [{ stages: [{ top: 0 }] }, /stages\[0\]\.top: expected a positive integer/],
    [{ stages: [{ top: 2, rerank: 'x' }] }, /exactly one of/],
    [{ stages: [{ frobnicate: 1 }] }, /exactly one of .*found frobnicate/],
    [{ stages: [{ rerankk: 'x' }] }, /found rerankk; did you mean "rerank"\?/],
    [{ stages: [{ top: 2, keep: 3 }] }, /unknown top option "keep"/],
    [{ stages: [{ retrieve: 'lst' }] }, /unknown retriever "lst"; did you mean "list"\?/],
    [{ stages: [{ top: 2 }], stagse: [] }, /unknown key "stagse"; did you mean "stages"\?/],
    [{ stages: [{ rrf: { of: [[{ retrieve: 'list' }]] } }] }, /at least two pipelines/],
    [{ stages: [{ linear: { weights: [1], of: [[{ retrieve: 'list' }], [{ retrieve: 'list' }]] } }] }, /2 pipelines but 1 weights/],
  ];
  for (const [spec, msg] of bad) {
    await assert.rejects(async () => compileSpec(checkSpec(spec, 'spec'), env), (e: unknown) => e instanceof WinnowError && e.code === 'bad_spec' && msg.test(e.message));
  }
});

test('ties break by document id, the same way whatever the input order', async () => {
  const tied: [string, number][] = [['b', 1], ['a', 1], ['c', 1]];
  const scorer: Scorer = { id: 'const', kind: 'unbounded', score: async (_q, d) => new Float32Array(d.length).fill(7) };
  for (const order of [tied, [...tied].reverse()]) {
    const { out } = await run(Pipeline.of(new ListRetriever(order)).andThen(new Rerank(scorer)));
    assert.deepEqual(out[0].hits.map((h) => h.docId), ['c', 'b', 'a']);
  }
});

test('threshold keeps hits whose calibrated score clears it, never fewer than minKeep', async () => {
  const p = Pipeline.of(new ListRetriever(list)).andThen(new Rerank(new NumberScorer()));
  const platt = { kind: 'platt' as const, a: 1, b: -3 }; // p >= 0.6 exactly when score >= 3.405
  assert.deepEqual((await run(p.threshold(0.6, platt))).out[0].hits.map((h) => h.docId), ['a', 'c']);
  assert.deepEqual((await run(p.threshold(0.99, platt, 1))).out[0].hits.map((h) => h.docId), ['a']);
  assert.equal((await run(p.threshold(100))).out[0].hits.length, 0);
  assert.throws(() => new Threshold(Number.NaN), WinnowError);
});

test('reciprocal rank fusion with configurable k, and linear fusion', async () => {
  const x = new ListRetriever([['a', 3], ['b', 2], ['c', 1]], undefined, 'x');
  const y = new ListRetriever([['c', 30], ['b', 20], ['d', 10]], undefined, 'y');
  const rrf = new Fusion('rrf', [x, y], { kind: 'rrf', k: 60 });
  const { out } = await run(Pipeline.of(rrf));
  const byId = Object.fromEntries(out[0].hits.map((h) => [h.docId, h.score]));
  assert.ok(Math.abs(byId.b - 2 / 62) < 1e-12);
  assert.ok(Math.abs(byId.a - 1 / 61) < 1e-12);
  assert.ok(Math.abs(byId.c - (1 / 63 + 1 / 61)) < 1e-12);
  assert.deepEqual(out[0].hits.map((h) => h.docId), ['c', 'b', 'a', 'd']);
  assert.deepEqual(out[0].hits[0].scores, { x: 1, y: 30, rrf: 1 / 63 + 1 / 61 });

  const lin = new Fusion('lin', [x, y], { kind: 'linear', weights: [1, 0.1], normalize: 'none' });
  const l = (await run(Pipeline.of(lin))).out[0].hits;
  assert.deepEqual(l.map((h) => [h.docId, Math.round(h.score * 100) / 100]), [['c', 4], ['b', 4], ['a', 3], ['d', 1]]);

  const mm = new Fusion('mm', [x, y], { kind: 'linear', weights: [0.5, 0.5], normalize: 'minmax' });
  const m = Object.fromEntries((await run(Pipeline.of(mm))).out[0].hits.map((h) => [h.docId, h.score]));
  assert.equal(m.c, 0.5);
  assert.equal(m.b, 0.5);

  const union = new Fusion('u', [x, y], { kind: 'union' });
  assert.deepEqual((await run(Pipeline.of(union))).out[0].hits.map((h) => h.docId).sort(), ['a', 'b', 'c', 'd']);
});

test('the score cache serves repeated pairs and is keyed by stage identity', async () => {
  const cache = new ScoreCache();
  const s1 = new NumberScorer('model-a@rev1');
  const p1 = Pipeline.of(new ListRetriever(list)).andThen(new Rerank(s1));
  await run(p1, undefined, cache);
  const { rows } = await run(p1, undefined, cache);
  assert.equal(s1.calls, 5);
  assert.deepEqual([rows[1].costs['cache.hits'], rows[1].costs['cache.misses'] ?? 0, rows[1].costs.pairs ?? 0], [5, 0, 0]);
  // another model (or revision) must not be served model-a's scores
  const s2 = new NumberScorer('model-a@rev2');
  await run(Pipeline.of(new ListRetriever(list)).andThen(new Rerank(s2)), undefined, cache);
  assert.equal(s2.calls, 5);
  // an edited document (same id, new text) is rescored
  const edited = new Map(docs);
  edited.set('a', { id: 'a', text: '0' });
  const out = await p1.run([{ query: q, hits: [] }], { docs: edited, costs: new Costs(), cache });
  assert.equal(s1.calls, 6);
  assert.equal(out[0].hits.at(-1)?.docId, 'a');
});

test('the score cache evicts least recently used entries by count and by bytes', () => {
  const c = new ScoreCache({ maxEntries: 2 });
  c.set('a', 1);
  c.set('b', 2);
  c.get('a');
  c.set('c', 3);
  assert.equal(c.get('b'), undefined);
  assert.equal(c.get('a'), 1);
  const small = new ScoreCache({ maxBytes: 1000 });
  for (let i = 0; i < 100; i++) small.set(`key-${i}`, i);
  assert.ok(small.approxBytes <= 1000);
  assert.ok(small.size > 0 && small.size < 100);
  assert.equal(small.get('key-99'), 99);
});

test('a reranker without document text fails clearly', async () => {
  const p = Pipeline.of(new ListRetriever([['zzz', 1]])).andThen(new Rerank(new NumberScorer()));
  await assert.rejects(run(p), (e: unknown) => e instanceof WinnowError && /no text for document "zzz"/.test(e.message));
});

test('the library can be imported dynamically: its namespace is not a thenable', async () => {
  const lib = (await import('../../src/index.js')) as Record<string, unknown>;
  assert.equal(typeof lib.Pipeline, 'function');
  assert.equal('then' in lib, false);
});
