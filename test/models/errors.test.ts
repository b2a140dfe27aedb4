import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { WinnowError } from '../../src/core/errors.js';
import { Costs } from '../../src/core/costs.js';
import { readModelFolder } from '../../src/models/folder.js';
import { openSession, openSessionCount } from '../../src/models/onnx.js';
import { BiEncoder } from '../../src/rerank/bi-encoder.js';
import { CrossEncoder } from '../../src/rerank/cross-encoder.js';
import { loadScorer } from '../../src/rerank/load.js';
import { modelDir } from './fixtures.js';

const scratch: string[] = [];
after(() => scratch.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** a scratch copy of a fixture model, changed by `edit` */
function copy(name: string, edit: (dir: string) => void): string {
  const root = mkdtempSync(path.join(tmpdir(), 'winnow-model-'));
  scratch.push(root);
  const dir = path.join(root, name);
  cpSync(modelDir(name), dir, { recursive: true });
  edit(dir);
  return dir;
}

async function rejectsModelError(p: Promise<unknown> | (() => unknown), pattern: RegExp): Promise<void> {
  await assert.rejects(
    async () => (typeof p === 'function' ? p() : p),
    (e: unknown) => e instanceof WinnowError && e.code === 'model_error' && pattern.test(e.message) && !!e.hint,
  );
}

test('missing folder', async () => {
  await rejectsModelError(loadScorer('/nonexistent/winnow-model'), /\/nonexistent\/winnow-model does not exist/);
});

test('missing and corrupt model.onnx name the folder', async () => {
  const missing = copy('tiny-bert-ce', (d) => rmSync(path.join(d, 'onnx', 'model.onnx')));
  await rejectsModelError(CrossEncoder.load(missing), /tiny-bert-ce: model file onnx\/model\.onnx is missing/);
  const corrupt = copy('tiny-bert-ce', (d) => writeFileSync(path.join(d, 'onnx', 'model.onnx'), 'not a model'));
  await rejectsModelError(CrossEncoder.load(corrupt), /model\.onnx: not a loadable ONNX model/);
  const truncated = copy('tiny-bert-ce', (d) => {
    const f = path.join(d, 'onnx', 'model.onnx');
    writeFileSync(f, readFileSync(f).subarray(0, 5000));
  });
  await rejectsModelError(CrossEncoder.load(truncated), /not a loadable ONNX model/);
});

test('missing tokenizer.json', async () => {
  const dir = copy('tiny-bert-ce', (d) => rmSync(path.join(d, 'tokenizer.json')));
  await rejectsModelError(() => readModelFolder(dir), /tiny-bert-ce: no tokenizer\.json/);
});

test('tokenizer vocabulary larger than the embedding table', async () => {
  const dir = copy('tiny-bert-ce', (d) => {
    const f = path.join(d, 'config.json');
    writeFileSync(f, JSON.stringify({ ...JSON.parse(readFileSync(f, 'utf8')), vocab_size: 1000 }));
  });
  await rejectsModelError(CrossEncoder.load(dir), /tokenizer\.json has 1500 tokens but the model's embedding table has 1000/);
});

test('an embedding model used as a cross-encoder, and a cross-encoder used as a bi-encoder', async () => {
  await rejectsModelError(CrossEncoder.load(modelDir('tiny-bert-bi')), /not a cross-encoder: it outputs last_hidden_state \[1, 2, 32\]/);
  await rejectsModelError(BiEncoder.load(modelDir('tiny-bert-ce')), /not an embedding model: it outputs logits \[1, 1\]/);
});

test('an activation that does not fit the label count is a usage error', async () => {
  await assert.rejects(CrossEncoder.load(modelDir('tiny-bert-ce'), { activation: 'softmax' }), (e: unknown) => e instanceof WinnowError && e.code === 'usage');
});

test('empty, whitespace and lone-surrogate texts score without crashing', async () => {
  const ce = await CrossEncoder.load(modelDir('tiny-bert-ce'));
  const stats = new Costs();
  const scores = await ce.score('', [{ id: 'a', text: '' }, { id: 'b', text: ' ' }, { id: 'c', text: 'x\uD800y' }, { id: 'd', text: 'x\uFFFDy' }], stats);
  assert.equal(scores.length, 4);
  assert.ok(Array.from(scores).every(Number.isFinite));
  assert.equal(scores[2], scores[3], 'lone surrogate scores like U+FFFD');
  assert.deepEqual(await ce.score('q', []), new Float32Array(0));
  await ce.close();
});

test('one session per model file and options, shared by scorers; closed by the last one', async () => {
  const before = openSessionCount();
  const a = await CrossEncoder.load(modelDir('tiny-bert-ce'), { threads: 1 });
  const b = await CrossEncoder.load(modelDir('tiny-bert-ce'), { threads: 1, activation: 'sigmoid' });
  assert.equal(openSessionCount(), before + 1);
  assert.equal(a.counters, b.counters);
  await a.close();
  assert.equal(openSessionCount(), before + 1);
  await b.close();
  assert.equal(openSessionCount(), before);
  const s = await openSession(path.join(modelDir('tiny-xlmr-ce'), 'onnx/model.onnx'), [0, 2], { graphOptimization: 'basic' });
  assert.equal(s.usesTokenTypes, false);
  await s.release();
});
