import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pairLengths, TextTokenizer, wellFormed } from '../../src/models/tokenizer.js';
import { expected, modelDir } from './fixtures.js';

for (const name of ['tiny-bert-ce', 'tiny-xlmr-ce']) {
  const tok = TextTokenizer.fromFolder(modelDir(name));
  const ex = expected.tokenizers[name];
  const usesTypes = name === 'tiny-bert-ce';

  test(`${name}: single texts match the Rust tokenizer (ids, mask, types)`, () => {
    for (const [list, max] of [[ex.single, ex.maxLength], [ex.singleNoTruncation, undefined]] as const) {
      for (const c of list) {
        const e = tok.encode(c.text, max);
        assert.deepEqual(Array.from(e.ids), c.input_ids, JSON.stringify(c.text));
        const b = tok.pad([e]);
        assert.deepEqual(Array.from(b.attentionMask, Number), c.attention_mask);
        assert.deepEqual(Array.from(e.typeIds), c.token_type_ids);
      }
    }
  });

  for (const [key, strategy] of [
    ['pairsOnlySecond', 'only_second'],
    ['pairsLongestFirst', 'longest_first'],
    ['pairsLongQuery', 'longest_first'],
  ] as const) {
    test(`${name}: pairs with ${key} truncation match`, () => {
      for (const c of ex[key]) {
        const e = tok.encodePair(c.query, c.doc, ex.maxLength, strategy);
        const what = `${JSON.stringify(c.query.slice(0, 30))} / ${JSON.stringify(c.doc.slice(0, 30))}`;
        assert.deepEqual(Array.from(e.ids), c.input_ids, what);
        if (usesTypes) assert.deepEqual(Array.from(e.typeIds), c.token_type_ids, what);
      }
    });
  }

  test(`${name}: keep_query equals only_second whenever the query fits`, () => {
    for (const c of ex.pairsOnlySecond) {
      assert.deepEqual(Array.from(tok.encodePair(c.query, c.doc, ex.maxLength, 'keep_query').ids), c.input_ids);
    }
  });

  test(`${name}: padded batches are int64, padded with the pad id and mask 0`, () => {
    const a = tok.encode('a');
    const b = tok.encode('Short doc about cancer cells.');
    const batch = tok.pad([a, b]);
    assert.equal(batch.length, b.ids.length);
    assert.ok(batch.inputIds instanceof BigInt64Array);
    assert.equal(batch.inputIds[a.ids.length], BigInt(tok.padId));
    assert.equal(batch.attentionMask[a.ids.length], 0n);
    assert.deepEqual(Array.from(batch.lengths), [a.ids.length, b.ids.length]);
  });
}

test('keep_query: the query is cut only when it alone overflows, then to about half', () => {
  assert.deepEqual(pairLengths(5, 100, 40, 'keep_query'), [5, 35]);
  assert.deepEqual(pairLengths(40, 100, 40, 'keep_query'), [40, 0]);
  assert.deepEqual(pairLengths(100, 100, 40, 'keep_query'), [20, 20]);
  assert.deepEqual(pairLengths(100, 3, 40, 'keep_query'), [37, 3]);
  assert.deepEqual(pairLengths(3, 4, 40, 'keep_query'), [3, 4]);
});

test('longest_first follows the Rust crate on the edge cases', () => {
  assert.deepEqual(pairLengths(100, 3, 40, 'longest_first'), [37, 3]);
  assert.deepEqual(pairLengths(100, 100, 41, 'longest_first'), [20, 21]);
  assert.deepEqual(pairLengths(30, 30, 40, 'longest_first'), [20, 20]);
});

test('lone surrogates become U+FFFD and never throw; empty strings encode to specials only', () => {
  const tok = TextTokenizer.fromFolder(modelDir('tiny-bert-ce'));
  assert.equal(wellFormed('a\uD800b\uDC00c\uD83D\uDE00'), 'a\uFFFDb\uFFFDc\uD83D\uDE00');
  assert.deepEqual(Array.from(tok.ids('x\uD800y')), Array.from(tok.ids('x\uFFFDy')));
  assert.equal(tok.encode('').ids.length, tok.singleSpecials);
  assert.equal(tok.encodePair('', '').ids.length, tok.pairSpecials);
});
