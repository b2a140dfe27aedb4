import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { EmbeddingCache } from '../../src/rerank/embedding-cache.js';

test('memory LRU evicts the least recently used beyond the byte budget', () => {
  const c = new EmbeddingCache({ namespace: 'm', maxBytes: 2 * 16 });
  c.setMany([['a', new Float32Array(4)], ['b', new Float32Array(4)]]);
  assert.ok(c.get('a'));
  c.setMany([['c', new Float32Array(4)]]);
  assert.equal(c.get('b'), undefined);
  assert.ok(c.get('a'));
  assert.ok(c.get('c'));
});

test('disk store: values of any length round-trip; namespaces are separate; a torn tail is ignored', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'winnow-cache-'));
  try {
    const a = new EmbeddingCache({ namespace: 'model-a', dir });
    a.setMany([['x', Float32Array.from([1, 2, 3])], ['y', Float32Array.from([4])]]);
    const bin = readdirSync(dir).find((f) => f.endsWith('.bin')) as string;
    appendFileSync(path.join(dir, bin), Buffer.from([1, 2, 3, 4, 5]));
    const again = new EmbeddingCache({ namespace: 'model-a', dir, maxBytes: 0 });
    assert.deepEqual(Array.from(again.get('x') ?? []), [1, 2, 3]);
    assert.deepEqual(Array.from(again.get('y') ?? []), [4]);
    again.setMany([['z', Float32Array.from([7, 8])]]);
    const third = new EmbeddingCache({ namespace: 'model-a', dir });
    assert.deepEqual(Array.from(third.get('z') ?? []), [7, 8]);
    assert.deepEqual(Array.from(third.get('x') ?? []), [1, 2, 3]);
    const other = new EmbeddingCache({ namespace: 'model-b', dir });
    assert.equal(other.get('x'), undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
