import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { startServeCli } from '../helpers/serve-cli.js';

const DOCS = ['the boundary layer thickens', 'wing flutter at high speed', 'heat transfer in laminar flow'];

/** pairs the cross-encoder has been sent so far: the sum of the batch-size histogram */
async function pairsScored(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = /^winnow_inference_batch_pairs_sum\{[^}]*\} (\d+)/m.exec(text);
  assert.ok(m, 'no batch pairs metric');
  return Number(m[1]);
}

// Benchmarks (bench/service-overhead.ts) need every pair scored through the real CLI.
test('winnow serve --no-score-cache scores a repeated request again and keeps no cache counters', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'winnow-nocache-'));
  const spec = path.join(dir, 'spec.yaml');
  writeFileSync(spec, `stages:\n  - rerank: ${path.resolve('test/fixtures/models/tiny-bert-ce')}\n    name: ce\n`);
  // after warm-up, so its pairs are counted before the first measurement
  const { url, stop } = await startServeCli(['--spec', spec, '--no-score-cache'], 'ready');
  try {
    const ask = async (): Promise<number[]> => {
      const res = await fetch(`${url}/v2/rerank`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: 'wing flutter', documents: DOCS }) });
      assert.equal(res.status, 200);
      const body = (await res.json()) as { results: { index: number; relevance_score: number }[] };
      return body.results.map((r) => r.relevance_score);
    };
    const before = await pairsScored(url);
    const first = await ask();
    const second = await ask();
    assert.deepEqual(second, first);
    assert.equal((await pairsScored(url)) - before, 2 * DOCS.length, 'both requests scored every pair');
    assert.doesNotMatch(await (await fetch(`${url}/metrics`)).text(), /^winnow_score_cache_lookups_total\{/m);
  } finally {
    await stop();
  }
});
