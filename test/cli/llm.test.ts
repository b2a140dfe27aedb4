import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'node:test';
import { startFakeLlm } from '../helpers/fake-llm-server.js';

/** The real binary, asynchronously: the fake LLM answers from this process meanwhile. */
function winnowAsync(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [path.resolve('bin/winnow.js'), ...args], { env: { ...process.env, WINNOW_NO_PROGRESS: '1', ...env }, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/**
 * Eight documents about wing flutter; BM25 prefers the short ones, the fake LLM prefers the
 * ones that say "relevant" most, and the qrels agree with the LLM: a known lift.
 */
function dataset(): { dir: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'winnow-llm-'));
  const docs = Array.from({ length: 8 }, (_, i) => ({ _id: `d${i}`, title: '', text: `wing flutter ${'relevant '.repeat(i)}study` }));
  writeFileSync(path.join(dir, 'corpus.jsonl'), docs.map((d) => JSON.stringify(d)).join('\n') + '\n');
  writeFileSync(path.join(dir, 'queries.jsonl'), [['q1', 'wing flutter'], ['q2', 'flutter of a wing']].map(([id, text]) => JSON.stringify({ _id: id, text })).join('\n') + '\n');
  mkdirSync(path.join(dir, 'qrels'));
  writeFileSync(path.join(dir, 'qrels', 'test.tsv'), 'query-id\tcorpus-id\tscore\nq1\td7\t2\nq1\td6\t1\nq2\td7\t1\n');
  return { dir };
}

test('winnow eval --spec with a listwise LLM as the last tier: nDCG lift, calls, tokens and cost columns', async () => {
  const fake = await startFakeLlm({ tokensIn: 1000, tokensOut: 20 });
  const { dir } = dataset();
  const spec = path.join(dir, 'llm.yaml');
  writeFileSync(
    spec,
    [
      'name: bm25-llm',
      'stages:',
      '  - retrieve: bm25',
      '    k: 8',
      '  - listwise:',
      '      model: openai:${WINNOW_LLM_MODEL}',
      '      baseUrl: ${OPENAI_BASE_URL}',
      '      window: 4',
      '      stride: 2',
      '      price: {input: 0.5, output: 1.5}',
      '    name: llm',
      '',
    ].join('\n'),
  );
  try {
    const json = path.join(dir, 'eval.json');
    const r = await winnowAsync(['eval', '--dataset', dir, '--spec', spec, '--json', json, '--index-cache', path.join(dir, 'cache')], {
      WINNOW_LLM_MODEL: 'fake-ranker',
      OPENAI_BASE_URL: `${fake.url}/v1`,
    });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(readFileSync(json, 'utf8')) as { stages: { stage: string; costs: Record<string, number>; metrics: Record<string, number>; lift?: Record<string, number> }[] };
    const llm = out.stages[1];
    assert.equal(llm.stage, 'llm');
    // 8 candidates, window 4, stride 2: windows [4,8), [2,6), [0,4) → 3 calls per query, 2 queries
    assert.equal(llm.costs['llm.calls'], 6);
    assert.equal(llm.costs['llm.tokens.in'], 6000);
    assert.equal(llm.costs['llm.tokens.out'], 120);
    assert.ok(Math.abs(llm.costs['llm.usd'] - (6000 * 0.5 + 120 * 1.5) / 1e6) < 1e-12);
    assert.equal(llm.costs['llm.parse.clean'], 6);
    assert.equal(llm.metrics['nDCG@10'], 1, 'the fake model agrees with the qrels');
    assert.ok((llm.lift?.['nDCG@10'] ?? 0) > 0.3, `lift ${JSON.stringify(llm.lift)}`);
    assert.equal(fake.requests.length, 6);
    assert.equal(fake.requests[0].body.model, 'fake-ranker');
    // the table shows the LLM's cost columns without any edit to the table code
    for (const col of ['llm calls', 'tok in', 'tok out', 'usd']) assert.ok(r.stdout.includes(col), `column ${col} in\n${r.stdout}`);
  } finally {
    await fake.close();
  }
});

test('winnow bias reports nDCG@10 and top-1 changes across input orders', async () => {
  // A position-biased fake: ties broken by prompt position, and every document equally
  // "relevant" to it except d7, so what the model sees first wins the rest of the ranking.
  const fake = await startFakeLlm({ relevance: (_q, p) => (/relevant relevant relevant relevant relevant relevant relevant/.test(p) ? 1 : 0) });
  const { dir } = dataset();
  const spec = path.join(dir, 'llm.yaml');
  writeFileSync(spec, `stages:\n  - retrieve: bm25\n    k: 8\n  - listwise: {model: openai:m, baseUrl: "${fake.url}", window: 4, stride: 2}\n`);
  try {
    const json = path.join(dir, 'bias.json');
    const r = await winnowAsync(['bias', '--spec', spec, '--dataset', dir, '--shuffles', '2', '--json', json, '--index-cache', path.join(dir, 'cache')]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(readFileSync(json, 'utf8')) as { orders: { order: string; 'nDCG@10': number; top1Changed: number; meanRankShift: number }[]; stages: string[] };
    assert.deepEqual(out.orders.map((o) => o.order), ['keep', 'reverse', 'shuffle(seed 1)', 'shuffle(seed 2)']);
    assert.equal(out.orders[0].top1Changed, 0);
    assert.equal(out.orders[0].meanRankShift, 0);
    // d7 is found in every order (top 1 never moves) but the tail follows the input order
    for (const o of out.orders) assert.equal(o.top1Changed, 0, o.order);
    assert.ok(out.orders[1].meanRankShift > 0, 'reversing the input moves the tied tail');
    assert.match(r.stdout, /nDCG@10/);
    assert.match(r.stdout, /top-1 changed/);
    const bad = await winnowAsync(['bias', '--dataset', dir]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--spec/);
  } finally {
    await fake.close();
  }
});
