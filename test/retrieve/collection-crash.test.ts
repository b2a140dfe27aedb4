import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Collection } from '../../src/retrieve/collection/collection.js';
import { HashEmbedder } from '../../src/retrieve/dense/embedder.js';

function tmpDir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `winnow-${tag}-`));
}

const WORDS = 'cancer tumor gene sleep memory brain insulin diabetes diet bone muscle virus vaccine'.split(' ');
function corpus(n: number): { id: string; text: string }[] {
  return Array.from({ length: n }, (_, i) => ({ id: `d${i}`, text: Array.from({ length: 3 + (i % 11) }, (_, j) => WORDS[(i * 7 + j * j) % WORDS.length]).join(' ') }));
}

const collectionModule = pathToFileURL(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/retrieve/collection/collection.js')).href;
const embedderModule = pathToFileURL(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/retrieve/dense/embedder.js')).href;

/** A writer process: adds a big batch in small segments and says so once the first is on disk. */
const CHILD = `
import { Collection } from ${JSON.stringify(collectionModule)};
import { HashEmbedder } from ${JSON.stringify(embedderModule)};
const c = Collection.open(process.argv[2], { embedder: new HashEmbedder(16) });
function* docs() {
  for (let i = 0; i < 200000; i++) yield { id: 'big' + i, text: 'crash test words sleep memory ' + (i % 97) + ' cancer ' + (i % 13) };
}
let said = false;
await c.add(docs(), { progress: false, onSegment: () => { if (!said) { said = true; process.stdout.write('writing\\n'); } } });
process.stdout.write('done\\n');
`;

async function killMidWrite(dir: string, delayMs: number): Promise<void> {
  const script = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'winnow-child-')), 'writer.mjs');
  fs.writeFileSync(script, CHILD);
  const child = spawn(process.execPath, [script, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('done')) reject(new Error('the writer finished before it was killed; make its batch bigger'));
      else if (out.includes('writing')) setTimeout(() => { child.kill('SIGKILL'); resolve(); }, delayMs);
    });
    child.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL') reject(new Error(`writer exited by itself (code ${code}): ${err}`));
    });
  });
  await new Promise((r) => child.once('close', r));
}

const QUERIES = ['crash sleep memory', 'cancer tumor gene', 'insulin diet', 'bone'];

async function answers(c: Collection): Promise<string> {
  const out: unknown[] = [];
  for (const q of QUERIES) out.push(c.searchBm25(q, 20), await c.searchDense(q, 20));
  return JSON.stringify(out);
}

test('a writer killed with SIGKILL mid-write leaves the previous generation readable and identical', async () => {
  const dir = tmpDir('crash');
  const embedder = new HashEmbedder(16);
  const c = Collection.create(dir, { embedder, segmentDocs: 2000 });
  await c.add(corpus(300), { progress: false });
  await c.delete(['d7']);
  const generation = c.generation;
  const before = await answers(c);
  c.close();

  for (const delay of [0, 40, 120]) {
    await killMidWrite(dir, delay);
    // Debris of the killed write is there, but no manifest names it.
    const reopened = Collection.open(dir, { embedder });
    assert.equal(reopened.generation, generation, `after a kill ${delay} ms into the write`);
    assert.equal(reopened.size, 299);
    assert.equal(reopened.has('big0'), false);
    assert.equal(await answers(reopened), before);
    reopened.close();
  }
  assert.ok(fs.existsSync(path.join(dir, 'write.lock')), 'the killed writer left its lock behind');

  // The next writer takes over the stale lock, commits, and collects the debris.
  const w = Collection.open(dir, { embedder });
  await w.add([{ id: 'after', text: 'after the crash' }], { progress: false });
  assert.equal(w.generation, generation + 1);
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as { files: Record<string, unknown> };
  assert.deepEqual(fs.readdirSync(dir).filter((f) => f !== 'manifest.json' && f !== 'verified.json' && !(f in manifest.files)), []);
  w.close();
});
