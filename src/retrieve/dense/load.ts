import { WinnowError } from '../../core/errors.js';
import path from 'node:path';
import { winnowHome } from '../../models/cache.js';
import { resolveModel } from '../../models/resolve.js';
import { BiEncoder, type BiEncoderOptions } from '../../rerank/bi-encoder.js';
import { HashEmbedder, type Embedder } from './embedder.js';

/**
 * The embedder a model reference names: `hash:DIM` is the deterministic test embedder; anything
 * else is a bi-encoder model folder or cached model reference (never pulled here: indexing a
 * collection should not start a download as a side effect). Document embeddings also go to the
 * shared on-disk embedding cache, so re-indexing, or indexing what `winnow demo`/`eval` already
 * embedded with the same model, embeds nothing twice.
 */
export async function loadEmbedder(ref: string, options: BiEncoderOptions = {}): Promise<Embedder> {
  const hash = /^hash:(\d+)$/.exec(ref);
  if (hash) return new HashEmbedder(Number(hash[1]));
  const folder = await resolveModel(ref, { pull: false });
  const model = await BiEncoder.load(folder, { cacheDir: path.join(winnowHome(), 'embeddings'), ...options });
  if (!(model.dim > 0)) throw new WinnowError('model_error', `model ${ref} reports no embedding dimension`);
  return model;
}
