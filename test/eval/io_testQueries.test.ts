import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { WinnowError } from '../../src/core/errors.js';
import { readTestQueries } from '../../src/eval/io/testQueries.js';

const IO = path.resolve('test/fixtures/io');

function isErr(code: string, re: RegExp) {
  return (e: unknown) => e instanceof WinnowError && e.code === code && re.test(e.message);
}

test('readTestQueries: every accepted shape and spelling', async () => {
  const t = await readTestQueries(path.join(IO, 'test_queries.jsonl'));
  assert.deepEqual(t.queries, [
    { id: 't1', text: 'what do cats eat' },
    { id: '2', text: 'plain strings' },
    { id: '3', text: 'flat shape' },
    { id: 't4', text: 'graded' },
    { id: 't5', text: 'no candidates' },
  ]);
  assert.deepEqual(t.candidates.get('t1'), ['c1', 'c2', 'c3']);
  assert.deepEqual(t.candidates.get('2'), ['2-0', '2-1']);
  assert.deepEqual(t.candidates.get('3'), ['3-0', 'c1', '3-2']);
  assert.deepEqual(t.candidates.get('t4'), ['g1', 't4-1', 'g3']);
  assert.equal(t.candidates.has('t5'), false);
  assert.deepEqual(t.docs.get('c2'), { id: 'c2', title: 'Dogs', text: 'Dogs eat meat.' });
  assert.deepEqual(t.docs.get('2-1'), { id: '2-1', text: 'second passage' });
  assert.equal(t.docs.get('t4-1')!.text, 'no id here');
  assert.equal(t.docs.size, 10); // c1 is shared by t1 and the flat-shape query
  assert.deepEqual([...t.qrels.get('t1')!], [['c1', 1], ['c2', 0]]);
  assert.equal(t.qrels.has('2'), false);
  assert.deepEqual([...t.qrels.get('3')!], [['3-0', 1], ['c1', 1], ['3-2', 0]]);
  assert.deepEqual([...t.qrels.get('t4')!], [['g1', 3], ['t4-1', 1], ['g3', 0.5]]);
});

test('readTestQueries: one id with two texts names both lines; empty query names its line', async () => {
  await assert.rejects(
    readTestQueries(path.join(IO, 'bad/conflict_test_queries.jsonl')),
    isErr('bad_input', /conflict_test_queries\.jsonl:2: document 'd1' has a different text than on line 1/),
  );
  await assert.rejects(
    readTestQueries(path.join(IO, 'bad/empty_test_query.jsonl')),
    isErr('bad_input', /empty_test_query\.jsonl:2: query 'b' is empty/),
  );
  await assert.rejects(readTestQueries(path.join(IO, 'bad/malformed.jsonl')), isErr('bad_input', /malformed\.jsonl:3: not valid JSON/));
  await assert.rejects(readTestQueries(path.join(IO, 'nope.jsonl')), isErr('not_found', /nope\.jsonl/));
});
