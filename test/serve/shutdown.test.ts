import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';

const CRANFIELD = path.resolve('../shared/datasets/cranfield/corpus.jsonl');

/**
 * SIGTERM under load, through the real CLI in a child process: every request the server took
 * before the signal gets a complete 200, and the process exits 0 once they are answered.
 */
test('SIGTERM during load: in-flight requests finish with 200, then exit 0', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'winnow-serve-'));
  const spec = path.join(dir, 'spec.yaml');
  writeFileSync(spec, 'name: bm25\nstages:\n  - rerank: bm25\n');
  // a batch of real documents per request, enough work that requests are still queued at the signal
  const texts = readFileSync(CRANFIELD, 'utf8').split('\n').filter(Boolean).slice(0, 400).map((l) => (JSON.parse(l) as { text: string }).text);
  const child = spawn(
    process.execPath,
    ['--input-type=module', '-e', `import('${path.resolve('dist/src/cli/serve.js')}').then((m) => m.serveCommand(process.argv.slice(1))).then((c) => process.exit(c), (e) => { console.error(e.message); process.exit(1); })`, '--', '--spec', spec, '--corpus', CRANFIELD, '--port', '0', '--max-wait-ms', '1', '--max-batch', '32'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const lines: Record<string, unknown>[] = [];
  const rl = createInterface({ input: child.stdout });
  let firstAnswered: () => void = () => undefined;
  const answered = new Promise<void>((resolve) => (firstAnswered = resolve));
  const listening = new Promise<string>((resolve, reject) => {
    rl.on('line', (line) => {
      const e = JSON.parse(line) as Record<string, unknown>;
      lines.push(e);
      if (e.event === 'listening') resolve(e.url as string);
      if (e.route === '/v2/rerank') firstAnswered();
    });
    child.once('exit', (code) => reject(new Error(`server exited early with ${code}`)));
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    const url = await listening;
    const n = 24;
    const replies = Array.from({ length: n }, (_, i) =>
      fetch(`${url}/v2/rerank`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'bm25', query: `boundary layer flow ${i}`, documents: texts }),
      }).then(async (r) => ({ status: r.status, body: (await r.json()) as { results?: unknown[] } })),
    );
    // Signal once the first request is answered: load is under way and the rest are still in
    // flight, however fast this machine is (a fixed delay was flaky on an idle one).
    await answered;
    child.kill('SIGTERM');
    const got = await Promise.all(replies);
    for (const g of got) {
      assert.equal(g.status, 200);
      assert.equal(g.body.results?.length, texts.length);
    }
    assert.equal(await exited, 0);
    const stopped = lines.find((l) => l.event === 'stopped');
    assert.ok(stopped, 'logged its shutdown');
    console.log(`in flight at SIGTERM: ${stopped.in_flight_at_signal} of ${n}`);
    assert.ok((stopped.in_flight_at_signal as number) > 0, `the signal came during load (${stopped.in_flight_at_signal} in flight)`);
    assert.equal(lines.filter((l) => l.route === '/v2/rerank' && l.status === 200).length, n);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});
