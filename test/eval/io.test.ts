import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { WinnowError, type ErrorCode } from '../../src/core/errors.js';
import type { Doc } from '../../src/core/types.js';
import { readJsonl } from '../../src/eval/io/jsonl.js';
import { checkQrels, loadBeir, readCorpus, readQrelsTsv, readQueries } from '../../src/eval/io/beir.js';

const IO = path.resolve('test/fixtures/io');
const BAD = path.join(IO, 'bad');

/** Asserts a WinnowError with this code whose message matches every pattern. */
async function rejects(p: Promise<unknown>, code: ErrorCode, ...patterns: RegExp[]): Promise<WinnowError> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof WinnowError, `expected a WinnowError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  for (const re of patterns) assert.match(caught.message, re);
  return caught;
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

test('readJsonl: line numbers count blank lines; CR and BOM are stripped', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'winnow-io-'));
  try {
    const file = path.join(dir, 'x.jsonl');
    writeFileSync(file, '\uFEFF{"a":1}\r\n\r\n  \n{"a":"é\\r"}\r\n{"a":3}');
    const rows = await collect(readJsonl(file));
    assert.deepEqual(rows, [
      { value: { a: 1 }, lineNo: 1 },
      { value: { a: 'é\r' }, lineNo: 4 },
      { value: { a: 3 }, lineNo: 5 },
    ]);
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('readJsonl: lines longer than a read chunk and multi-byte characters across chunks', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'winnow-io-'));
  try {
    const file = path.join(dir, 'big.jsonl');
    const long = 'ü'.repeat(700_000) + '😀';
    writeFileSync(file, `${JSON.stringify({ t: long })}\n${JSON.stringify({ t: 'short' })}\n`);
    const rows = await collect(readJsonl(file));
    assert.equal(rows.length, 2);
    assert.equal((rows[0].value as { t: string }).t, long);
    assert.equal(rows[1].lineNo, 2);
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('readJsonl: malformed line names file and line; missing file is not_found', async () => {
  const file = path.join(BAD, 'malformed.jsonl');
  await rejects(collect(readJsonl(file)), 'bad_input', /malformed\.jsonl:3: not valid JSON \(/);
  await rejects(collect(readJsonl(path.join(BAD, 'nope.jsonl'))), 'not_found', /nope\.jsonl/);
  await rejects(collect(readJsonl(BAD)), 'bad_input', /directory/);
});

test('readCorpus: numeric ids, empty text and title counted, docs streamed in order', async () => {
  const corpus = readCorpus(path.join(IO, 'beir_small/corpus.jsonl'));
  const docs: Doc[] = await collect(corpus);
  assert.deepEqual(
    docs.map((d) => d.id),
    ['d1', '2', 'd3', 'd4', 'd5'],
  );
  assert.deepEqual(docs[0], { id: 'd1', title: 'Cats', text: 'Cats purr when content.' });
  assert.deepEqual(docs[1], { id: '2', text: 'Dogs bark at strangers.' });
  assert.deepEqual(corpus.stats, { docs: 5, emptyText: 2, emptyTitle: 2, emptyBoth: 1 });
  assert.ok(corpus.ids.has('2') && !corpus.ids.has('d9'));
  const w = corpus.warnings();
  assert.equal(w.length, 2);
  assert.match(w[0], /1 of 5 documents have no text and no title/);
  assert.match(w[1], /1 of 5 documents have a title but empty text/);
});

test('readCorpus: duplicate id, missing _id and missing text name the line', async () => {
  await rejects(collect(readCorpus(path.join(BAD, 'dup_corpus.jsonl'))), 'bad_input', /dup_corpus\.jsonl:3/, /'a'/, /line 1/);
  await rejects(collect(readCorpus(path.join(BAD, 'missing_id.jsonl'))), 'bad_input', /missing_id\.jsonl:2: .*"_id"/);
  await rejects(collect(readCorpus(path.join(BAD, 'missing_text.jsonl'))), 'bad_input', /missing_text\.jsonl:2: .*'b'.*"text"/);
});

test('readQueries: empty query and duplicate id are errors naming the line', async () => {
  const qs = await readQueries(path.join(IO, 'beir_small/queries.jsonl'));
  assert.deepEqual(qs[1], { id: '2', text: 'dog barking' });
  await rejects(readQueries(path.join(BAD, 'empty_query.jsonl')), 'bad_input', /empty_query\.jsonl:2: query 'q2' is empty/);
  await rejects(readQueries(path.join(BAD, 'dup_queries.jsonl')), 'bad_input', /dup_queries\.jsonl:2: duplicate query id 'q1'/);
});

test('readQrelsTsv: header skipped, CRLF handled, bad lines named', async () => {
  const qrels = await readQrelsTsv(path.join(IO, 'beir_small/qrels/test.tsv'));
  assert.equal(qrels.size, 4);
  assert.equal(qrels.get('q1')!.get('d1'), 2);
  assert.equal(qrels.get('2')!.get('d5'), 0);
  await rejects(readQrelsTsv(path.join(BAD, 'bad_qrels.tsv')), 'bad_input', /bad_qrels\.tsv:3: expected/);
});

test('loadBeir: split queries, qrels and warnings with counts', async () => {
  const dir = path.join(IO, 'beir_small');
  const ds = await loadBeir(dir, 'test');
  assert.deepEqual(
    ds.queries.map((q) => q.id),
    ['q1', '2', 'q3'],
  );
  assert.equal(ds.corpusFile, path.join(dir, 'corpus.jsonl'));
  assert.equal(ds.warnings.length, 1);
  assert.match(ds.warnings[0], /1 of 4 queries that are not in the queries file \(1 judgements, e\.g\. 'q9'\)/);

  const checked = await loadBeir(dir, 'test', { checkDocs: true });
  const docWarning = checked.warnings.find((w) => w.includes('not in the corpus'));
  assert.ok(docWarning, checked.warnings.join('\n'));
  assert.match(docWarning, /2 documents that are not in the corpus \(2 of 7 judgements, e\.g\. 'missing-doc', 'also-missing'\)/);
  assert.ok(checked.warnings.some((w) => /no text and no title/.test(w)));

  const dev = await loadBeir(dir, 'dev');
  assert.deepEqual(dev.queries, [{ id: 'q4', text: 'unjudged query' }]);
  assert.deepEqual(dev.warnings, []);
});

test('loadBeir: a missing split lists the splits that exist; a missing folder is not_found', async () => {
  const err = await rejects(loadBeir(path.join(IO, 'beir_small'), 'train'), 'not_found', /split 'train'/);
  assert.match(err.hint ?? '', /dev, test/);
  await rejects(loadBeir(path.join(IO, 'no-such-dataset'), 'test'), 'not_found', /no-such-dataset/);
});

test('checkQrels: counts unknown queries and documents', () => {
  const qrels = new Map([
    ['q1', new Map([['a', 1], ['x', 0]])],
    ['q2', new Map([['b', 1]])],
    ['q3', new Map([['x', 1]])],
  ]);
  const w = checkQrels(qrels, new Set(['q1']), new Set(['a', 'b']));
  assert.equal(w.length, 2);
  assert.match(w[0], /2 of 3 queries .* \(2 judgements, e\.g\. 'q2', 'q3'\)/);
  assert.match(w[1], /1 documents .* \(2 of 4 judgements, e\.g\. 'x'\)/);
  assert.deepEqual(checkQrels(qrels, new Set(['q1', 'q2', 'q3']), new Set(['a', 'b', 'x'])), []);
});

test('scifact: 5183 docs, 300 test queries, 339 test judgements', async () => {
  const dir = path.resolve('../shared/datasets/scifact');
  const ds = await loadBeir(dir, 'test', { checkDocs: true });
  assert.equal(ds.queries.length, 300);
  let pairs = 0;
  for (const docs of ds.qrels.values()) pairs += docs.size;
  assert.equal(pairs, 339);
  const corpus = readCorpus(ds.corpusFile);
  let n = 0;
  for await (const doc of corpus) {
    if (doc.text.length > 0) n++;
  }
  assert.equal(corpus.stats.docs, 5183);
  assert.ok(n > 5000);
  assert.deepEqual(ds.warnings, []);
});
