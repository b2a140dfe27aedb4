import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { WinnowError } from '../core/errors.js';
import { MANIFEST_FILE, type ModelManifest, type ModelTask } from './cache.js';
import { checkRelativePath, safeJoin } from './paths.js';
import { type ModelSession, openSession, type SessionOptions } from './onnx.js';
import { TextTokenizer } from './tokenizer.js';

/**
 * A model folder in Hugging Face layout: config.json, tokenizer.json, onnx/*.onnx, and the
 * sentence-transformers / ColBERT files when the model has them. A `winnow-model.json`
 * manifest, when present, is read first and wins over those files.
 */

/** A hand-written `winnow-model.json` may give only some fields; pulled models give them all. */
export type FolderManifest = Partial<ModelManifest>;

/** ColBERT settings, from colbert-ai's artifact.metadata or PyLate's sentence-transformers config. */
export interface ColbertSettings {
  queryLength: number;
  docLength: number;
  /** marker token put right after [CLS]: `[unused0]` for queries, `[unused1]` for documents */
  queryMarker?: string;
  docMarker?: string;
  /** drop punctuation token embeddings from documents */
  skipPunctuation: boolean;
  /** whether the [MASK] padding of queries is attended to (its embeddings are always used) */
  attendToMaskTokens: boolean;
}

export interface FolderOptions {
  /** ONNX file relative to the folder; default the manifest's, else `onnx/model.onnx` */
  onnxFile?: string;
  /** use `onnx/model_quantized.onnx` (int8) */
  quantized?: boolean;
}

export interface ModelFolder {
  dir: string;
  /** manifest id, else the folder path */
  id: string;
  revision?: string;
  manifest?: FolderManifest;
  config: Record<string, unknown>;
  tokenizer: TextTokenizer;
  onnxPath: string;
  /** what the folder says the model is for, if it says */
  task?: ModelTask;
  /** the longest input the model takes (positions) and the configured default length */
  maxLength: number;
  numLabels?: number;
  pooling?: 'mean' | 'cls';
  normalize?: boolean;
  queryPrefix?: string;
  docPrefix?: string;
  colbert?: ColbertSettings;
}

export function readModelFolder(dir: string, options: FolderOptions = {}): ModelFolder {
  const abs = path.resolve(dir);
  if (!existsSync(abs) || !statSync(abs).isDirectory()) {
    throw new WinnowError(
      'model_error',
      `model folder ${abs} does not exist`,
      'give the path of a folder with config.json, tokenizer.json and onnx/model.onnx, or pull the model first (winnow models pull)',
    );
  }
  const manifest = readJson<FolderManifest>(abs, MANIFEST_FILE);
  const config = readJson<Record<string, unknown>>(abs, 'config.json') ?? {};
  const tokenizer = TextTokenizer.fromFolder(abs);

  const embeddings = num(config.vocab_size);
  if (embeddings !== undefined && tokenizer.vocabSize > embeddings) {
    throw new WinnowError(
      'model_error',
      `${abs}: tokenizer.json has ${tokenizer.vocabSize} tokens but the model's embedding table has ${embeddings} (config.json vocab_size)`,
      'tokenizer and model come from different checkpoints; pull both from the same model id and revision',
    );
  }

  const onnxFile = options.onnxFile ?? (options.quantized ? 'onnx/model_quantized.onnx' : manifest?.onnx ?? 'onnx/model.onnx');
  const st = sentenceTransformers(abs);
  const colbert = colbertSettings(abs, config);

  const positions = num(config.max_position_embeddings);
  // RoBERTa-family position ids start after the padding index, so two positions are unusable
  const usable = positions === undefined ? undefined : isRoberta(config) ? positions - 2 : positions;
  const configured = manifest?.maxLength ?? st.maxSeqLength ?? tokenizer.modelMaxLength ?? usable ?? 512;
  const maxLength = usable === undefined ? configured : Math.min(configured, usable);

  const labels = config.id2label ? Object.keys(config.id2label as object).length : num(config.num_labels);
  return {
    dir: abs,
    id: manifest?.id ?? abs,
    revision: manifest?.revision,
    manifest,
    config,
    tokenizer,
    // From a manifest or a spec: a path inside the folder, never a way to load a file elsewhere.
    onnxPath: safeJoin(abs, onnxFile, `ONNX file of ${abs}`),
    task: manifest?.task ?? inferTask(config, st.present, colbert !== undefined),
    maxLength,
    numLabels: labels,
    pooling: manifest?.pooling ?? st.pooling,
    normalize: manifest?.normalize ?? st.normalize,
    queryPrefix: manifest?.queryPrefix ?? st.queryPrefix,
    docPrefix: manifest?.docPrefix ?? st.docPrefix,
    colbert,
  };
}

function inferTask(config: Record<string, unknown>, sentenceTransformers: boolean, colbert: boolean): ModelTask | undefined {
  if (colbert) return 'late-interaction';
  const arch = Array.isArray(config.architectures) ? (config.architectures as unknown[]).map(String) : [];
  if (arch.some((a) => a.endsWith('ForSequenceClassification'))) return 'cross-encoder';
  if (sentenceTransformers) return 'embedding';
  return undefined;
}

