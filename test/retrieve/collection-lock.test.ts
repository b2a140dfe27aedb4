import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Collection, checkFiles, readManifest } from '../../src/retrieve/collection/collection.js';
import { WriterLock } from '../../src/retrieve/collection/lock.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const collectionModule = pathToFileURL(path.resolve(here, '../../src/retrieve/collection/collection.js')).href;

/** A writer: waits for the common start time, adds its own documents, reports the outcome. */
const WRITER = `
import { Collection } from ${JSON.stringify(collectionModule)};
const [dir, who, startAt] = process.argv.slice(2);
try {
  const c = Collection.open(dir, { lockTimeoutMs: 60000 });
  // Everyone reaches the lock in the same millisecond: sleep, then spin the last stretch.
  const rest = Number(startAt) - Date.now() - 20;
  if (rest > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, rest);
  while (Date.now() < Number(startAt)) {}
  const docs = Array.from({ length: 12 }, (_, j) => ({ id: who + '-' + j, text: 'race ' + who + ' words ' + j }));
  const r = await c.add(docs, { progress: false });
  c.close();
  process.stdout.write(JSON.stringify({ ok: true, generation: r.generation }));
} catch (e) {
  process.stdout.write(JSON.stringify({ ok: false, code: e.code, message: e.message }));
}
`;

function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

/** What a crash leaves: a lock of a dead writer, its lock temp file, and a killed write's journal and files. */
function simulateCrash(dir: string, generation: number): void {
  const owner = (token: string): string => JSON.stringify({ pid: deadPid(), host: os.hostname(), started: new Date(0).toISOString(), token });
  fs.writeFileSync(path.join(dir, 'write.lock'), owner('deadbeef01'));
  fs.writeFileSync(path.join(dir, '.write.lock.deadbeef02.tmp'), owner('deadbeef02'));
  const debris = [`seg-000900.bm25`, `.seg-000900.docs.${deadPid()}.tmp`];
  for (const f of debris) fs.writeFileSync(path.join(dir, f), 'half a segment');
  fs.writeFileSync(path.join(dir, `gen-${String(generation + 1).padStart(6, '0')}.journal`), `${debris.join('\n')}\n`);
}

function runWriter(script: string, dir: string, who: string, startAt: number): Promise<{ ok: boolean; generation?: number; code?: string; message?: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, dir, who, String(startAt)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('close', () => {
      try {
        resolve(JSON.parse(out) as { ok: boolean; generation?: number });
      } catch {
        reject(new Error(`writer ${who} printed no result: ${out} ${err}`));
      }
    });
  });
}

test('writers racing after a crash: the stale lock is taken over once, every reported success is in the collection', async () => {
  const script = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'winnow-racer-')), 'writer.mjs');
  fs.writeFileSync(script, WRITER);
  const WRITERS = 6;
  const TRIALS = 10;
  for (let trial = 0; trial < TRIALS; trial++) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'winnow-race-'));
    const c = Collection.create(dir, { segmentDocs: 1000 });
    await c.add([{ id: 'base', text: 'before the crash' }], { progress: false });
    c.close();
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'a file a person put here');
    const generation = readManifest(dir).generation;
    simulateCrash(dir, generation);

    const startAt = Date.now() + 1500;
    const results = await Promise.all(Array.from({ length: WRITERS }, (_, w) => runWriter(script, dir, `t${trial}w${w}`, startAt)));
    const won = results.map((r, w) => ({ ...r, who: `t${trial}w${w}` })).filter((r) => r.ok);
    for (const r of results) if (!r.ok) assert.equal(r.code, 'unavailable', `a writer may only fail by waiting too long: ${r.message}`);
    assert.equal(won.length, WRITERS, `trial ${trial}: all writers get their turn within the timeout`);
    const generations = won.map((r) => r.generation).sort((a, b) => a! - b!);
    assert.deepEqual(generations, Array.from({ length: won.length }, (_, i) => generation + 1 + i), `trial ${trial}: one commit per generation`);

    const m = readManifest(dir);
    assert.equal(m.generation, generation + won.length);
    assert.deepEqual(checkFiles(dir, m.files, false).filter((f) => f.status !== 'ok'), [], `trial ${trial}: every file verifies`);
    const after = Collection.open(dir, { verify: 'full' });
    assert.equal(after.size, 1 + 12 * won.length);
    for (const r of won) for (let j = 0; j < 12; j++) assert.ok(after.has(`${r.who}-${j}`), `trial ${trial}: ${r.who}-${j} was reported written`);
    after.close();
    const left = fs.readdirSync(dir).filter((f) => !(f in m.files) && !['manifest.json', 'verified.json', 'notes.txt'].includes(f));
    assert.deepEqual(left, [], `trial ${trial}: no lock, temp file, journal or debris is left`);
    assert.equal(fs.readFileSync(path.join(dir, 'notes.txt'), 'utf8'), 'a file a person put here');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a writer waits for a live lock, and --lock-timeout 0 fails at once with the holder named', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'winnow-wait-'));
  Collection.create(dir).close();
  const corpus = path.join(os.tmpdir(), `winnow-wait-${process.pid}.jsonl`);
  fs.writeFileSync(corpus, `${JSON.stringify({ _id: 'x', text: 'waited for the lock' })}\n`);
  const bin = path.resolve('bin/winnow.js');
  const lock = WriterLock.acquireSync(dir);
  const now = spawnSync(process.execPath, [bin, 'index', dir, '--add', corpus, '--lock-timeout', '0'], { encoding: 'utf8' });
  assert.equal(now.status, 7, now.stderr);
  assert.match(now.stderr, new RegExp(`being written by process ${process.pid}`));
  assert.match(now.stderr, /--lock-timeout/);

  const waiter = spawn(process.execPath, [bin, 'index', dir, '--add', corpus, '--lock-timeout', '60'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  waiter.stdout.on('data', (b: Buffer) => (out += b.toString()));
  // Release only once the waiter has met the lock (its own lock attempt temp files come and go; the
  // manifest is unchanged until we let go).
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(readManifest(dir).generation, 0, 'nothing is committed while the lock is held');
  lock.release();
  const code = await new Promise<number | null>((r) => waiter.on('close', r));
  assert.equal(code, 0, out);
  assert.equal(readManifest(dir).generation, 1);
  const c = Collection.open(dir);
  assert.ok(c.has('x'));
  c.close();
});
