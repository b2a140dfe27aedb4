import { WinnowError } from '../../core/errors.js';
import { docText } from '../../core/types.js';
import { field, indexedScores, joinUrl, numberAt, posIntOption, RemoteScorer, remoteId, providerAccess, type RemoteOptions } from './base.js';

export interface CohereOptions extends RemoteOptions {
  /** e.g. `rerank-v3.5`; required by v2 */
  model?: string;
  /** `v2` (default) or `v1` */
  apiVersion?: 'v1' | 'v2';
  /**
   * v2: tokens kept per document (Cohere's default 4096); Cohere truncates the document,
   * never the query.
   */
  maxTokensPerDoc?: number;
  /** v1: chunks per document; Cohere scores each chunk and keeps the maximum */
  maxChunksPerDoc?: number;
}

/** Cohere advises at most 1000 documents per request (the API accepts up to 10 000). */
export const COHERE_MAX_DOCS = 1000;
const ENV_KEYS = ['COHERE_API_KEY', 'CO_API_KEY'];

/**
 * Cohere rerank (`POST /v2/rerank` or `/v1/rerank`). Scores are calibrated relevance in [0, 1]
 * (not linear), so the kind is `probability`; `meta.billed_units.search_units` lands in
 * `stats.searchUnits`.
 *
 * Env: `COHERE_API_KEY` (or `CO_API_KEY`, the SDK's name), `COHERE_BASE_URL` (default https://api.cohere.com).
 */
export function cohereScorer(opts: CohereOptions = {}): RemoteScorer {
  const version = opts.apiVersion ?? 'v2';
  if (version !== 'v1' && version !== 'v2') throw new WinnowError('bad_spec', `cohere: apiVersion must be "v1" or "v2", got ${String(version)}`);
  if (version === 'v2' && !opts.model) throw new WinnowError('bad_spec', 'cohere: v2 rerank needs a model', 'e.g. cohere:rerank-v3.5');
  const { base, bearer, keyHint } = providerAccess('cohere', opts, { urlEnv: ['COHERE_BASE_URL'], defaultUrl: 'https://api.cohere.com', keyEnv: ENV_KEYS });
  const provider = `cohere/${version}`;
  const maxTokensPerDoc = version === 'v2' && opts.maxTokensPerDoc !== undefined ? posIntOption(opts.maxTokensPerDoc, 4096, 'maxTokensPerDoc', 'cohere') : undefined;
  const maxChunksPerDoc = version === 'v1' && opts.maxChunksPerDoc !== undefined ? posIntOption(opts.maxChunksPerDoc, 1, 'maxChunksPerDoc', 'cohere') : undefined;
  const id = remoteId(provider, opts.model, base, { max_tokens_per_doc: maxTokensPerDoc, max_chunks_per_doc: maxChunksPerDoc });
  return new RemoteScorer(
    id,
    'probability',
    {
      provider,
      url: joinUrl(base, `/${version}/rerank`),
      headers: bearer,
      resultsKey: 'results',
      keyHint,
      body: (query, docs) => {
        const body: Record<string, unknown> = { query, documents: docs.map(docText), top_n: docs.length };
        if (opts.model) body.model = opts.model;
        if (version === 'v1') body.return_documents = false;
        if (maxTokensPerDoc !== undefined) body.max_tokens_per_doc = maxTokensPerDoc;
        if (maxChunksPerDoc !== undefined) body.max_chunks_per_doc = maxChunksPerDoc;
        return body;
      },
      parse: (json, docs) => ({
        scores: indexedScores(field(json, 'results', provider), docs.length, 'relevance_score', provider),
        searchUnits: numberAt(json, 'meta', 'billed_units', 'search_units'),
      }),
    },
    posIntOption(opts.maxDocsPerRequest, COHERE_MAX_DOCS, 'maxDocsPerRequest', 'cohere'),
    opts,
  );
}
