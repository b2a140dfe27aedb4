import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Analyzer, ENGLISH_STOP_WORDS, analyze, tokenizeOffsets } from '../../src/text/analyzer.js';

function tokens(text: string): string[] {
  const out: string[] = [];
  tokenizeOffsets(text, (s, e) => out.push(text.slice(s, e)));
  return out;
}

test('stop list is Lucene EnglishAnalyzer default (33 words)', () => {
  assert.equal(ENGLISH_STOP_WORDS.size, 33);
  for (const w of ['the', 'a', 'such', 'their', 'will', 'with']) assert.ok(ENGLISH_STOP_WORDS.has(w), w);
  assert.ok(!ENGLISH_STOP_WORDS.has('s'));
});

test('tokenizer follows UAX#29 word breaks like StandardTokenizer', () => {
  assert.deepEqual(tokens('IL-6 levels rose 3,000-fold (p<0.05).'), ['IL', '6', 'levels', 'rose', '3,000', 'fold', 'p', '0.05']);
  assert.deepEqual(tokens("U.S.A. don't covid19 foo_bar __ x'"), ['U.S.A', "don't", 'covid19', 'foo_bar', 'x']);
  assert.deepEqual(tokens('10.1038/nature TNF-α β2'), ['10.1038', 'nature', 'TNF', 'α', 'β2']);
  // Ideographs are single-character tokens; a trailing period or comma never joins.
  assert.deepEqual(tokens('中文字. 1, 2'), ['中', '文', '字', '1', '2']);
  assert.deepEqual(tokens('  ... --- '), []);
});

test('over-long tokens are cut at 255 characters', () => {
  assert.deepEqual(tokens('x'.repeat(600)).map((t) => t.length), [255, 255, 90]);
});

test('possessives, lowercase, stop words and Porter stems', () => {
  assert.deepEqual(analyze("The patient's cells were RUNNING"), ['patient', 'cell', 'were', 'run']);
  assert.deepEqual(analyze("It's the patients’ doctor’s"), ['patient', 'doctor']);
  assert.deepEqual(analyze('Studies showed increased generalization'), ['studi', 'show', 'increas', 'gener']);
  assert.deepEqual(analyze('the of and a'), []);
  assert.deepEqual(analyze(''), []);
});

test('NFKC folds compatibility characters before tokenizing', () => {
  assert.deepEqual(analyze('ﬁbrosis ＦＵＬＬ'), ['fibrosi', 'full']);
});

test('stemming and stop words can be turned off', () => {
  const plain = new Analyzer({ stem: false, stopWords: false });
  assert.deepEqual(plain.analyze('The Cells were running'), ['the', 'cells', 'were', 'running']);
  const custom = new Analyzer({ stem: false, stopWords: new Set(['cells']) });
  assert.deepEqual(custom.analyze('The Cells'), ['the']);
});

test('cached terms give the same result on repeated calls', () => {
  const a = new Analyzer();
  const first = a.analyze('Running runners ran; running again');
  assert.deepEqual(a.analyze('Running runners ran; running again'), first);
  assert.deepEqual(first, ['run', 'runner', 'ran', 'run', 'again']);
});
