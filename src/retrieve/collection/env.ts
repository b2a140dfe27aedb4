import { registry } from '../../core/registry.js';
import { WinnowError } from '../../core/errors.js';
import type { Embedder } from '../dense/embedder.js';
import { loadEmbedder } from '../dense/load.js';
import { DenseRetriever } from '../dense/retriever.js';
import type { Retriever } from '../retriever.js';
import { Collection, collectionDir, readManifest, type OpenOptions } from './collection.js';
import { CollectionBm25Retriever, HybridRetriever, hybridOptions } from './stages.js';

export const COLLECTION_RETRIEVERS = ['bm25', 'dense', 'hybrid'] as const;

/**
 * Opens a collection by name (`$WINNOW_HOME/collections/NAME`) or path, with the embedder its
 * manifest records (or `modelRef` when given: a different model is then refused with both
 * names, by `Collection.open`).
 */
export async function openCollection(
  nameOrPath: string,
  opts: { modelRef?: string; verify?: OpenOptions['verify']; efSearch?: number; lockTimeoutMs?: number; /** load the added models' embedders too (for writes) */ forWrite?: boolean } = {},
): Promise<Collection> {
  const dir = collectionDir(nameOrPath);
  const manifest = readManifest(dir);
  const ref = opts.modelRef ?? manifest.config.model?.ref;
  let embedder: Embedder | undefined;
  if (ref) {
    if (!manifest.config.model) {
      throw new WinnowError('bad_input', `collection "${manifest.name}" was built without a model, but model "${ref}" was given`);
    }
    embedder = await loadEmbedder(ref);
  }
  const models = opts.forWrite ? await Promise.all((manifest.models ?? []).map((m) => loadEmbedder(m.ref))) : undefined;
  return Collection.open(dir, { embedder, models, verify: opts.verify, efSearch: opts.efSearch, lockTimeoutMs: opts.lockTimeoutMs });
}

/**
 * What `WinnowEnv.retriever` calls when a collection is configured: `bm25`, `dense` or `hybrid`
 * over it; undefined for any other name, so the caller can try its own.
 */
export function collectionRetriever(collection: Collection, name: string, options: Record<string, unknown>, where: string): Retriever | undefined {
  switch (name) {
    case 'bm25':
      for (const key of Object.keys(options)) {
        if (key !== 'k') throw new WinnowError('bad_spec', `${where}: a collection's BM25 parameters are fixed at index time; unknown option "${key}"`);
      }
      return new CollectionBm25Retriever(collection);
    case 'dense':
      for (const key of Object.keys(options)) if (key !== 'k') throw new WinnowError('bad_spec', `${where}: unknown dense option "${key}"`);
      if (!collection.hasVectors) {
        throw new WinnowError('bad_spec', `${where}: collection "${collection.name}" has no vectors`, 're-index it with --model to use retrieve: dense');
      }
      return new DenseRetriever(collection);
    case 'hybrid':
      if (!collection.hasVectors) {
        throw new WinnowError('bad_spec', `${where}: collection "${collection.name}" has no vectors`, 're-index it with --model to use retrieve: hybrid');
      }
      return new HybridRetriever(collection, undefined, hybridOptions(options, where));
    default:
      return undefined;
  }
}

for (const name of ['dense', 'hybrid'] as const) {
  registry.defineRetriever(
    name,
    (_ref, options, { env, where }) => {
      if (!env.collection) throw new WinnowError('bad_spec', `${where}: retrieve: ${name} needs a collection with vectors`, 'build one with winnow index NAME --model REF and pass --collection NAME');
      return collectionRetriever(env.collection, name, options, where) as Retriever;
    },
    name === 'dense' ? "nearest neighbours of the query's embedding in the collection's HNSW graph" : 'BM25 + dense over the collection, fused: `fusion: rrf|union`, `rrfK`, `bm25K`, `denseK`',
  );
}
