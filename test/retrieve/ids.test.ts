import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hashBytes, IdLog, IdTable } from '../../src/retrieve/ids.js';

const bytes = (s: string): Buffer => Buffer.from(s, 'utf8');

test('id table over an id log: find, replace, absent ids, growth past many doublings', () => {
  const log = new IdLog();
  const table = new IdTable((ord, key) => log.equals(ord, key));
  const ids = Array.from({ length: 50_000 }, (_, i) => `doc-${i}-é`);
  for (const id of ids) table.set(bytes(id), log.push(bytes(id)));
  assert.equal(table.size, ids.length);
  for (let i = 0; i < ids.length; i += 997) assert.equal(table.find(bytes(ids[i])), i);
  assert.equal(table.find(bytes('doc-50000-é')), -1);
  assert.equal(table.find(bytes('doc-1-e')), -1, 'same length, other bytes');
  assert.equal(table.find(bytes('')), -1);
  // an id written again (an upsert within one write) points at its newest ordinal, size unchanged
  const again = log.push(bytes(ids[7]));
  table.set(bytes(ids[7]), again);
  assert.equal(table.find(bytes(ids[7])), again);
  assert.equal(table.size, ids.length);
});

test('id table: equal hashes of different ids are told apart by their bytes', () => {
  const log = new IdLog();
  const table = new IdTable((ord, key) => log.equals(ord, key));
  // every id given the same hash: the worst case, one probe chain for all
  for (const id of ['a', 'b', 'ab', 'ba', 'abc']) table.set(bytes(id), log.push(bytes(id)), 42);
  assert.deepEqual(['a', 'b', 'ab', 'ba', 'abc', 'c'].map((id) => table.find(bytes(id), 42)), [0, 1, 2, 3, 4, -1]);
  table.set(bytes('ab'), log.push(bytes('ab')), 42);
  assert.equal(table.find(bytes('ab'), 42), 5);
  assert.equal(table.find(bytes('ba'), 42), 3);
});

test('id table built with addNew from known-unique ids, sized up front', () => {
  const ids = Array.from({ length: 1000 }, (_, i) => `id${i}`);
  const table = new IdTable((ord, key) => bytes(ids[ord]).equals(key), ids.length);
  ids.forEach((id, i) => table.addNew(hashBytes(bytes(id)), i));
  assert.ok(ids.every((id, i) => table.find(bytes(id)) === i));
  assert.equal(table.find(bytes('id1000')), -1);
});

test('hashBytes is FNV-1a over the byte range', () => {
  assert.equal(hashBytes(bytes('')), 0x811c9dc5);
  assert.equal(hashBytes(bytes('a')), 0xe40c292c);
  assert.equal(hashBytes(bytes('xay'), 1, 2), hashBytes(bytes('a')));
});
