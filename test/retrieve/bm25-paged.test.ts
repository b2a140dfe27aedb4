import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LRUCache } from 'lru-cache';
import { WinnowError } from '../../src/core/errors.js';
import type { Doc } from '../../src/core/types.js';
import { Bm25Index } from '../../src/retrieve/bm25/index.js';
import { MemoryBm25File, PagedBm25File, postingsBytes, type Bm25Source, type Postings } from '../../src/retrieve/bm25/paged.js';
import { SegmentedBm25 } from '../../src/retrieve/collection/bm25.js';
import { Collection } from '../../src/retrieve/collection/collection.js';

const WORDS = ['apple', 'banana', 'cherry', 'date', 'café', 'résumé', '中文', 'zeta', 'ärger', 'apples', 'bananas', 'x', 'yy'];

/** Deterministic small corpus with skewed word frequencies and a few empty documents. */
function corpus(n: number, offset = 0): Doc[] {
  let seed = 7 + offset;
  const rand = (): number => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  return Array.from({ length: n }, (_, i) => {
    const len = i % 17 === 5 ? 0 : 1 + Math.floor(rand() * 12);
    // Stop words only: a document with no terms after analysis.
    const text = len === 0 ? 'the of' : Array.from({ length: len }, () => WORDS[Math.floor(rand() ** 2 * WORDS.length)]).join(' ');
    return { id: `d${offset + i}-ü`, text };
  });
}

const QUERIES = ['apple', 'banana cherry', 'cherry cherry date', 'café résumé', '中文 zeta', 'ärger x yy apples', 'nothing here'];

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'winnow-paged-'));
}

function cacheOf(bytes: number): LRUCache<string, Postings> {
  return new LRUCache<string, Postings>({ maxSize: bytes, sizeCalculation: postingsBytes });
}

async function segmentFiles(dir: string): Promise<string[]> {
  const files: string[] = [];
  for (let s = 0; s < 3; s++) {
    const index = await Bm25Index.build(corpus(40 + 13 * s, 1000 * s), { progress: false });
    const file = path.join(dir, `seg${s}.bm25`);
    index.save(file);
    files.push(file);
  }
  return files;
}

function segmented(sources: Bm25Source[], deleted: (Uint8Array | undefined)[]): SegmentedBm25 {
  const s0 = sources[0];
  return new SegmentedBm25(
    sources.map((source, i) => ({ source, deleted: deleted[i] })),
    s0.params,
    { stem: s0.stem, stopWords: s0.stopWords, lossyNorms: s0.lossyNorms },
  );
}

test('paged postings score exactly like the file read whole, with deletes and a cache smaller than one query', async () => {
  const files = await segmentFiles(tmpDir());
  const deleted = [undefined, Uint8Array.from({ length: 53 }, (_, d) => (d % 4 === 1 ? 1 : 0)), undefined];
  const memory = segmented(files.map((f) => new MemoryBm25File(f)), deleted);
  for (const cacheBytes of [1 << 20, 200]) {
    const paged = files.map((f, i) => new PagedBm25File(f, cacheOf(cacheBytes), String(i)));
    const bm25 = segmented(paged, deleted);
    assert.equal(bm25.docCount, memory.docCount);
    assert.equal(bm25.avgdl, memory.avgdl);
    for (const q of QUERIES) {
      const want = memory.search(q, 1000);
      assert.deepEqual(bm25.search(q, 1000), want, q);
      assert.deepEqual(bm25.search(q, 3), want.slice(0, 3), q);
      for (const w of q.split(' ')) assert.equal(bm25.df(w), memory.df(w), w);
    }
    // Every term of every file is found by the byte-order binary search, and every doc id decodes.
    files.forEach((f, i) => {
      const whole = new MemoryBm25File(f);
      whole.data.terms.forEach((t, id) => assert.equal(paged[i].termId(t), id, t));
      assert.equal(paged[i].termId('absent'), -1);
      assert.equal(paged[i].termId('a'.repeat(300)), -1);
      whole.data.docIds.forEach((id, d) => assert.equal(paged[i].docId(d), id));
    });
    for (const p of paged) p.close();
  }
});

