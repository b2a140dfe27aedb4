import { docText } from '../../core/types.js';
import { field, indexedScores, joinUrl, numberAt, posIntOption, RemoteScorer, remoteId, providerAccess, type RemoteOptions } from './base.js';

export interface JinaOptions extends RemoteOptions {
  /** e.g. `jina-reranker-v2-base-multilingual` */
  model?: string;
}

/** Not a documented hard limit; large enough to batch a typical candidate pool, small enough to stay fast. */
export const JINA_MAX_DOCS = 1000;
const ENV_KEYS = ['JINA_API_KEY'];

/**
 * Jina rerank (`POST /v1/rerank`, Cohere-like: `top_n`, `results[]` with `relevance_score`,
 * `usage.total_tokens` → `stats.tokens`). Scores are in [0, 1]: kind `probability`. Jina
 * truncates over-long documents on its side.
 *
 * Env: `JINA_API_KEY`, `JINA_BASE_URL` (default https://api.jina.ai).
 */
export function jinaScorer(opts: JinaOptions = {}): RemoteScorer {
  const model = opts.model ?? 'jina-reranker-v2-base-multilingual';
  const { base, bearer, keyHint } = providerAccess('jina', opts, { urlEnv: ['JINA_BASE_URL'], defaultUrl: 'https://api.jina.ai', keyEnv: ENV_KEYS });
  return new RemoteScorer(
    remoteId('jina', model, base, {}),
    'probability',
    {
      provider: 'jina',
      url: joinUrl(base, '/v1/rerank'),
      headers: bearer,
      resultsKey: 'results',
      keyHint,
      body: (query, docs) => ({ model, query, documents: docs.map(docText), top_n: docs.length, return_documents: false }),
      parse: (json, docs) => ({
        scores: indexedScores(field(json, 'results', 'jina'), docs.length, 'relevance_score', 'jina'),
        tokens: numberAt(json, 'usage', 'total_tokens'),
      }),
    },
    posIntOption(opts.maxDocsPerRequest, JINA_MAX_DOCS, 'maxDocsPerRequest', 'jina'),
    opts,
  );
}
