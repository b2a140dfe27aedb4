import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Pipeline } from '../../src/cascade/pipeline.js';
import { Rerank } from '../../src/rerank/rerank.js';
import { BatchingScorer } from '../../src/serve/batcher.js';
import { DOCS, GatedScorer, QUERY, post, start, waitFor } from './helpers.js';

async function ready(url: string): Promise<{ status: number; code?: string }> {
  const r = await fetch(`${url}/ready`);
  const body = (await r.json()) as { error?: { code: string } };
  return { status: r.status, code: body.error?.code };
}

test('/ready is 503 while the models warm up and from the start of a drain; /health stays 200; requests are served during the drain', async () => {
  const model = new GatedScorer();
  const b = new BatchingScorer(model, { maxWaitMs: 0 });
  const { server, url } = await start({ cascades: new Map([['a', new Pipeline([new Rerank(b)])]]), batchers: [b], cache: false });
  try {
    model.hold();
    const warm = server.warmUp();
    await waitFor(() => model.started === 1);
    assert.deepEqual(await ready(url), { status: 503, code: 'warming' });
    assert.equal((await fetch(`${url}/health`)).status, 200, 'alive while warming');
    assert.match(await (await fetch(`${url}/metrics`)).text(), /^winnow_ready 0$/m);
    model.release();
    await warm;
    assert.deepEqual(await ready(url), { status: 200, code: undefined });
    assert.match(await (await fetch(`${url}/metrics`)).text(), /^winnow_ready 1$/m);

    server.drain();
    assert.deepEqual(await ready(url), { status: 503, code: 'shutting_down' });
    assert.equal((await fetch(`${url}/health`)).status, 200, 'alive while draining');
    assert.equal((await post(`${url}/v2/rerank`, { query: QUERY, documents: DOCS })).status, 200, 'still serving until close()');
  } finally {
    model.release();
    await server.close();
  }
});

test('a warm-up that fails leaves /ready at 503 naming the failure', async () => {
  const broken = { id: 'broken', kind: 'logit' as const, score: async (): Promise<Float32Array> => Promise.reject(new Error('model file is damaged')) };
  const { server, url } = await start({ cascades: new Map([['a', new Pipeline([new Rerank(broken)])]]), cache: false });
  try {
    await assert.rejects(server.warmUp(), /damaged/);
    const r = await fetch(`${url}/ready`);
    assert.equal(r.status, 503);
    const body = (await r.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'warm_up_failed');
    assert.match(body.error.message, /model file is damaged/);
  } finally {
    await server.close();
  }
});

test('winnow serve --drain-delay-ms: on SIGTERM /ready turns 503 at once, requests are still answered for the delay, then exit 0', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'winnow-serve-'));
  const spec = path.join(dir, 'spec.yaml');
  writeFileSync(spec, 'name: bm25\nstages:\n  - rerank: bm25\n');
  // a delay far longer than the few requests below take, however loaded the machine
  const child = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `import('${path.resolve('dist/src/cli/serve.js')}').then((m) => m.serveCommand(process.argv.slice(1))).then((c) => process.exit(c), (e) => { console.error(e.message); process.exit(1); })`,
      '--',
      '--spec', spec, '--corpus', path.resolve('../shared/datasets/cranfield/corpus.jsonl'), '--port', '0', '--drain-delay-ms', '8000',
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const lines: Record<string, unknown>[] = [];
  const listening = new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      const e = JSON.parse(line) as Record<string, unknown>;
      lines.push(e);
      if (e.event === 'listening') resolve(e.url as string);
    });
    child.once('exit', (code) => reject(new Error(`server exited early with ${code}`)));
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    const url = await listening;
    await waitFor(async () => (await ready(url)).status === 200);
    assert.ok(lines.some((l) => l.event === 'ready'), 'logged that the warm-up finished');
    child.kill('SIGTERM');
    await waitFor(async () => (await ready(url)).status === 503);
    assert.equal((await ready(url)).code, 'shutting_down');
    assert.equal((await fetch(`${url}/health`)).status, 200);
    const r = await post(`${url}/v2/rerank`, { query: 'wing flow', documents: DOCS });
    assert.equal(r.status, 200, 'served during the drain delay');
    assert.equal(await exited, 0);
    assert.ok(lines.some((l) => l.event === 'draining' && l.drain_delay_ms === 8000));
    assert.ok(lines.some((l) => l.event === 'stopped'));
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});
