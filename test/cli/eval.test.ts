import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { readRun, readQrels } from '../../src/eval/io/trec.js';
import { readQrelsTsv } from '../../src/eval/io/beir.js';
import { evaluate } from '../../src/eval/metrics.js';
import { assertCleanFailure, winnow } from './run.js';

const SCIFACT = path.resolve('../shared/datasets/scifact');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'winnow-eval-'));
const home = { WINNOW_HOME: path.join(tmp, 'home') };

/** A small BEIR folder; each bad-input test changes one file of it. */
function dataset(name: string, files: Record<string, string> = {}): string {
  const dir = path.join(tmp, name);
  mkdirSync(path.join(dir, 'qrels'), { recursive: true });
  const all: Record<string, string> = {
    'corpus.jsonl': [
      '{"_id": "d1", "title": "Cascade", "text": "rerank the candidates with a cross encoder"}',
      '{"_id": "d2", "title": "", "text": "bm25 retrieves candidates from an inverted index"}',
      '{"_id": "d3", "title": "Birds", "text": "sparrows and finches eat seeds"}',
    ].join('\n'),
    'queries.jsonl': '{"_id": "q1", "text": "rerank candidates with a cross encoder"}\n{"_id": "q2", "text": "candidates from an inverted index"}\n',
    'qrels/test.tsv': 'query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n',
    ...files,
  };
  for (const [f, text] of Object.entries(all)) writeFileSync(path.join(dir, f), text);
  return dir;
}

test('winnow eval on scifact: BM25 reaches nDCG@10 >= 0.675 and the outputs agree', () => {
  const json = path.join(tmp, 'scifact.json');
  const runFile = path.join(tmp, 'scifact.run');
  const r = winnow(
    ['eval', '--dataset', SCIFACT, '--first-pass', 'bm25', '--first-k', '1000', '--final-k', '10', '--json', json, '--run', runFile, '--index-cache', path.join(tmp, 'idx')],
    home,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /bm25 k=1000/);
  assert.match(r.stdout, /final \(300 queries\): RR@10 [\d.]+ {2}nDCG@10 [\d.]+ {2}R@10/);
  assert.match(r.stdout, /p50 ms/);
  const result = JSON.parse(readFileSync(json, 'utf8'));
  assert.ok(result.final['nDCG@10'] >= 0.675, `nDCG@10 ${result.final['nDCG@10']}`);
  // BM25 returns only documents that share a term with the query, so some lists are shorter
  assert.ok(result.stages[0].out > 950 && result.stages[0].out <= 1000);
  assert.ok(result.stages[0].metrics['R@out'] > 0.95);
  assert.ok(result.latencyMs.p99 >= result.latencyMs.p50);
  return (async () => {
    // The run file scores the same under trec_eval's rules as in the table.
    const qrels = await readQrelsTsv(path.join(SCIFACT, 'qrels/test.tsv'));
    const trec = evaluate(qrels, await readRun(runFile), ['nDCG@10', 'R@10']);
    assert.ok(Math.abs(trec.mean['nDCG@10'] - result.final['nDCG@10']) < 1e-9);
    assert.ok(Math.abs(trec.mean['R@10'] - result.final['R@10']) < 1e-9);
  })();
});

test('a two-stage cascade from flags: table rows, pairs, cache hits on a second identical stage', () => {
  const dir = dataset('ok');
  const json = path.join(tmp, 'two.json');
  const r = winnow(
    ['eval', '--dataset', dir, '--first-k', '3', '--stage1-model', 'bm25', '--stage2-model', 'bm25', '--pool-size', '2', '--final-k', '1', '--json', json, '--index-cache', path.join(tmp, 'idx')],
    home,
  );
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(readFileSync(json, 'utf8'));
  assert.deepEqual(out.stages.map((s: { stage: string }) => s.stage), ['bm25 k=3', 'stage1 → top(2)', 'stage2 → top(1)']);
  assert.deepEqual(out.stages.map((s: { in: number; out: number }) => [s.in, s.out]), [[0, 2], [2, 2], [2, 1]]);
  assert.equal(out.final['RR@10'], 1);
  assert.match(r.stdout, /score cache: \d+ hits/);
});

test('test_queries.jsonl with candidates and labels, reranked by BM25 over the candidates', () => {
  const file = path.join(tmp, 'test_queries.jsonl');
  writeFileSync(
    file,
    [
      { query_id: 'a', query: 'cheap first pass', candidates: [{ id: 'x', text: 'an expensive model', label: 0 }, { id: 'y', text: 'a cheap first pass', label: 1 }] },
      { qid: 'b', query: 'seeds', positive: ['finches eat seeds'], negative: ['rocks'] },
    ].map((o) => JSON.stringify(o)).join('\n'),
  );
  const r = winnow(['eval', '--queries', file, '--stage1-model', 'bm25', '--final-k', '1'], home);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /final \(2 queries\): RR@10 1\.0000/);
});

