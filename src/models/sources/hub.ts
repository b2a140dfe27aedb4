/**
 * Hugging Face hub source: fetches the files of the HF layout a Winnow loader reads, straight
 * from `{HF_ENDPOINT}/{repo}/resolve/{revision}/{path}`, into a staging folder, then publishes it.
 */
import { existsSync } from 'node:fs';
import { WinnowError } from '../../core/errors.js';
import {
  commitStaging, isComplete, modelDir, readManifest, slugify, stagingDir, writeManifest,
  type ModelManifest,
} from '../cache.js';
import { checkRelativePath, safeJoin } from '../paths.js';
import { downloadFile, type FetchContext } from './http.js';
import { describeModelFolder } from './stconfig.js';
import type { HubRef, PullOptions, PullResult } from './types.js';

/** Files a loader may read; only config and tokenizer are required, the rest depend on the model. */
const REQUIRED_FILES = ['config.json', 'tokenizer.json'];
const OPTIONAL_FILES = [
  'tokenizer_config.json',
  'special_tokens_map.json',
  'modules.json',
  '1_Pooling/config.json',
  'sentence_bert_config.json',
  'config_sentence_transformers.json',
];

export function hubEndpoint(): string {
  return (process.env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '');
}

export function hubSlug(ref: HubRef): string {
  return slugify(ref.revision === 'main' ? ref.repo : `${ref.repo}@${ref.revision}`);
}

/** The ONNX file a hub pull fetches: `--onnx`, else the int8 or fp32 file of the usual layout. */
export function onnxPathFor(opts: Pick<PullOptions, 'onnx' | 'quantize'>): string {
  // A path inside the repo that also becomes a path inside the model folder: it may not leave it.
  if (opts.onnx) return checkRelativePath(opts.onnx, '--onnx path');
  return opts.quantize ? 'onnx/model_quantized.onnx' : 'onnx/model.onnx';
}

function authHeaders(): Record<string, string> {
  const token = process.env.HF_TOKEN;
  return token ? { Authorization: `Bearer ${token}` } : {};
}

export async function pullHub(ref: HubRef, opts: PullOptions = {}): Promise<PullResult> {
  const slug = hubSlug(ref);
  const finalDir = modelDir(slug);
  const onnx = onnxPathFor(opts);
  const ctx: FetchContext = { ref: ref.raw, dest: finalDir };
  const base = `${hubEndpoint()}/${ref.repo}/resolve/${encodeURIComponent(ref.revision)}`;
  const headers = authHeaders();
  const log = opts.log ?? (() => undefined);

  if (!opts.force && (await isComplete(finalDir))) {
    const manifest = await readManifest(finalDir);
    if (existsSync(safeJoin(finalDir, onnx, '--onnx path'))) return { dir: finalDir, manifest, cached: true };
    // The model is here but not this ONNX variant: add the one file in place (atomic by rename).
    log(`adding ${onnx} to ${finalDir}`);
    await fetchOnnx(base, onnx, finalDir, ctx, headers);
    if (manifest) {
      manifest.onnxFiles = [...new Set([...(manifest.onnxFiles ?? [manifest.onnx]), onnx])];
      await writeManifest(finalDir, manifest);
    }
    return { dir: finalDir, manifest, cached: false };
  }

  const dir = stagingDir(slug);
  let commit: string | undefined;
  for (const file of REQUIRED_FILES) {
    log(`fetching ${file}`);
    const res = await downloadFile(`${base}/${file}`, safeJoin(dir, file, 'hub file'), ctx, { headers });
    // Only a commit id is pinned; any other header value is the server's text, not a revision.
    const header = res.headers?.get('x-repo-commit') ?? undefined;
    if (header !== undefined && /^[0-9a-f]{7,64}$/.test(header)) commit ??= header;
  }
  for (const file of OPTIONAL_FILES) {
    const res = await downloadFile(`${base}/${file}`, safeJoin(dir, file, 'hub file'), ctx, { headers, optional: true });
    if (res.found) log(`fetched ${file}`);
  }
  await fetchOnnx(base, onnx, dir, ctx, headers);

  const manifest: ModelManifest = {
    source: 'hub',
    id: ref.repo,
    // Pin what `main` pointed at when we pulled, so a later re-pull can tell it changed.
    revision: commit ?? ref.revision,
    ...(await describeModelFolder(dir)),
    onnx,
    onnxFiles: [onnx],
    origin: { url: `${hubEndpoint()}/${ref.repo}` },
    pulledAt: new Date().toISOString(),
  };
  await writeManifest(dir, manifest);
  return { dir: await commitStaging(slug), manifest, cached: false };
}

async function fetchOnnx(base: string, onnx: string, dir: string, ctx: FetchContext, headers: Record<string, string>): Promise<void> {
  const res = await downloadFile(`${base}/${onnx}`, safeJoin(dir, onnx, '--onnx path'), ctx, { headers, optional: true, label: onnx });
  if (!res.found) {
    throw new WinnowError('not_found', `${ctx.ref} has no ONNX file at ${onnx}`,
      'pick another export with --onnx <path-in-repo> (e.g. onnx/model_quantized.onnx), ' +
        'or export one with tools/export_onnx.py and pass the folder path');
  }
  // Models over 2 GB keep their weights next to the graph; most small ones have no such file.
  await downloadFile(`${base}/${onnx}_data`, safeJoin(dir, `${onnx}_data`, '--onnx path'), ctx, { headers, optional: true });
}
