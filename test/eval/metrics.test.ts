import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import {
  evaluate,
  evaluateRanking,
  parseMeasure,
  rankRunTrecEval,
  sortRunTrecEval,
  compareCodePoints,
  type Qrels,
} from '../../src/eval/metrics.js';
import { readQrels, readRun } from '../../src/eval/io/trec.js';
import { WinnowError } from '../../src/core/errors.js';

const FIXTURES = path.resolve('test/fixtures/metrics');

interface FixtureExpect {
  qrels: string;
  run: string;
  mean: Record<string, number>;
  perQuery: Record<string, Record<string, number>>;
}
interface Expected {
  ir_measures: string;
  measures: string[];
  fixtures: Record<string, FixtureExpect>;
}

const expected = JSON.parse(readFileSync(path.join(FIXTURES, 'expected.json'), 'utf8')) as Expected;

for (const [name, fx] of Object.entries(expected.fixtures)) {
  test(`parity with ir_measures ${expected.ir_measures}: ${name}`, async () => {
    const qrels = await readQrels(path.join(FIXTURES, fx.qrels));
    const run = await readRun(path.join(FIXTURES, fx.run));
    const result = evaluate(qrels, run, expected.measures);
    assert.deepEqual([...result.perQuery.keys()].sort(), Object.keys(fx.perQuery).sort());
    let checked = 0;
    for (const [qid, values] of Object.entries(fx.perQuery)) {
      const got = result.perQuery.get(qid);
      assert.ok(got, `missing query ${qid}`);
      for (const m of expected.measures) {
        assert.ok(m in values, `expected.json lacks ${m} for ${qid}`);
        assert.ok(Math.abs(got[m] - values[m]) <= 1e-6, `${name} ${qid} ${m}: got ${got[m]}, ir_measures ${values[m]}`);
        checked++;
      }
    }
    for (const m of expected.measures) {
      assert.ok(Math.abs(result.mean[m] - fx.mean[m]) <= 1e-6, `${name} mean ${m}: got ${result.mean[m]}, ir_measures ${fx.mean[m]}`);
    }
    assert.ok(checked >= expected.measures.length * 3);
  });
}

test('ties are broken by doc id descending (trec_eval), and the rank column is ignored', async () => {
  const run = await readRun(path.join(FIXTURES, 'ties/run.txt'));
  // All four docs of t1 score 5.0; the file lists them a, m, z, b.
  assert.deepEqual(sortRunTrecEval(run.get('t1')!), ['z', 'm', 'b', 'a']);
  assert.deepEqual(rankRunTrecEval(run).get('t2'), ['c', 'b', 'a', 'm']);
  const qrels = await readQrels(path.join(FIXTURES, 'ties/qrels.txt'));
  // 'a' is the only relevant doc of t1: rank 4 under trec_eval's order, rank 1 the other way.
  const { perQuery } = evaluate(qrels, run, ['RR', 'P@1', 'RR@10']);
  assert.equal(perQuery.get('t1')!['RR'], 0.25);
  assert.equal(perQuery.get('t1')!['P@1'], 0);
  // ir_measures computes RR@k with its MS MARCO provider, which sorts ties ascending.
  assert.equal(perQuery.get('t1')!['RR@10'], 1);
});

test('doc id order is by code point, like strcmp over UTF-8', () => {
  assert.ok(compareCodePoints('b', 'a') > 0);
  assert.ok(compareCodePoints('a', 'ab') < 0);
  assert.ok(compareCodePoints('D', 'd') < 0);
  // U+1F600 (a surrogate pair in UTF-16) sorts after U+FF01, though its first unit is smaller.
  assert.ok(compareCodePoints('\u{1F600}', '\uFF01') > 0);
  assert.ok('\u{1F600}' < '\uFF01');
});

test('evaluateRanking trusts the given order', () => {
  const q = new Map([
    ['a', 1],
    ['b', 0],
    ['c', 3],
  ]);
  assert.equal(evaluateRanking(q, ['x', 'a'], parseMeasure('RR@10')), 0.5);
  assert.equal(evaluateRanking(q, ['x', 'a'], parseMeasure('RR@1')), 0);
  assert.equal(evaluateRanking(q, ['a', 'x'], parseMeasure('P@5')), 0.2);
  assert.equal(evaluateRanking(q, ['c'], parseMeasure('R(rel=2)@1')), 1);
  assert.equal(evaluateRanking(q, ['a', 'c'], parseMeasure('AP@1')), 0.5);
  assert.equal(evaluateRanking(q, ['a', 'c'], parseMeasure('AP')), (1 + 1) / 2);
  assert.equal(evaluateRanking(q, ['c', 'a'], parseMeasure('nDCG@10')), 1);
  assert.equal(evaluateRanking(q, ['x', 'b'], parseMeasure('Judged@10')), 0.5);
  assert.equal(evaluateRanking(undefined, ['a'], parseMeasure('RR')), 0);
  const ideal = 3 + 1 / Math.log2(3);
  assert.ok(Math.abs(evaluateRanking(q, ['a', 'c'], parseMeasure('nDCG@2')) - (1 + 3 / Math.log2(3)) / ideal) < 1e-12);
});

test('evaluate averages over qrels queries; missing run queries score 0', () => {
  const qrels: Qrels = new Map([
    ['q1', new Map([['a', 1]])],
    ['q2', new Map([['b', 1]])],
  ]);
  const run = new Map([
    ['q1', new Map([['a', 1]])],
    ['other', new Map([['b', 1]])],
  ]);
  const r = evaluate(qrels, run, ['P@1', parseMeasure('RR')]);
  assert.equal(r.mean['P@1'], 0.5);
  assert.equal(r.mean['RR'], 0.5);
  assert.deepEqual([...r.perQuery.keys()], ['q1', 'q2']);
});

test('parseMeasure accepts ir_measures names and rejects bad ones', () => {
  assert.deepEqual(parseMeasure('nDCG@10'), { name: 'nDCG@10', kind: 'nDCG', k: 10, relLevel: 1 });
  assert.deepEqual(parseMeasure('R(rel=2)@10'), { name: 'R(rel=2)@10', kind: 'R', k: 10, relLevel: 2 });
  assert.deepEqual(parseMeasure('AP'), { name: 'AP', kind: 'AP', k: undefined, relLevel: 1 });
  assert.equal(parseMeasure('MRR@10').name, 'RR@10');
  assert.equal(parseMeasure('R(rel=1)@5').name, 'R@5');
  for (const bad of ['ndcg@10', 'P', 'R@0', 'nDCG(rel=2)@10', 'Judged(rel=2)@10', 'RR@', 'MAP@x', '']) {
    assert.throws(
      () => parseMeasure(bad),
      (e: unknown) => e instanceof WinnowError && e.code === 'usage',
      bad,
    );
  }
});

test('evaluate refuses empty qrels instead of reporting 0', () => {
  assert.throws(
    () => evaluate(new Map(), new Map([['q', new Map([['d', 1]])]]), ['RR']),
    (e: unknown) => e instanceof WinnowError && e.code === 'bad_input',
  );
});
