import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { CohereClient, CohereClientV2 } from 'cohere-ai';
import { Costs } from '../../src/core/costs.js';
import type { Doc } from '../../src/core/types.js';
import { Pipeline } from '../../src/cascade/pipeline.js';
import { loadScorer } from '../../src/rerank/load.js';
import { Rerank } from '../../src/rerank/rerank.js';
import { BatchingScorer } from '../../src/serve/batcher.js';
import { DOCS, OverlapScorer, QUERY, start, twoStage } from './helpers.js';

const run = promisify(execFile);

/** The ordering the same cascade gives in-process, without the server. */
async function expectedOrder(): Promise<number[]> {
  const p = twoStage(new OverlapScorer(), new OverlapScorer('logit', 0, 2, 'heavy'), 4, false);
  const docs = new Map<string, Doc>(DOCS.map((t, i) => [String(i), { id: String(i), text: t }]));
  const hits = DOCS.map((_, i) => ({ docId: String(i), score: DOCS.length - i, scores: {} }));
  const [r] = await p.run([{ query: { id: 'q', text: QUERY }, hits }], { docs, costs: new Costs() });
  return r.hits.map((h) => Number(h.docId));
}

async function serve() {
  return start({ cascades: new Map([['winnow-ce', twoStage(new OverlapScorer(), new OverlapScorer('logit', 0, 2, 'heavy'), 4)]]), apiKeys: ['secret'] });
}

test('the official cohere-ai SDK (v2 and v1 clients) reranks against the server unchanged', async () => {
  const expected = await expectedOrder();
  const { server, url } = await serve();
  try {
    const v2 = new CohereClientV2({ token: 'secret', environment: url });
    const r2 = await v2.rerank({ model: 'winnow-ce', query: QUERY, documents: DOCS, topN: 3 });
    assert.deepEqual(r2.results.map((r) => r.index), expected.slice(0, 3));
    for (const r of r2.results) assert.ok(r.relevanceScore > 0 && r.relevanceScore < 1);
    assert.equal(r2.meta?.apiVersion?.version, '2');

    const v1 = new CohereClient({ token: 'secret', environment: url });
    const r1 = await v1.rerank({ model: 'winnow-ce', query: QUERY, documents: DOCS.map((text) => ({ text })), returnDocuments: true });
    assert.deepEqual(r1.results.map((r) => r.index), expected);
    assert.equal(r1.results[0].document?.text, DOCS[expected[0]]);

    const bad = new CohereClientV2({ token: 'wrong', environment: url });
    await assert.rejects(bad.rerank({ model: 'winnow-ce', query: QUERY, documents: DOCS }), (e: Error & { statusCode?: number }) => e.statusCode === 401);
  } finally {
    await server.close();
  }
});

test('the Python cohere SDK (ClientV2) reranks against the server unchanged', async (t) => {
  const python = path.resolve('.venv/serve/bin/python');
  if (!existsSync(python)) {
    t.skip('no .venv/serve (python3 -m venv .venv/serve && .venv/serve/bin/pip install -r tools/requirements-serve.txt)');
    return;
  }
  const expected = await expectedOrder();
  const { server, url } = await serve();
  try {
    const script = [
      'import json, sys, cohere',
      'co = cohere.ClientV2(api_key="secret", base_url=sys.argv[1])',
      'r = co.rerank(model="winnow-ce", query=sys.argv[2], documents=json.loads(sys.argv[3]), top_n=4)',
      'print(json.dumps({"order": [x.index for x in r.results], "scores": [x.relevance_score for x in r.results]}))',
    ].join('\n');
    const { stdout } = await run(python, ['-c', script, url, QUERY, JSON.stringify(DOCS)], { timeout: 30_000 });
    const out = JSON.parse(stdout) as { order: number[]; scores: number[] };
    assert.deepEqual(out.order, expected.slice(0, 4));
    assert.ok(out.scores.every((s) => s > 0 && s < 1));
  } finally {
    await server.close();
  }
});

test('a real ONNX cross-encoder (tiny-bert-ce) behind /v2/rerank: SDK order equals in-process, logits become sigmoid scores', async (t) => {
  const folder = path.resolve('test/fixtures/models/tiny-bert-ce');
  if (!existsSync(folder)) {
    t.skip('test/fixtures/models/tiny-bert-ce not present');
    return;
  }
  const scorer = await loadScorer(folder, {});
  assert.equal(scorer.kind, 'logit');
  const raw = await scorer.score(QUERY, DOCS.map((text, i) => ({ id: String(i), text })));
  const expected = [...raw.keys()].sort((a, b) => raw[b] - raw[a] || a - b);
  const p = new Pipeline([new Rerank(new BatchingScorer(scorer, { maxWaitMs: 1 }), 'ce')]);
  const { server, url } = await start({ cascades: new Map([['tiny-ce', p]]) });
  try {
    const co = new CohereClientV2({ token: 'x', environment: url });
    const r = await co.rerank({ model: 'tiny-ce', query: QUERY, documents: DOCS });
    assert.deepEqual(r.results.map((x) => x.index), expected);
    r.results.forEach((x) => assert.ok(Math.abs(x.relevanceScore - 1 / (1 + Math.exp(-raw[x.index]))) < 1e-6));
  } finally {
    await server.close();
  }
});
