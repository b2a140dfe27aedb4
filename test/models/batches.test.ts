import assert from 'node:assert/strict';
import { test } from 'node:test';
import { lengthSortedBatches } from '../../src/models/onnx.js';

test('length-sorted batches: longest first, at most batchSize rows and maxTokens padded tokens, every index once', () => {
  const lengths = [10, 500, 30, 480, 20, 510, 15, 40, 300, 8];
  const batches = lengthSortedBatches(lengths, 4, 1024).map((b) => [...b]);
  // 510 and 500 fill 1024 tokens at 510 each (2 rows), 480/300 at 480 (2 rows), then four short rows
  assert.deepEqual(batches, [[5, 1], [3, 8], [7, 2, 4, 6], [0, 9]]);
  for (const b of batches) {
    assert.ok(b.length <= 4);
    assert.ok(b.length === 1 || b.length * lengths[b[0]] <= 1024);
  }
  assert.deepEqual(batches.flat().sort((a, b) => a - b), lengths.map((_, i) => i));
});

test('length-sorted batches: a row longer than maxTokens still gets a batch of its own', () => {
  assert.deepEqual(lengthSortedBatches([9000, 5, 6], 32, 4096).map((b) => [...b]), [[0], [2, 1]]);
});
