import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { WinnowError } from '../../src/core/errors.js';
import type { Ranking } from '../../src/core/types.js';
import { readQrels, readRun, writeRun } from '../../src/eval/io/trec.js';
import { evaluate, sortRunTrecEval } from '../../src/eval/metrics.js';

const BAD = path.resolve('test/fixtures/io/bad');

function isErr(code: string, re: RegExp) {
  return (e: unknown) => e instanceof WinnowError && e.code === code && re.test(e.message);
}

function ranking(qid: string, hits: [string, number][]): Ranking {
  return { query: { id: qid, text: qid }, hits: hits.map(([docId, score]) => ({ docId, score, scores: {} })) };
}

test('writeRun then readRun keeps every score exactly and ranks in the given order', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'winnow-trec-'));
  try {
    const file = path.join(dir, 'run.txt');
    const close = 0.1234561;
    const rankings = [
      ranking('q1', [
        ['d1', close + 1e-15],
        ['d2', close],
        ['d3', 1e-20],
        ['d4', -3],
      ]),
      ranking('q2', [['x', 5]]),
    ];
    await writeRun(file, rankings, 'mytag');
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    assert.equal(lines[0], `q1 Q0 d1 1 ${String(close + 1e-15)} mytag`);
    assert.equal(lines[4], 'q2 Q0 x 1 5 mytag');
    const run = await readRun(file);
    assert.equal(run.get('q1')!.get('d1'), close + 1e-15);
    assert.equal(run.get('q1')!.get('d2'), close);
    assert.deepEqual(sortRunTrecEval(run.get('q1')!), ['d1', 'd2', 'd3', 'd4']);
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('writeRun refuses ids that would break the format', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'winnow-trec-'));
  try {
    await assert.rejects(writeRun(path.join(dir, 'r'), [ranking('q 1', [['d', 1]])]), isErr('bad_input', /query id 'q 1'/));
    await assert.rejects(writeRun(path.join(dir, 'r'), [ranking('q1', [['d', NaN]])]), isErr('bad_input', /NaN/));
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('readRun and readQrels: bad lines name file and line; missing file is not_found', async () => {
  await assert.rejects(readRun(path.join(BAD, 'bad_run.txt')), isErr('bad_input', /bad_run\.txt:3: expected/));
  await assert.rejects(readRun(path.join(BAD, 'bad_score_run.txt')), isErr('bad_input', /bad_score_run\.txt:2: score 'high'/));
  await assert.rejects(readQrels(path.join(BAD, 'bad_qrels.txt')), isErr('bad_input', /bad_qrels\.txt:2: relevance '1\.5'/));
  await assert.rejects(readRun(path.join(BAD, 'missing.txt')), isErr('not_found', /missing\.txt/));
});

test('duplicate run entries keep the last score (as ir_measures)', async () => {
  const run = await readRun(path.resolve('test/fixtures/metrics/edge/run.txt'));
  assert.equal(run.get('e1')!.get('ok'), 2.75);
  assert.equal(run.get('e4')!.get('d9'), 0.75);
  const qrels = await readQrels(path.resolve('test/fixtures/metrics/edge/qrels.txt'));
  assert.equal(qrels.get('e1')!.get('bad'), -1);
  const { perQuery } = evaluate(qrels, run, ['RR']);
  // 'ok' (rel 1) moves to rank 2 with its later score 2.75.
  assert.equal(perQuery.get('e1')!['RR'], 0.5);
});
