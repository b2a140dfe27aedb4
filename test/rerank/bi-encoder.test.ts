import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BiEncoder } from '../../src/rerank/bi-encoder.js';
import { loadScorer } from '../../src/rerank/load.js';
import { assertClose, expected, modelDir } from '../models/fixtures.js';

const ex = expected['tiny-bert-bi'];
const nq = ex.cosine.length;
const docs = (ex.texts as string[]).slice(nq).map((text, i) => ({ id: `d${i}`, text }));

test('tiny-bert-bi: embeddings equal SentenceTransformer.encode (mean pooling + normalize), any batch size', async () => {
  for (const batchSize of [1, 4, 32]) {
    const bi = await BiEncoder.load(modelDir('tiny-bert-bi'), { batchSize });
    assert.equal(bi.dim, 32);
    const got = await bi.embedDocs(ex.texts);
    assertClose(got, (ex.embeddings as number[][]).flat(), 1e-4, `embeddings batch ${batchSize}`);
    assertClose(await bi.embedQuery(ex.texts[0]), ex.embeddings[0], 1e-4, 'query');
    await bi.close();
  }
});

test('tiny-bert-bi: cosine scores; loadScorer reads sentence-transformers files', async () => {
  const bi = await loadScorer(modelDir('tiny-bert-bi'));
  assert.ok(bi instanceof BiEncoder);
  assert.equal(bi.kind, 'similarity');
  for (let i = 0; i < nq; i++) assertClose(await bi.score(ex.texts[i], docs), ex.cosine[i], 1e-4, `cosine q${i}`);
  await bi.close?.();
});

test('document embeddings are cached: a second query embeds no document', async () => {
  const bi = await BiEncoder.load(modelDir('tiny-bert-bi'), { batchSize: 4 });
  const before = bi.counters.sequences;
  await bi.score('first query', docs);
  const afterFirst = bi.counters.sequences;
  assert.equal(afterFirst - before, 1 + new Set(docs.map((d) => d.text)).size);
  await bi.score('second query', docs);
  assert.equal(bi.counters.sequences - afterFirst, 1, 'only the query was embedded');
  await bi.close();
});

test('the disk store survives a new scorer instance', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'winnow-emb-'));
  try {
    const a = await BiEncoder.load(modelDir('tiny-bert-bi'), { cacheDir: dir });
    const first = await a.score('q', docs);
    await a.close();
    const b = await BiEncoder.load(modelDir('tiny-bert-bi'), { cacheDir: dir });
    const before = b.counters.sequences;
    const again = await b.score('q', docs);
    assert.equal(b.counters.sequences - before, 1, 'only the query was embedded');
    assert.equal(b.cache.hits, docs.length);
    assertClose(again, first, 0, 'same scores');
    // a different prefix is a different namespace: nothing shared
    const c = await BiEncoder.load(modelDir('tiny-bert-bi'), { cacheDir: dir, docPrefix: 'passage: ' });
    const beforeC = c.counters.sequences;
    await c.embedDocs(docs);
    assert.ok(c.counters.sequences - beforeC > 0);
    await b.close();
    await c.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('prefixes change the id and the vectors', async () => {
  const plain = await BiEncoder.load(modelDir('tiny-bert-bi'));
  const e5 = await BiEncoder.load(modelDir('tiny-bert-bi'), { queryPrefix: 'query: ', docPrefix: 'passage: ' });
  assert.notEqual(plain.id, e5.id);
  const [a] = await plain.score('vitamin', docs.slice(-1));
  const [b] = await e5.score('vitamin', docs.slice(-1));
  assert.notEqual(a, b);
  // the prefixed query equals the plain embedding of the prefixed text
  assertClose(await e5.embedQuery('vitamin'), await plain.embedQuery('query: vitamin'), 1e-6, 'prefix');
  await plain.close();
  await e5.close();
});
