import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { WinnowError } from '../../src/core/errors.js';
import type { Doc } from '../../src/core/types.js';
import { Bm25Index } from '../../src/retrieve/bm25/index.js';
import { FORMAT_VERSION } from '../../src/retrieve/bm25/format.js';

const DOCS: Doc[] = [
  { id: 'd1', title: 'Café résumé', text: 'Apples and bananas; the apple’s colour.' },
  { id: 'd2', text: 'Banana cherry 0.05 p-value' },
  { id: 'd3', title: '', text: '' },
  { id: 'ünï', text: 'cherry cherry cherry date 中文' },
];
const QUERIES = ['apple', 'banana cherry', 'cherry cherry date', 'café', '中', 'nothing here'];

function tmpFile(name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'winnow-bm25-'));
  return path.join(dir, name);
}

function expectError(file: string, code: string, pattern: RegExp): void {
  assert.throws(
    () => Bm25Index.load(file),
    (e: unknown) => {
      assert.ok(e instanceof WinnowError, String(e));
      assert.equal(e.code, code);
      assert.match(e.message, pattern);
      return true;
    },
  );
}

test('save/load roundtrip gives identical results and statistics', async () => {
  const index = await Bm25Index.build(DOCS, { params: { k1: 1.1, b: 0.5 }, progress: false });
  const file = tmpFile('idx.wnbm25');
  index.save(file);
  const loaded = Bm25Index.load(file);
  assert.equal(loaded.size, 4);
  assert.equal(loaded.emptyDocs, 1);
  assert.deepEqual(loaded.params, { k1: 1.1, b: 0.5 });
  assert.equal(loaded.avgdl, index.avgdl);
  assert.equal(loaded.lossyNorms, index.lossyNorms);
  assert.ok(loaded.has('ünï') && !loaded.has('d9'));
  for (const q of QUERIES) assert.deepEqual(loaded.search(q, 10), index.search(q, 10), q);
  assert.deepEqual(loaded.scoreDocs('cherry date', DOCS), index.scoreDocs('cherry date', DOCS));
  // No temporary file is left next to the index.
  assert.deepEqual(fs.readdirSync(path.dirname(file)), ['idx.wnbm25']);
});

test('analyzer settings survive a roundtrip', async () => {
  const index = await Bm25Index.build(DOCS, { stem: false, stopWords: false, lossyNorms: false, progress: false });
  const file = tmpFile('plain.wnbm25');
  index.save(file);
  const loaded = Bm25Index.load(file);
  assert.equal(loaded.lossyNorms, false);
  assert.deepEqual(loaded.search('the apples', 10), index.search('the apples', 10));
  assert.ok(index.search('the', 10).length > 0);
});

test('corrupt, truncated, foreign and newer files give typed errors naming the file', async () => {
  const index = await Bm25Index.build(DOCS, { progress: false });
  const file = tmpFile('good.wnbm25');
  index.save(file);
  const bytes = fs.readFileSync(file);

  const flipped = tmpFile('flipped.wnbm25');
  const copy = Buffer.from(bytes);
  copy[Math.floor(copy.length / 2)] ^= 0xff;
  fs.writeFileSync(flipped, copy);
  expectError(flipped, 'corrupt_index', /flipped\.wnbm25.*checksum mismatch/);

  const truncated = tmpFile('truncated.wnbm25');
  fs.writeFileSync(truncated, bytes.subarray(0, bytes.length - 40));
  expectError(truncated, 'corrupt_index', /truncated\.wnbm25.*truncated/);

  const tiny = tmpFile('tiny.wnbm25');
  fs.writeFileSync(tiny, bytes.subarray(0, 10));
  expectError(tiny, 'corrupt_index', /tiny\.wnbm25.*truncated/);

  const foreign = tmpFile('foreign.wnbm25');
  fs.writeFileSync(foreign, '{"not": "an index"}');
  expectError(foreign, 'corrupt_index', /foreign\.wnbm25.*magic/);

  const newer = tmpFile('newer.wnbm25');
  const bumped = Buffer.from(bytes);
  bumped.writeUInt32LE(FORMAT_VERSION + 98, 8);
  fs.writeFileSync(newer, bumped);
  expectError(newer, 'version_mismatch', new RegExp(`newer\\.wnbm25.*version ${FORMAT_VERSION + 98}.*version ${FORMAT_VERSION}`));

  expectError(tmpFile('missing.wnbm25'), 'not_found', /missing\.wnbm25/);
});
