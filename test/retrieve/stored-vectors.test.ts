import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { WinnowEnv } from '../../src/cascade/env.js';
import { compileSpec } from '../../src/cascade/spec.js';
import { Costs, STORED_PAIRS, PAIRS } from '../../src/core/costs.js';
import { WinnowError } from '../../src/core/errors.js';
import type { Doc, Query } from '../../src/core/types.js';
import { scorePools } from '../../src/eval/tune/pool.js';
import type { Qrels } from '../../src/eval/metrics.js';
import { BiEncoder } from '../../src/rerank/bi-encoder.js';
import { Rerank } from '../../src/rerank/rerank.js';
import { StoredVectorScorer } from '../../src/rerank/stored-vectors.js';
import { Collection, repairCollection } from '../../src/retrieve/collection/collection.js';
import { assertClose, expected, modelDir } from '../models/fixtures.js';
import { winnow, assertCleanFailure } from '../cli/run.js';

const MODEL = modelDir('tiny-bert-bi');
const TEXTS = expected['tiny-bert-bi'].texts as string[];
const WORDS = ['alpha', 'beta', 'gamma', 'delta', 'river', 'stone', 'light', 'paper', 'cloud', 'engine'];

/** Documents built from the fixture model's texts plus filler words, so BM25 finds candidates. */
function corpus(n: number, prefix = 'd'): Doc[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `${prefix}${i}`,
    text: `${TEXTS[i % TEXTS.length]} ${WORDS[i % WORDS.length]} ${WORDS[(i * 7 + 3) % WORDS.length]} ${WORDS[(i * 3 + 1) % WORDS.length]}`,
  }));
}

const QUERIES: Query[] = [
  { id: 'q1', text: 'alpha river' },
  { id: 'q2', text: `${TEXTS[0]} stone` },
  { id: 'q3', text: 'cloud engine paper' },
];

function tmpDir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `winnow-${tag}-`));
}

async function collectionWithModel(docs: Doc[], opts: { segmentDocs?: number; maxSegments?: number } = {}): Promise<{ dir: string; root: string }> {
  const root = tmpDir('stored');
  const dir = path.join(root, 'c');
  const c = Collection.create(dir, { segmentDocs: opts.segmentDocs ?? 25, maxSegments: opts.maxSegments });
  await c.add(docs, { progress: false });
  await c.addModel(await BiEncoder.load(MODEL), MODEL, { progress: false });
  c.close();
  return { dir, root };
}

const SPEC = { stages: [{ retrieve: 'bm25', k: 40 }, { rerank: MODEL, name: 'bi' }] };

/** Runs the spec over the collection; returns per query the hits' bi-encoder scores, the stage's scorer and its costs. */
async function runOver(dir: string, spec: object = SPEC) {
  const env = await WinnowEnv.create({ collection: dir });
  try {
    const pipeline = await compileSpec(spec as never, env);
    const stage = pipeline.compile().find((s): s is Rerank => s instanceof Rerank)!;
    // The model's session is shared in the process: count what this run adds.
    const model = stage.scorer instanceof StoredVectorScorer ? stage.scorer.model : (stage.scorer as BiEncoder);
    const before = { sequences: model.counters.sequences, misses: model.cache.misses };
    const costs: Record<string, number>[] = [];
    const { rankings } = await pipeline.execute(
      QUERIES.map((query) => ({ query, hits: [] })),
      { docs: env.lookup, costs: new Costs() },
      { after: (_, row) => costs.push(row.costs) },
    );
    const docs = rankings.map((r) => r.hits.map((h) => env.lookup.get(h.docId) as Doc));
    const work = { sequences: model.counters.sequences - before.sequences, misses: model.cache.misses - before.misses };
    return { rankings, docs, scorer: stage.scorer, stageCosts: costs[costs.length - 1], work };
  } finally {
    await env.close();
  }
}

/** What the bi-encoder gives when it embeds the documents itself. */
async function onTheFly(rankings: { query: Query; hits: { docId: string }[] }[], docs: Doc[][]): Promise<Float32Array[]> {
  const bi = await BiEncoder.load(MODEL);
  try {
    return await Promise.all(rankings.map((r, i) => bi.score(r.query.text, docs[i])));
  } finally {
    await bi.close();
  }
}

