import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { assertCleanFailure, winnow } from './run.js';

function tmpDir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `winnow-${tag}-`));
}

const WORDS = 'cancer tumor gene sleep memory brain insulin diabetes diet bone muscle virus vaccine'.split(' ');
function corpusFile(dir: string, n: number, prefix = 'd'): string {
  const file = path.join(dir, `${prefix}-corpus.jsonl`);
  const lines = Array.from({ length: n }, (_, i) => JSON.stringify({ _id: `${prefix}${i}`, title: '', text: Array.from({ length: 4 + (i % 9) }, (_, j) => WORDS[(i * 7 + j * j) % WORDS.length]).join(' ') }));
  fs.writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

function listing(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true }).map(String).sort();
}

test('index refuses a non-empty folder that is not a collection and touches nothing in it', () => {
  const project = tmpDir('project');
  fs.writeFileSync(path.join(project, 'README.md'), '# mine\n');
  fs.mkdirSync(path.join(project, '.git'));
  fs.writeFileSync(path.join(project, '.git', 'HEAD'), 'ref: refs/heads/main\n');
  fs.mkdirSync(path.join(project, 'src'));
  fs.writeFileSync(path.join(project, 'src', 'a.ts'), 'export {};\n');
  const corpus = corpusFile(project, 20);
  const before = listing(project);

  const r = winnow(['index', project, '--corpus', corpus]);
  assertCleanFailure(r, 4, /refusing to create a collection in .* not empty .* not a Winnow collection/);
  assert.match(r.stderr, /new or empty/);
  assert.deepEqual(listing(project), before);

  // The parent of a folder (`winnow index ..`) is refused the same way.
  const parent = path.dirname(path.join(project, 'src'));
  assertCleanFailure(winnow(['index', `${parent}/src/..`, '--corpus', corpus]), 4, /not empty/);
  assert.deepEqual(listing(project), before);
});

test('a first build that fails on a bad corpus line removes only what it wrote', () => {
  const root = tmpDir('failbuild');
  const bad = path.join(root, 'bad.jsonl');
  fs.writeFileSync(bad, `${JSON.stringify({ _id: 'a', text: 'fine words' })}\n{not json\n`);
  const fresh = path.join(root, 'fresh');
  assertCleanFailure(winnow(['index', fresh, '--corpus', bad]), 4, /bad\.jsonl:2/);
  assert.equal(fs.existsSync(fresh), false, 'a folder the build created is removed again');

  const empty = path.join(root, 'empty');
  fs.mkdirSync(empty);
  assertCleanFailure(winnow(['index', empty, '--corpus', bad]), 4, /bad\.jsonl:2/);
  assert.equal(fs.existsSync(path.join(empty, 'manifest.json')), false);
  assert.equal(fs.existsSync(root), true);
  assert.ok(fs.existsSync(bad));
});

test('a lost manifest leaves the segments in place; create is refused and --repair rebuilds it', () => {
  const root = tmpDir('lost');
  const dir = path.join(root, 'coll');
  assert.equal(winnow(['index', dir, '--corpus', corpusFile(root, 60), '--segment-docs', '25']).code, 0);
  assert.equal(winnow(['index', dir, '--add', corpusFile(root, 30, 'e')]).code, 0);
  assert.equal(winnow(['index', dir, '--delete', 'd3', 'e4']).code, 0);
  const want = winnow(['search', dir, 'cancer tumor gene', '--first-pass', 'bm25', '--k', '50', '--json']);
  const segments = fs.readdirSync(dir).filter((f) => /^seg-/.test(f));
  fs.rmSync(path.join(dir, 'manifest.json'));

  assertCleanFailure(winnow(['search', dir, 'cancer']), 5, /lost its manifest\.json[\s\S]*--repair/);
  assertCleanFailure(winnow(['index', dir, '--corpus', corpusFile(root, 5, 'z')]), 4, /manifest\.json is missing[\s\S]*--repair/);
  assert.deepEqual(fs.readdirSync(dir).filter((f) => /^seg-/.test(f)), segments, 'no segment file was deleted');

  const r = winnow(['index', dir, '--repair']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /recovered segment \d+/);
  assert.match(r.stdout, /88 documents/);
  const got = winnow(['search', dir, 'cancer tumor gene', '--first-pass', 'bm25', '--k', '50', '--json']);
  assert.equal(got.code, 0, got.stderr);
  assert.deepEqual(hitsOf(got.stdout), hitsOf(want.stdout), 'the repaired collection answers as before (deletes kept)');
  assert.equal(winnow(['index', dir, '--verify']).code, 0);
});

