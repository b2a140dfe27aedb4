import { test } from 'node:test';
import assert from 'node:assert/strict';
import { windowStarts } from '../../src/text/windows.js';

test('windows cover the whole sequence; the last one ends at the end', () => {
  assert.deepEqual(Array.from(windowStarts(10, { size: 20, stride: 10 })), [0]);
  assert.deepEqual(Array.from(windowStarts(20, { size: 20, stride: 10 })), [0]);
  assert.deepEqual(Array.from(windowStarts(21, { size: 20, stride: 10 })), [0, 1]);
  assert.deepEqual(Array.from(windowStarts(45, { size: 20, stride: 10 })), [0, 10, 20, 25]);
  assert.deepEqual(Array.from(windowStarts(40, { size: 20, stride: 20 })), [0, 20]);
  assert.throws(() => windowStarts(5, { size: 0, stride: 1 }), RangeError);
});
