import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { WinnowEnv } from '../../src/cascade/env.js';
import { compileSpec } from '../../src/cascade/spec.js';
import { Costs } from '../../src/core/costs.js';
import { loadServeSpec, serveCommand } from '../../src/cli/serve.js';
import { withBatching, BatchingScorer } from '../../src/serve/batcher.js';
import { post, start } from './helpers.js';

const CORPUS = path.resolve('../shared/datasets/cranfield/corpus.jsonl');

function specFile(text: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'winnow-spec-'));
  const f = path.join(dir, 'spec.yaml');
  writeFileSync(f, text);
  return f;
}

test('a retriever-backed spec serves /v1/search and, skipping its retriever, the rerank routes', async () => {
  const file = specFile(`
cascades:
  search:
    stages:
      - retrieve: bm25
        k: 50
      - rerank: bm25
        name: rerank
      - top: 10
  plain:
    stages:
      - rerank: bm25
serve:
  max_docs: 7
  max_wait_ms: 1
`);
  const { cascades, settings } = loadServeSpec(file);
  assert.deepEqual([...cascades.keys()], ['search', 'plain']);
  assert.deepEqual(settings, { 'max-docs': '7', 'max-wait-ms': '1' });

  const base = await WinnowEnv.create({ corpus: CORPUS });
  const { env, batchers } = withBatching(base, { maxWaitMs: 1 });
  const pipelines = new Map();
  for (const [name, spec] of cascades) pipelines.set(name, await compileSpec(spec, env, name));
  assert.equal(batchers.size, 1, 'one BM25 scorer, one shared batcher');
  const { server, url } = await start({ cascades: pipelines, docs: base.lookup, limits: { maxDocs: 7 } });
  try {
    const query = 'boundary layer transition at high speed';
    const s = await post(`${url}/v1/search`, { model: 'search', query, top_n: 5, return_documents: true });
    assert.equal(s.status, 200);
    assert.equal(s.json.results.length, 5);
    assert.deepEqual(s.json.stages.map((x: { stage: string }) => x.stage), ['bm25 k=50', 'rerank → top(10)']);
    assert.equal(typeof s.json.results[0].text, 'string');
    // the same as running the spec in-process
    const [want] = await pipelines.get('search').run([{ query: { id: 'q', text: query }, hits: [] }], { docs: base.lookup, costs: new Costs() });
    assert.deepEqual(s.json.results.map((r: { id: string }) => r.id), want.hits.slice(0, 5).map((h: { docId: string }) => h.docId));

    const texts = s.json.results.map((r: { text: string }) => r.text);
    const rr = await post(`${url}/v2/rerank`, { model: 'search', query, documents: [...texts].reverse() });
    assert.equal(rr.status, 200);
    assert.deepEqual(rr.json.results.map((r: { index: number }) => 4 - r.index), [0, 1, 2, 3, 4]);

    const noRetriever = await post(`${url}/v1/search`, { model: 'plain', query });
    assert.equal(noRetriever.status, 400);
    assert.equal(noRetriever.json.error.code, 'not_a_retriever');
    assert.ok(s.json.results.every((r: { scores: Record<string, number> }) => 'bm25' in r.scores && 'rerank' in r.scores));
    assert.ok([...batchers.values()][0] instanceof BatchingScorer);
  } finally {
    await server.close();
  }
});

test('serve CLI: bad flags and specs are usage/spec errors, not crashes', async () => {
  await assert.rejects(serveCommand(['--port', '8080']), (e: Error & { code?: string }) => e.code === 'usage');
  await assert.rejects(serveCommand(['--spec', 'x.yaml', '--bogus']), (e: Error & { code?: string }) => e.code === 'usage');
  await assert.rejects(serveCommand(['--spec', '/nonexistent/spec.yaml']), (e: Error & { code?: string }) => e.code === 'not_found');
  const bad = specFile('cascades:\n  a:\n    stages: []\n');
  await assert.rejects(serveCommand(['--spec', bad]), (e: Error & { code?: string }) => e.code === 'bad_spec');
  const unknownSetting = specFile('stages:\n  - rerank: bm25\nserve:\n  turbo: 1\n');
  await assert.rejects(serveCommand(['--spec', unknownSetting]), (e: Error & { code?: string }) => e.code === 'bad_spec' && /serve\.turbo/.test(e.message));
  const ok = specFile('stages:\n  - rerank: bm25\n');
  await assert.rejects(serveCommand(['--spec', ok, '--max-docs', 'lots']), (e: Error & { code?: string }) => e.code === 'usage' && /--max-docs/.test(e.message));
});