test('--repair leaves a damaged segment out, in place, and says so', () => {
  const root = tmpDir('repairdamaged');
  const dir = path.join(root, 'coll');
  assert.equal(winnow(['index', dir, '--corpus', corpusFile(root, 60), '--segment-docs', '20']).code, 0);
  const docs = fs.readdirSync(dir).filter((f) => f.endsWith('.docs')).sort()[1];
  flipByte(path.join(dir, docs));
  fs.rmSync(path.join(dir, 'manifest.json'));
  const r = winnow(['index', dir, '--repair']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`skipped seg-\\d+\\.bm25: ${docs.replace('.', '\\.')} fails its sha256`));
  assert.match(r.stdout, /40 documents in 2 segments/);
  assert.ok(fs.existsSync(path.join(dir, docs)), 'the damaged file is left for a person to look at');
});

function hitsOf(stdout: string): unknown {
  const j = JSON.parse(stdout) as { hits?: unknown[] } | unknown[];
  return Array.isArray(j) ? j : j.hits;
}

function flipByte(file: string, at?: number): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const size = fs.fstatSync(fd).size;
    const pos = at ?? Math.floor(size / 2);
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, pos);
    b[0] ^= 0x20;
    fs.writeSync(fd, b, 0, 1, pos);
  } finally {
    fs.closeSync(fd);
  }
}

test('one flipped byte in any kind of file is refused by search, --info and --add, naming the file', () => {
  const root = tmpDir('flip');
  const dir = path.join(root, 'coll');
  const build = winnow(['index', dir, '--corpus', corpusFile(root, 80), '--model', 'hash:16', '--exact-below', '10']);
  assert.equal(build.code, 0, build.stderr);
  assert.equal(winnow(['index', dir, '--delete', 'd1']).code, 0);
  const more = corpusFile(root, 3, 'n');
  const files = Object.keys((JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as { files: Record<string, unknown> }).files);
  const kinds: [string, RegExp][] = [
    ['document store', /\.docs$/],
    ['metadata', /\.meta$/],
    ['vectors', /\.vec$/],
    ['HNSW graph', /\.usearch$/],
    ['BM25 postings', /\.bm25$/],
    ['tombstones', /\.del$/],
  ];
  assert.equal(winnow(['search', dir, 'cancer gene', '--first-pass', 'hybrid']).code, 0, 'the intact collection searches');
  for (const [kind, pattern] of kinds) {
    const name = files.find((f) => pattern.test(f));
    assert.ok(name, `the collection has a ${kind} file`);
    const file = path.join(dir, name);
    const original = fs.readFileSync(file);
    const { atime, mtime } = fs.statSync(file);
    flipByte(file);
    // Put the mtime back: the cache must still notice (the ctime changed and cannot be set).
    fs.utimesSync(file, atime, mtime);
    const named = new RegExp(`${name.replace(/\./g, '\\.')} fails its checksum`);
    assertCleanFailure(winnow(['search', dir, 'cancer gene', '--first-pass', 'hybrid']), 5, named);
    assertCleanFailure(winnow(['index', dir, '--info']), 5, named);
    assertCleanFailure(winnow(['index', dir, '--add', more]), 5, named);
    const v = winnow(['index', dir, '--verify']);
    assertCleanFailure(v, 5, new RegExp(`1 of ${files.length} files damaged or missing: ${name.replace(/\./g, '\\.')}`));
    assert.match(v.stdout, new RegExp(`${name.replace(/\./g, '\\.')}: DAMAGED`), `${kind}: --verify lists the file`);
    fs.writeFileSync(file, original);
  }
  const ok = winnow(['index', dir, '--verify']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, new RegExp(`all ${files.length} files verified`));
  assert.equal(winnow(['index', dir, '--add', more]).code, 0, 'restored files are accepted again');
});
