/**
 * Reads what a sentence-transformers folder says about pooling, normalisation and length, so the
 * manifest states it once and loaders need not re-derive it. Only copies what the files say.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { WinnowError } from '../../core/errors.js';
import type { ModelManifest, ModelTask } from '../cache.js';
import { safeJoin } from '../paths.js';

async function readJson<T>(file: string): Promise<T | undefined> {
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch (err) {
    throw new WinnowError('model_error', `${file} is not valid JSON: ${(err as Error).message}`);
  }
}

export async function describeModelFolder(dir: string): Promise<Pick<ModelManifest, 'task' | 'pooling' | 'normalize' | 'maxLength' | 'scoreKind'>> {
  const config = await readJson<{ architectures?: string[] }>(path.join(dir, 'config.json'));
  const modules = await readJson<Array<{ type?: string; path?: string }>>(path.join(dir, 'modules.json'));
  const isCross = (config?.architectures ?? []).some((a) => a.endsWith('ForSequenceClassification'));
  const task: ModelTask = isCross && !modules ? 'cross-encoder' : 'embedding';
  if (task === 'cross-encoder') return { task, scoreKind: 'logit' };
  const out: Pick<ModelManifest, 'task' | 'pooling' | 'normalize' | 'maxLength' | 'scoreKind'> = { task, scoreKind: 'similarity' };
  if (!modules) return out;
  const poolingModule = modules.find((m) => m.type?.endsWith('.Pooling'));
  const pooling = poolingModule
    // modules.json came with the download: its paths must stay inside the model folder too.
    ? await readJson<Record<string, unknown>>(safeJoin(dir, path.posix.join(String(poolingModule.path ?? '1_Pooling'), 'config.json'), 'pooling folder in modules.json'))
    : undefined;
  if (pooling?.pooling_mode_cls_token === true) out.pooling = 'cls';
  else if (pooling?.pooling_mode_mean_tokens === true) out.pooling = 'mean';
  out.normalize = modules.some((m) => m.type?.endsWith('.Normalize'));
  const st = await readJson<{ max_seq_length?: number }>(path.join(dir, 'sentence_bert_config.json'));
  if (typeof st?.max_seq_length === 'number') out.maxLength = st.max_seq_length;
  return out;
}