test('bad input: one clear message, a non-zero exit, never a stack trace', async (t) => {
  const cases: [string, string[], number, RegExp][] = [
    ['missing dataset', ['eval', '--dataset', path.join(tmp, 'nope')], 3, /dataset folder not found/],
    ['unknown split', ['eval', '--dataset', dataset('split'), '--split', 'dev'], 3, /split 'dev' not found[\s\S]*splits in .*: test/],
    ['malformed corpus line', ['eval', '--dataset', dataset('badjson', { 'corpus.jsonl': '{"_id": "d1", "text": "x"}\n{"_id": "d2", "text": \n' })], 4, /corpus\.jsonl:2: .*JSON/],
    ['duplicate doc ids', ['eval', '--dataset', dataset('dup', { 'corpus.jsonl': '{"_id": "d1", "text": "a"}\n{"_id": "d1", "text": "b"}\n' })], 4, /duplicate document id 'd1'/],
    ['empty query', ['eval', '--dataset', dataset('emptyq', { 'queries.jsonl': '{"_id": "q1", "text": "  "}\n' })], 4, /queries\.jsonl:1: .*empty/],
    ['missing queries file', ['eval', '--queries', path.join(tmp, 'none.jsonl')], 3, /not found/],
    ['unknown flag', ['eval', '--datset', 'x'], 2, /Unknown option '--datset'/],
    ['stage2 without stage1', ['eval', '--dataset', dataset('s2'), '--stage2-model', 'bm25'], 2, /--stage2-model needs --stage1-model/],
    ['unknown scorer', ['eval', '--dataset', dataset('sc'), '--stage1-model', 'nonsense'], 4, /unknown scorer "nonsense"/],
    ['bad number', ['eval', '--dataset', dataset('num'), '--first-k', 'ten'], 2, /--first-k must be a positive integer, got "ten"/],
    ['unknown command', ['evaluate'], 2, /unknown command "evaluate"/],
    ['missing spec', ['eval', '--dataset', dataset('spec'), '--spec', path.join(tmp, 'nope.yaml')], 3, /spec file not found/],
  ];
  for (const [name, args, code, msg] of cases) {
    await t.test(name, () => assertCleanFailure(winnow(args, home), code, msg));
  }
});

test('qrels naming unknown queries or documents: a warning with counts, and the run goes on', () => {
  const dir = dataset('unknown', { 'qrels/test.tsv': 'query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\tghost\t1\nq9\td2\t1\nq8\td3\t1\n' });
  const r = winnow(['eval', '--dataset', dir, '--index-cache', path.join(tmp, 'idx')], home);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /2 of 3 queries that are not in the queries file .*'q9'/);
  assert.match(r.stderr, /1 documents that are not in the corpus \(1 of 4 judgements, e\.g\. 'ghost'\)/);
});

test('empty documents are indexed, counted and reported', () => {
  const dir = dataset('emptydoc', {
    'corpus.jsonl': '{"_id": "d1", "title": "", "text": "rerank candidates"}\n{"_id": "d2", "title": "", "text": ""}\n{"_id": "d3", "title": "T", "text": " "}\n',
  });
  const r = winnow(['eval', '--dataset', dir, '--index-cache', path.join(tmp, 'idx')], home);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /1 of 3 documents have no text and no title/);
  assert.match(r.stderr, /1 of 3 documents have a title but empty text/);
});

test('a corrupt explicit index file is an error; a corrupt cached one is rebuilt with a warning', () => {
  const dir = dataset('idx');
  const indexFile = path.join(tmp, 'explicit.idx');
  assert.equal(winnow(['eval', '--dataset', dir, '--index', indexFile], home).code, 0);
  const bytes = readFileSync(indexFile);
  bytes[bytes.length - 10] ^= 0xff;
  writeFileSync(indexFile, bytes);
  assertCleanFailure(winnow(['eval', '--dataset', dir, '--index', indexFile], home), 5, /explicit\.idx/);
  writeFileSync(indexFile, bytes.subarray(0, 20));
  assertCleanFailure(winnow(['eval', '--dataset', dir, '--index', indexFile], home), 5, /explicit\.idx/);
});

test('the TREC qrels reader and the BEIR tsv reader agree on the same judgements', async () => {
  const trec = path.join(tmp, 'q.trec');
  writeFileSync(trec, 'q1 0 d1 1\nq2 0 d2 1\n');
  const a = await readQrels(trec);
  const b = await readQrelsTsv(path.join(dataset('agree'), 'qrels/test.tsv'));
  assert.deepEqual(a, b);
});
