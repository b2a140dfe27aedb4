import { WinnowError } from '../../core/errors.js';
import { docText } from '../../core/types.js';
import { field, indexedScores, joinUrl, numberAt, posIntOption, RemoteScorer, remoteId, providerAccess, type RemoteOptions } from './base.js';

export interface PineconeOptions extends RemoteOptions {
  /** e.g. `bge-reranker-v2-m3`, `cohere-rerank-3.5`, `pinecone-rerank-v0` */
  model?: string;
  /** `END` (default here: cut the document's end) or `NONE` (Pinecone then rejects long pairs) */
  truncate?: 'END' | 'NONE';
  /** value of the `X-Pinecone-API-Version` header; default `2025-04` */
  apiVersion?: string;
}

const ENV_KEYS = ['PINECONE_API_KEY'];

/** Pinecone's per-model document caps: 200 for cohere-rerank-3.5, 100 for the others. */
export function pineconeMaxDocs(model: string): number {
  return model === 'cohere-rerank-3.5' ? 200 : 100;
}

/**
 * Pinecone hosted rerank (`POST /rerank`, `documents: [{text}]`, `top_n`, `parameters.truncate`;
 * answer `data[]` with `score`; `usage.rerank_units` → `stats.searchUnits`). Auth is the
 * `Api-Key` header, and the API version is pinned by `X-Pinecone-API-Version`. Scores in [0, 1]:
 * kind `probability`.
 *
 * Env: `PINECONE_API_KEY`, `PINECONE_BASE_URL` (default https://api.pinecone.io).
 */
export function pineconeScorer(opts: PineconeOptions = {}): RemoteScorer {
  const model = opts.model ?? 'bge-reranker-v2-m3';
  const { base, key, keyHint } = providerAccess('pinecone', opts, { urlEnv: ['PINECONE_BASE_URL'], defaultUrl: 'https://api.pinecone.io', keyEnv: ENV_KEYS });
  const truncate = opts.truncate ?? 'END';
  if (truncate !== 'END' && truncate !== 'NONE') throw new WinnowError('bad_spec', `pinecone: truncate must be "END" or "NONE", got ${String(truncate)}`);
  const apiVersion = opts.apiVersion ?? '2025-04';
  return new RemoteScorer(
    remoteId('pinecone', model, base, { truncate }),
    'probability',
    {
      provider: 'pinecone',
      url: joinUrl(base, '/rerank'),
      headers: { 'Api-Key': key!, 'X-Pinecone-API-Version': apiVersion },
      resultsKey: 'data',
      keyHint,
      body: (query, docs) => ({
        model,
        query,
        documents: docs.map((d) => ({ text: docText(d) })),
        top_n: docs.length,
        return_documents: false,
        parameters: { truncate },
      }),
      parse: (json, docs) => ({
        scores: indexedScores(field(json, 'data', 'pinecone'), docs.length, 'score', 'pinecone'),
        searchUnits: numberAt(json, 'usage', 'rerank_units'),
      }),
    },
    posIntOption(opts.maxDocsPerRequest, pineconeMaxDocs(model), 'maxDocsPerRequest', 'pinecone'),
    opts,
  );
}