interface StInfo {
  present: boolean;
  pooling?: 'mean' | 'cls';
  normalize?: boolean;
  maxSeqLength?: number;
  queryPrefix?: string;
  docPrefix?: string;
}

function sentenceTransformers(dir: string): StInfo {
  const modules = readJson<Array<{ path?: string; type?: string }>>(dir, 'modules.json');
  if (!modules) return { present: false };
  const info: StInfo = { present: true, normalize: modules.some((m) => /Normalize$/.test(m.type ?? '')) };
  const poolingDir = modules.find((m) => /Pooling$/.test(m.type ?? ''))?.path;
  const pooling = poolingDir
    ? readJson<Record<string, unknown>>(dir, path.join(checkRelativePath(poolingDir, `pooling folder in ${dir}/modules.json`), 'config.json'))
    : undefined;
  if (pooling) {
    const mode = pooling.pooling_mode;
    if (mode === 'cls' || pooling.pooling_mode_cls_token === true) info.pooling = 'cls';
    else if (mode === 'mean' || pooling.pooling_mode_mean_tokens === true) info.pooling = 'mean';
    else {
      throw new WinnowError(
        'model_error',
        `${dir}/${poolingDir}/config.json: pooling ${JSON.stringify(mode ?? pooling)} is not supported`,
        'Winnow pools with mean or CLS; set "pooling" in winnow-model.json if the model allows either',
      );
    }
  }
  info.maxSeqLength = num(readJson<Record<string, unknown>>(dir, 'sentence_bert_config.json')?.max_seq_length);
  const prompts = readJson<{ prompts?: Record<string, string> }>(dir, 'config_sentence_transformers.json')?.prompts;
  if (prompts) {
    info.queryPrefix = prompts.query || undefined;
    info.docPrefix = prompts.document || prompts.passage || undefined;
  }
  return info;
}

function colbertSettings(dir: string, config: Record<string, unknown>): ColbertSettings | undefined {
  const meta = readJson<Record<string, unknown>>(dir, 'artifact.metadata');
  if (meta) {
    return {
      queryLength: num(meta.query_maxlen) ?? 32,
      docLength: num(meta.doc_maxlen) ?? 180,
      queryMarker: str(meta.query_token_id) ?? '[unused0]',
      docMarker: str(meta.doc_token_id) ?? '[unused1]',
      skipPunctuation: meta.mask_punctuation !== false,
      attendToMaskTokens: meta.attend_to_mask_tokens === true,
    };
  }
  // PyLate: prefixes are literal text ("[Q] ") that its tokenizer maps to one added token
  const st = readJson<Record<string, unknown>>(dir, 'config_sentence_transformers.json');
  if (st && (st.query_prefix !== undefined || st.do_query_expansion !== undefined)) {
    return {
      queryLength: num(st.query_length) ?? 32,
      docLength: num(st.document_length) ?? 180,
      queryMarker: str(st.query_prefix)?.trim(),
      docMarker: str(st.document_prefix)?.trim(),
      skipPunctuation: Array.isArray(st.skiplist_words) ? st.skiplist_words.length > 0 : true,
      attendToMaskTokens: st.attend_to_expansion_tokens === true,
    };
  }
  const arch = Array.isArray(config.architectures) ? (config.architectures as unknown[]).map(String) : [];
  if (arch.some((a) => /colbert/i.test(a))) {
    return { queryLength: 32, docLength: 180, queryMarker: '[unused0]', docMarker: '[unused1]', skipPunctuation: true, attendToMaskTokens: false };
  }
  return undefined;
}

function isRoberta(config: Record<string, unknown>): boolean {
  return /roberta|camembert/i.test(String(config.model_type ?? ''));
}

function readJson<T>(dir: string, file: string): T | undefined {
  const p = path.join(dir, file);
  let text: string;
  try {
    text = readFileSync(p, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new WinnowError('model_error', `${p}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new WinnowError('model_error', `${p}: not valid JSON (${(e as Error).message})`, 'pull the model again');
  }
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** Token ids for the warm-up run: the tokenizer's special tokens around an empty text. */
export function warmupIds(folder: ModelFolder): [number, number] {
  const e = folder.tokenizer.encodeIds(new Int32Array(0)).ids;
  const a = e[0] ?? folder.tokenizer.padId;
  return [a, e[1] ?? a];
}

/**
 * Opens a model folder and its shared session and builds a scorer on them; if the scorer
 * refuses the model (wrong outputs for its task), the session is released, not leaked.
 */
export async function openModel<T>(
  folder: string | ModelFolder,
  options: FolderOptions & SessionOptions,
  make: (folder: ModelFolder, session: ModelSession) => T,
): Promise<T> {
  const f = typeof folder === 'string' ? readModelFolder(folder, options) : folder;
  const session = await openSession(f.onnxPath, warmupIds(f), options);
  try {
    return make(f, session);
  } catch (e) {
    await session.release();
    throw e;
  }
}