async function assertSameAsOnTheFly(dir: string): Promise<void> {
  const { rankings, docs, scorer } = await runOver(dir);
  assert.ok(scorer instanceof StoredVectorScorer, 'the stage reads stored vectors');
  const want = await onTheFly(rankings, docs);
  rankings.forEach((r, i) => assertClose(Float32Array.from(r.hits, (h) => h.scores.bi), want[i], 1e-5, `query ${r.query.id}`));
}

test('add-model: a bi-encoder stage over stored vectors gives the on-the-fly scores and embeds no document', async () => {
  const { dir, root } = await collectionWithModel(corpus(60));
  try {
    const { rankings, docs, scorer, stageCosts, work } = await runOver(dir);
    assert.ok(scorer instanceof StoredVectorScorer);
    const s = scorer as StoredVectorScorer;
    const pairs = rankings.reduce((n, r) => n + r.hits.length, 0);
    assert.ok(pairs >= 30, `enough candidates (${pairs})`);
    // The document encoder was never called: the model ran one sequence per query, nothing else.
    assert.equal(work.sequences, QUERIES.length);
    assert.equal(work.misses, 0);
    assert.equal(s.embedded, 0);
    assert.equal(s.stored, pairs);
    assert.equal(stageCosts[STORED_PAIRS], pairs);
    assert.equal(stageCosts[PAIRS] ?? 0, 0);
    const want = await onTheFly(rankings, docs);
    rankings.forEach((r, i) => {
      assertClose(Float32Array.from(r.hits, (h) => h.scores.bi), want[i], 1e-5, `query ${r.query.id}`);
      for (let j = 1; j < r.hits.length; j++) assert.ok(r.hits[j - 1].score >= r.hits[j].score, 'sorted by the stored-vector score');
    });
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('a stage with another model (different settings, so another id) falls back to embedding', async () => {
  const { dir, root } = await collectionWithModel(corpus(40));
  try {
    const spec = { stages: [{ retrieve: 'bm25', k: 20 }, { rerank: MODEL, name: 'bi', maxLength: 16 }] };
    const { rankings, scorer, work } = await runOver(dir, spec);
    assert.ok(scorer instanceof BiEncoder, 'not served from stored vectors');
    const distinct = new Set(rankings.flatMap((r) => r.hits.map((h) => h.docId))).size;
    assert.equal(work.misses, distinct, 'every candidate document was embedded once');
    assert.equal(work.sequences, QUERIES.length + distinct);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('a damaged vector file is refused on open, naming it; --verify names it too', async () => {
  const { dir, root } = await collectionWithModel(corpus(30));
  try {
    const vec = fs.readdirSync(dir).find((f) => /\.m-[0-9a-f]{8}\.vec$/.test(f))!;
    assert.ok(vec, 'an added-model vector file exists');
    const file = path.join(dir, vec);
    const bytes = fs.readFileSync(file);
    bytes[17] ^= 0x40;
    fs.writeFileSync(file, bytes);
    assert.throws(
      () => Collection.open(dir),
      (e: unknown) => e instanceof WinnowError && e.code === 'corrupt_index' && e.message.includes(vec),
    );
    const r = winnow(['index', dir, '--verify']);
    assertCleanFailure(r, r.code, new RegExp(vec.replace(/\./g, '\\.')));
    assert.notEqual(r.code, 0);
    // --repair leaves the damaged vectors out (the other segment keeps its own) and says so
    const report = repairCollection(dir);
    assert.ok(report.skipped.some((s) => s.file === vec.replace(/\.vec$/, '.vseal') && /sha256/.test(s.reason)), JSON.stringify(report.skipped));
    const c = Collection.open(dir);
    assert.equal(c.size, 30);
    c.close();
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('writes after add-model embed with the model; a merge keeps the vectors', async () => {
  const root = tmpDir('stored-merge');
  const dir = path.join(root, 'c');
  try {
    const c = Collection.create(dir, { segmentDocs: 10, maxSegments: 2 });
    await c.add(corpus(20), { progress: false });
    const bi = await BiEncoder.load(MODEL);
    await c.addModel(bi, MODEL, { progress: false });
    assert.equal(c.segmentCount, 2);
    // another 10 documents: a third segment, merged back to two
    await c.add(corpus(10, 'e'), { progress: false });
    assert.equal(c.segmentCount, 2);
    const v = c.storedVectors(bi.id)!;
    assert.ok(v);
    const ids = [...c.docIds()];
    assert.equal(ids.length, 30);
    const seg = new Int32Array(ids.length);
    const row = new Int32Array(ids.length);
    assert.equal(v.locate(ids, seg, row), 30, 'every document, merged or new, has a stored vector');
    c.close();
    await assertSameAsOnTheFly(dir);
    // without the model at hand, adding documents is refused with a clear message
    const bare = Collection.open(dir);
    await assert.rejects(bare.add(corpus(1, 'f'), { progress: false }), (e: unknown) => e instanceof WinnowError && /added with --add-model/.test(e.message));
    bare.close();
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('--repair after a lost manifest keeps the added vectors', async () => {
  const { dir, root } = await collectionWithModel(corpus(50));
  try {
    fs.rmSync(path.join(dir, 'manifest.json'));
    const r = winnow(['index', dir, '--repair']);
    assert.equal(r.code, 0, r.stderr);
    const c = Collection.open(dir);
    assert.equal(c.storedModels.length, 1);
    c.close();
    await assertSameAsOnTheFly(dir);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('CLI: index --add-model stores the vectors and --info lists them; a second add of the same model is refused', async () => {
  const root = tmpDir('stored-cli');
  const dir = path.join(root, 'c');
  const corpusFile = path.join(root, 'corpus.jsonl');
  try {
    fs.writeFileSync(corpusFile, corpus(30).map((d) => JSON.stringify({ _id: d.id, text: d.text })).join('\n') + '\n');
    assert.equal(winnow(['index', dir, '--corpus', corpusFile]).code, 0);
    const add = winnow(['index', dir, '--add-model', MODEL]);
    assert.equal(add.code, 0, add.stderr);
    assert.match(add.stdout, /stored vectors of bi-encoder:.* for 30 documents/);
    assert.match(winnow(['index', dir, '--info']).stdout, /stored vectors of bi-encoder:.*added with --add-model/);
    assertCleanFailure(winnow(['index', dir, '--add-model', MODEL]), 4, /already stores vectors/);
    // later adds load the model themselves
    fs.writeFileSync(corpusFile, corpus(5, 'n').map((d) => JSON.stringify({ _id: d.id, text: d.text })).join('\n') + '\n');
    const more = winnow(['index', dir, '--add', corpusFile]);
    assert.equal(more.code, 0, more.stderr);
    await assertSameAsOnTheFly(dir);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('tune: a stage over stored vectors is costed from its scoring pass (no document embedded); without them, cold', async () => {
  const docs = corpus(60);
  const { dir, root } = await collectionWithModel(docs);
  const qrels: Qrels = new Map(QUERIES.map((q, i) => [q.id, new Map([[`d${i}`, 1], [`d${i + 10}`, 1]])]));
  const spec = { stages: [{ retrieve: 'bm25', k: 40 }, { rerank: MODEL, name: 'bi' }] };
  try {
    const env = await WinnowEnv.create({ collection: dir });
    const coldEnv = await WinnowEnv.create({ docs: new Map(docs.map((d) => [d.id, d])) });
    const stored = await scorePools({ spec, env, docs: env.lookup, queries: QUERIES, qrels, coldEnv, coldSample: { queries: 2, smallDocs: 5, largeDocs: 15 } });
    const s = stored.stages[1];
    assert.equal(s.cost.measured, 'stored');
    assert.equal(s.docEmbeddings?.embedded, 0);
    assert.ok((s.docEmbeddings?.stored ?? 0) >= 3 * 20, JSON.stringify(s.docEmbeddings));
    await env.close();

    const plain = await WinnowEnv.create({ docs: new Map(docs.map((d) => [d.id, d])) });
    const cold = await scorePools({ spec, env: plain, docs: plain.lookup, queries: QUERIES, qrels, coldEnv, coldSample: { queries: 2, smallDocs: 5, largeDocs: 15 } });
    const c = cold.stages[1];
    assert.equal(c.cost.measured, 'cold');
    assert.ok((c.docEmbeddings?.embedded ?? 0) > 0, 'the scoring pass embedded documents');
    assert.equal(c.docEmbeddings?.stored, undefined);
    await plain.close();
    await coldEnv.close();
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});
