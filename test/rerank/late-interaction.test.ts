import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LateInteraction, maxSim } from '../../src/rerank/late-interaction.js';
import { loadScorer } from '../../src/rerank/load.js';
import { assertClose, expected, modelDir } from '../models/fixtures.js';

const ex = expected['tiny-colbert'];
const docs = (ex.docs as string[]).map((text, i) => ({ id: `d${i}`, text }));

test('tiny-colbert: MaxSim equals the torch reference, any batch size', async () => {
  for (const batchSize of [1, 4, 32]) {
    const li = await LateInteraction.load(modelDir('tiny-colbert'), { batchSize });
    for (let i = 0; i < ex.queries.length; i++) assertClose(await li.score(ex.queries[i], docs), ex.maxsim[i], 1e-4, `q${i} batch ${batchSize}`);
    await li.close();
  }
});

test('tiny-colbert: markers, [MASK] query augmentation and punctuation skipping', async () => {
  const li = await loadScorer(modelDir('tiny-colbert'));
  assert.ok(li instanceof LateInteraction);
  const q = await li.embedQuery(ex.queries[0]);
  assert.equal(q.length, 16 * li.dim, 'padded to the query length');
  const tok = li.folder.tokenizer;
  const [withPunct] = await li.embedDocs(['cells, cells.']);
  const [without] = await li.embedDocs(['cells cells']);
  assert.equal(withPunct.length, without.length, 'punctuation rows are dropped');
  assert.ok(tok.tokenId('[unused0]') !== undefined);
  await li.close?.();
});

test('document matrices are cached across queries', async () => {
  const li = await LateInteraction.load(modelDir('tiny-colbert'));
  await li.score('one', docs);
  const after = li.counters.sequences;
  await li.score('two', docs);
  assert.equal(li.counters.sequences - after, 1);
  await li.close();
});

test('maxSim: sum of per-query-row maxima; an empty document scores 0', () => {
  const q = new Float32Array([1, 0, 0, 1]);
  const d = new Float32Array([0.5, 0.5, 1, 0, 0, 0.25]);
  assert.equal(maxSim(q, d, 2), 1 + 0.5);
  assert.equal(maxSim(q, new Float32Array(0), 2), 0);
});
