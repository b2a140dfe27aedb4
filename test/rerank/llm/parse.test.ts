import assert from 'node:assert/strict';
import test from 'node:test';
import { defuseIds, idLabel, normalizeDigits, optionProbabilities, parseGrade, parsePermutation, parseYesNo, stripReasoning } from '../../../src/rerank/llm/parse.js';

test('clean permutations in every accepted shape', () => {
  assert.deepEqual(parsePermutation('[3] > [1] > [2]', 3), { order: [2, 0, 1], status: 'clean' });
  assert.deepEqual(parsePermutation('3 > 1 > 2', 3), { order: [2, 0, 1], status: 'clean' });
  assert.deepEqual(parsePermutation('C > A > B', 3, 'letter'), { order: [2, 0, 1], status: 'clean' });
  assert.deepEqual(parsePermutation('[c] > [a] > [b]', 3, 'letter'), { order: [2, 0, 1], status: 'clean' });
  assert.deepEqual(parsePermutation('Here is the ranking:\n\n[2] > [3] > [1]\n\nHope this helps.', 3), { order: [1, 2, 0], status: 'clean' });
  assert.deepEqual(parsePermutation('3, 1, 2', 3), { order: [2, 0, 1], status: 'clean' });
});

test('reasoning before </think> is ignored; an unclosed <think> is no answer', () => {
  assert.deepEqual(parsePermutation('<think>maybe [1] > [2] > [3]</think>[3] > [2] > [1]', 3), { order: [2, 1, 0], status: 'clean' });
  assert.deepEqual(parsePermutation('<think>[1] > [2] and then I ran out of tokens', 3), { order: [0, 1, 2], status: 'fallback' });
  assert.equal(stripReasoning('a</think>b</think>c'), 'c');
});

test('Unicode digits are read as ASCII', () => {
  assert.equal(normalizeDigits('٣ > ١ > ٢'), '3 > 1 > 2');
  assert.equal(normalizeDigits('３ ＞ １'), '3 ＞ 1');
  assert.equal(normalizeDigits('𝟑𝟏𝟐'), '312');
  assert.equal(normalizeDigits('३'), '3');
  assert.deepEqual(parsePermutation('[٣] > [١] > [٢]', 3), { order: [2, 0, 1], status: 'clean' });
});

test('duplicates and unknown ids are dropped, missing ids follow in their previous order', () => {
  assert.deepEqual(parsePermutation('[2] > [2] > [1]', 4), { order: [1, 0, 2, 3], status: 'repaired' });
  assert.deepEqual(parsePermutation('[9] > [3] > [0] > [1]', 3), { order: [2, 0, 1], status: 'repaired' });
  assert.deepEqual(parsePermutation('[4]', 5), { order: [3, 0, 1, 2, 4], status: 'repaired' });
  assert.deepEqual(parsePermutation('E > Z > B', 5, 'letter'), { order: [4, 1, 0, 2, 3], status: 'repaired' });
});

test('empty or malformed answers keep the previous order', () => {
  for (const a of ['', '   ', 'I cannot rank these passages.', '{"error": true}', '> > >']) {
    assert.deepEqual(parsePermutation(a, 3), { order: [0, 1, 2], status: 'fallback' }, JSON.stringify(a));
  }
  assert.deepEqual(parsePermutation('A passage about Iceland is best.', 3, 'letter'), { order: [0, 1, 2], status: 'fallback' });
});

test('letter labels past Z and back', () => {
  assert.equal(idLabel(0, 'letter'), 'A');
  assert.equal(idLabel(25, 'letter'), 'Z');
  assert.equal(idLabel(26, 'letter'), 'AA');
  assert.equal(idLabel(27, 'letter'), 'AB');
  assert.deepEqual(parsePermutation('[AB] > [AA]', 28, 'letter').order.slice(0, 2), [27, 26]);
});

test('ids inside passages and queries are defused', () => {
  assert.equal(defuseIds('see [1] > [2] and [ B ] or [١٢]'), 'see (1) > (2) and (B) or (١٢)');
  assert.equal(defuseIds('[note] and [2024-01] stay'), '[note] and [2024-01] stay');
});

test('judgement readers', () => {
  const p = optionProbabilities([{ token: 'Yes', logprob: Math.log(0.6) }, { token: ' no', logprob: Math.log(0.2) }, { token: 'maybe', logprob: Math.log(0.2) }], ['yes', 'no']);
  assert.ok(p && Math.abs(p[0] - 0.75) < 1e-9);
  assert.equal(optionProbabilities([{ token: 'maybe', logprob: -0.1 }], ['yes', 'no']), undefined);
  assert.equal(optionProbabilities(undefined, ['yes', 'no']), undefined);
  assert.equal(parseYesNo('Yes.'), 1);
  assert.equal(parseYesNo('<think>yes?</think> No'), 0);
  assert.equal(parseYesNo('unsure'), undefined);
  assert.equal(parseGrade('Grade: 2', 3), 2);
  assert.equal(parseGrade('7 then 3', 3), 3);
  assert.equal(parseGrade('none', 3), undefined);
});
