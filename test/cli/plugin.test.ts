import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { startServeCli } from '../helpers/serve-cli.js';
import { winnow } from './run.js';

/**
 * The recipe in docs/architecture.md, proven: a plugin file outside the package registers a
 * scorer prefix and a new spec key, and both run through `winnow eval --spec` and
 * `winnow serve` with no change to Winnow. The plugin imports nothing from Winnow: it gets
 * the registry as its argument.
 */
const PLUGIN = `
export default function register(registry) {
  // rerank: overlap:NAME -> how many query words a document contains
  registry.defineScorer('overlap', (ref) => ({
    id: ref,
    kind: 'unbounded',
    async score(query, docs, costs) {
      const words = new Set(query.toLowerCase().split(/\\W+/).filter(Boolean));
      costs?.add('plugin.words', words.size * docs.length);
      return Float32Array.from(docs, (d) => d.text.toLowerCase().split(/\\W+/).filter((w) => words.has(w)).length);
    },
  }), 'query words found in the document');
  // reverse: {} -> the list backwards: a listwise stage, new spec key
  registry.defineStage('reverse', () => ({
    name: 'reverse',
    kind: 'reranker',
    scoring: 'listwise',
    scoreKind: 'probability',
    async run(batch, ctx) {
      ctx.costs.add('plugin.reversals', batch.length);
      return batch.map((r) => ({ query: r.query, hits: [...r.hits].reverse().map((h, i, all) => ({ ...h, score: (i + 1) / (all.length + 1), scores: { ...h.scores, reverse: (i + 1) / (all.length + 1) } })) }));
    },
    describe: () => ({ reverse: {} }),
  }), 'reverses the ranking it is given');
}
`;

const DOCS = [
  { _id: 'd1', title: '', text: 'wing flutter at high speed' },
  { _id: 'd2', title: '', text: 'wing flutter and boundary layer flutter wing' },
  { _id: 'd3', title: '', text: 'heat transfer in boundary layers' },
  { _id: 'd4', title: '', text: 'supersonic wing design' },
];

function fixture(): { dir: string; spec: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'winnow-plugin-'));
  writeFileSync(path.join(dir, 'plugin.mjs'), PLUGIN);
  writeFileSync(path.join(dir, 'corpus.jsonl'), DOCS.map((d) => JSON.stringify(d)).join('\n') + '\n');
  writeFileSync(path.join(dir, 'queries.jsonl'), JSON.stringify({ _id: 'q1', text: 'wing flutter' }) + '\n');
  mkdirSync(path.join(dir, 'qrels'));
  writeFileSync(path.join(dir, 'qrels', 'test.tsv'), 'query-id\tcorpus-id\tscore\nq1\td2\t1\n');
  const spec = path.join(dir, 'spec.yaml');
  writeFileSync(spec, 'name: plugged\nplugins: [./plugin.mjs]\nstages:\n  - retrieve: bm25\n    k: 10\n  - rerank: overlap:v1\n    name: overlap\n  - reverse: {}\n');
  return { dir, spec };
}

test('a plugin stage kind runs through winnow eval --spec: rows, costs and the final order', () => {
  const { dir, spec } = fixture();
  const run = path.join(dir, 'final.run');
  const json = path.join(dir, 'eval.json');
  const r = winnow(['eval', '--dataset', dir, '--spec', spec, '--run', run, '--json', json, '--index-cache', path.join(dir, 'cache')]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /overlap/);
  assert.match(r.stdout, /reverse/);
  const out = JSON.parse(readFileSync(json, 'utf8')) as { stages: { stage: string; costs: Record<string, number> }[] };
  // BM25 finds the 3 documents with a query word; 2 query words each
  assert.equal(out.stages[1].costs['plugin.words'], 2 * 3, 'the plugin scorer reported its own cost');
  assert.equal(out.stages[2].costs['plugin.reversals'], 1);
  // overlap puts d2 (4 matches) first; reverse puts it last
  const ids = readFileSync(run, 'utf8').trim().split('\n').map((l) => l.split(/\s+/)[2]);
  assert.equal(ids.at(-1), 'd2');
  // the same plugin from the flag instead of the spec field
  const flagSpec = path.join(dir, 'flag.yaml');
  writeFileSync(flagSpec, 'stages:\n  - retrieve: bm25\n  - rerank: overlap:v2\n');
  const r2 = winnow(['eval', '--dataset', dir, '--spec', flagSpec, '--plugin', path.join(dir, 'plugin.mjs'), '--index-cache', path.join(dir, 'cache')]);
  assert.equal(r2.code, 0, r2.stderr);
});

test('a plugin stage kind runs through winnow serve, Cohere shape', { timeout: 60_000 }, async () => {
  const { dir, spec } = fixture();
  const { url, stop } = await startServeCli(['--spec', spec, '--corpus', path.join(dir, 'corpus.jsonl')]);
  try {
    const res = await fetch(`${url}/v2/rerank`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'plugged', query: 'wing flutter', documents: DOCS.map((d) => d.text) }),
    });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { results: { index: number; relevance_score: number }[] };
    assert.equal(body.results.length, 4);
    assert.equal(body.results.at(-1)?.index, 1, 'the document with most overlap comes last after reverse');
    for (const x of body.results) assert.ok(x.relevance_score > 0 && x.relevance_score < 1, 'probability scores pass unchanged');
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(metrics, /winnow_stage_cost_total\{cascade="plugged",cost="plugin.reversals",stage="reverse",unit="units"\} 1/);
  } finally {
    await stop();
  }
});
