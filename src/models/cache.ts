/**
 * The local model cache: `<WINNOW_HOME or ~/.cache/winnow>/models/<slug>/`, one Hugging Face
 * style folder per model plus a `winnow-model.json` manifest.
 *
 * A pull assembles the folder under `models/.partial/<slug>/` and renames it into place only
 * after the manifest (written last) is there, so `models/<slug>` either is whole or does not
 * exist: a killed pull never leaves a folder that a loader would half-read, and the partial
 * files stay behind for the next pull to resume.
 */
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { WinnowError } from '../core/errors.js';
import { checkFileName, safeJoin } from './paths.js';

export const MANIFEST_FILE = 'winnow-model.json';

export type ModelTask = 'embedding' | 'cross-encoder' | 'late-interaction';

/** The shared manifest contract (see the model conventions); loaders read it before HF files. */
export interface ModelManifest {
  source: string;
  id: string;
  revision: string;
  task: ModelTask;
  onnx: string;
  pooling?: 'mean' | 'cls';
  normalize?: boolean;
  maxLength?: number;
  queryPrefix?: string;
  docPrefix?: string;
  scoreKind?: 'logit' | 'probability' | 'similarity';
  /** Every ONNX file in the folder (e.g. fp32 and int8), `onnx` being the default one. */
  onnxFiles?: string[];
  /** Files Winnow wrote itself because the source lacked them, so nobody mistakes them for upstream's. */
  synthesized?: string[];
  /** Where the bytes came from (jar/wheel URL) and their checksum, for audit. */
  origin?: { url: string; sha1?: string; sha256?: string };
  pulledAt?: string;
}

export interface CachedModel {
  slug: string;
  dir: string;
  source: string;
  id: string;
  revision: string;
  task: string;
  bytes: number;
}

export function winnowHome(): string {
  return process.env.WINNOW_HOME ?? path.join(os.homedir(), '.cache', 'winnow');
}

export function modelsRoot(): string {
  return path.join(winnowHome(), 'models');
}

/**
 * A cache folder name for a model: one path component, readable, stable. Characters that are
 * not safe in file names on every OS become `_`; `/` and `:` separators become `--` as in the
 * Hugging Face cache, so `BAAI/bge-small-en-v1.5` is `BAAI--bge-small-en-v1.5`.
 */
export function slugify(...parts: string[]): string {
  const slug = parts
    .filter((p) => p.length > 0)
    .map((p) => p.replace(/[/:]+/g, '--').replace(/[^A-Za-z0-9._@=+-]/g, '_'))
    .join('--');
  if (slug === '' || /^\.+$/.test(slug)) throw new WinnowError('bad_input', `cannot make a cache folder name from "${parts.join(':')}"`);
  return slug;
}

export function modelDir(slug: string): string {
  return safeJoin(modelsRoot(), checkFileName(slug, 'model cache folder name'), 'model cache folder name');
}

/** Where a pull in progress assembles its folder; survives failures so downloads can resume. */
export function stagingDir(slug: string): string {
  return safeJoin(path.join(modelsRoot(), '.partial'), checkFileName(slug, 'model cache folder name'), 'model cache folder name');
}

export async function readManifest(dir: string): Promise<ModelManifest | undefined> {
  let text: string;
  try {
    text = await readFile(path.join(dir, MANIFEST_FILE), 'utf8');
  } catch {
    return undefined;
  }
  try {
    return JSON.parse(text) as ModelManifest;
  } catch (err) {
    throw new WinnowError('model_error', `${path.join(dir, MANIFEST_FILE)} is not valid JSON: ${(err as Error).message}`,
      'delete the folder and pull the model again');
  }
}

/**
 * True when `dir` holds a usable model: our manifest, or (for files a person copied in by hand,
 * which never pass through staging) a tokenizer plus at least one ONNX file.
 */
export async function isComplete(dir: string): Promise<boolean> {
  if (existsSync(path.join(dir, MANIFEST_FILE))) return true;
  if (!existsSync(path.join(dir, 'tokenizer.json'))) return false;
  try {
    return (await readdir(path.join(dir, 'onnx'))).some((f) => f.endsWith('.onnx'));
  } catch {
    return false;
  }
}

/** Writes through a temp file and a rename, so readers never see a half-written file. */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, data);
  await rename(tmp, file);
}

export async function writeManifest(dir: string, manifest: ModelManifest): Promise<void> {
  await writeFileAtomic(path.join(dir, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n');
}

/**
 * Moves a finished staging folder to `models/<slug>`. The manifest must already be in it: that
 * is what makes the rename the moment the model becomes visible.
 */
export async function commitStaging(slug: string): Promise<string> {
  const from = stagingDir(slug);
  const to = modelDir(slug);
  if (!existsSync(path.join(from, MANIFEST_FILE))) {
    throw new WinnowError('internal', `refusing to publish ${from} without ${MANIFEST_FILE}`);
  }
  // A folder already there is an older or hand-made copy the user asked us to replace.
  if (existsSync(to)) await rm(to, { recursive: true, force: true });
  await rename(from, to);
  // Leave no empty `.partial` behind once nothing is in flight (fails harmlessly if something is).
  await rmdir(path.dirname(from)).catch(() => undefined);
  return to;
}

export async function dirSize(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) total += await dirSize(full);
    else if (entry.isFile()) total += (await stat(full)).size;
  }
  return total;
}

export async function hashFile(file: string, algorithm: 'sha1' | 'sha256'): Promise<string> {
  const hash = createHash(algorithm);
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Every complete model in the cache, sorted by slug. Staging folders are not listed. */
export async function listModels(): Promise<CachedModel[]> {
  const root = modelsRoot();
  let names: string[];
  try {
    names = (await readdir(root, { withFileTypes: true }))
      .filter((d) => d.isDirectory() && !d.name.startsWith('.'))
      .map((d) => d.name);
  } catch {
    return [];
  }
  const models: CachedModel[] = [];
  for (const slug of names.sort()) {
    const dir = path.join(root, slug);
    if (!(await isComplete(dir))) continue;
    const manifest = await readManifest(dir);
    models.push({
      slug,
      dir,
      source: manifest?.source ?? 'local',
      id: manifest?.id ?? slug,
      revision: manifest?.revision ?? '',
      task: manifest?.task ?? '?',
      bytes: await dirSize(dir),
    });
  }
  return models;
}