test('a postings block changed after open is refused by its crc32, naming the file and the term', async () => {
  const [file] = await segmentFiles(tmpDir());
  const paged = new PagedBm25File(file, cacheOf(1 << 20), '0');
  const whole = new MemoryBm25File(file);
  const term = whole.data.terms.find((w, i) => whole.postingCount(i) > 2 && w !== 'appl')!;
  const t = paged.termId(term);
  assert.ok(t >= 0);
  // The block sits at postingsOffset + 8 * postingStarts[t]: flip a byte of its tf half.
  const bytes = fs.readFileSync(file);
  const postingsOffset = bytes.readDoubleLE(80);
  const at = postingsOffset + 8 * whole.data.postingStarts[t] + 4 * paged.postingCount(t) + 4;
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.from([bytes[at] ^ 0x10]), 0, 1, at);
  fs.closeSync(fd);
  assert.deepEqual(paged.postings(paged.termId('appl')).docs, whole.postings(whole.termId('appl')).docs);
  assert.throws(
    () => paged.postings(t),
    (e: unknown) => e instanceof WinnowError && e.code === 'corrupt_index' && e.message.includes(file) && e.message.includes(`"${term}"`) && /crc32/.test(e.message),
  );
  paged.close();
  // Read whole, the file fails its sha256.
  assert.throws(() => new MemoryBm25File(file), (e: unknown) => e instanceof WinnowError && e.code === 'corrupt_index' && /checksum mismatch/.test(e.message));
});

test('a damaged dictionary is refused when the file is opened', async () => {
  const [file] = await segmentFiles(tmpDir());
  const bytes = fs.readFileSync(file);
  bytes[bytes.readDoubleLE(80) - 9] ^= 0x01; // inside the resident part (term blob or its padding)
  fs.writeFileSync(file, bytes);
  assert.throws(
    () => new PagedBm25File(file, cacheOf(1 << 20), '0'),
    (e: unknown) => e instanceof WinnowError && e.code === 'corrupt_index' && e.message.includes(file) && /dictionary checksum/.test(e.message),
  );
  assert.throws(() => new PagedBm25File(path.join(path.dirname(file), 'nope.bm25'), cacheOf(1), '0'), (e: unknown) => e instanceof WinnowError && e.code === 'not_found');
});

test('a collection serves paged BM25 from a postings cache far smaller than its postings, scores equal a fresh build', async () => {
  const dir = path.join(tmpDir(), 'c');
  const docs = corpus(300);
  const c = Collection.create(dir, { segmentDocs: 70 });
  await c.add(docs, { progress: false });
  await c.delete(['d3-ü', 'd100-ü', 'd250-ü']);
  c.close();
  const live = docs.filter((d) => !['d3-ü', 'd100-ü', 'd250-ü'].includes(d.id));
  const fresh = await Bm25Index.build(live, { progress: false });
  const reader = Collection.open(dir, { postingsCacheBytes: 256 });
  assert.equal(reader.segmentCount, 5);
  for (const q of QUERIES) {
    const got = reader.searchBm25(q, 50);
    const want = fresh.search(q, 50);
    assert.equal(got.length, want.length, q);
    got.forEach((h, i) => {
      assert.equal(h.docId, want[i].docId, q);
      assert.ok(Math.abs(h.score - want[i].score) < 1e-5, q);
    });
  }
  assert.ok(reader.has('d7-ü') && !reader.has('d3-ü'));
  assert.equal(reader.get('d7-ü')?.text, docs[7].text);
  reader.close();
  assert.throws(() => reader.bm25.search('apple', 3), (e: unknown) => e instanceof WinnowError && /closed/.test(e.message));
});
