import { docText } from '../../core/types.js';
import { field, indexedScores, joinUrl, numberAt, posIntOption, RemoteScorer, remoteId, providerAccess, type RemoteOptions } from './base.js';

export interface MixedbreadOptions extends RemoteOptions {
  /** e.g. `mxbai-rerank-large-v1` (older accounts: `mixedbread-ai/mxbai-rerank-large-v1`) */
  model?: string;
}

/** Not a documented hard limit. */
export const MIXEDBREAD_MAX_DOCS = 1000;
const ENV_KEYS = ['MXBAI_API_KEY', 'MIXEDBREAD_API_KEY'];

/**
 * Mixedbread reranking (`POST /v1/reranking`: documents in `input`, `top_k`, `return_input`;
 * answer `data[]` with `score`, `usage.total_tokens` → `stats.tokens`). Scores in [0, 1]:
 * kind `probability`. Mixedbread truncates over-long documents itself.
 *
 * Env: `MXBAI_API_KEY` (or `MIXEDBREAD_API_KEY`), `MXBAI_BASE_URL` (default https://api.mixedbread.com).
 */
export function mixedbreadScorer(opts: MixedbreadOptions = {}): RemoteScorer {
  const model = opts.model ?? 'mxbai-rerank-large-v1';
  const { base, bearer, keyHint } = providerAccess('mixedbread', opts, { urlEnv: ['MXBAI_BASE_URL', 'MIXEDBREAD_BASE_URL'], defaultUrl: 'https://api.mixedbread.com', keyEnv: ENV_KEYS });
  return new RemoteScorer(
    remoteId('mixedbread', model, base, {}),
    'probability',
    {
      provider: 'mixedbread',
      url: joinUrl(base, '/v1/reranking'),
      headers: bearer,
      resultsKey: 'data',
      keyHint,
      body: (query, docs) => ({ model, query, input: docs.map(docText), top_k: docs.length, return_input: false }),
      parse: (json, docs) => ({
        scores: indexedScores(field(json, 'data', 'mixedbread'), docs.length, 'score', 'mixedbread'),
        tokens: numberAt(json, 'usage', 'total_tokens'),
      }),
    },
    posIntOption(opts.maxDocsPerRequest, MIXEDBREAD_MAX_DOCS, 'maxDocsPerRequest', 'mixedbread'),
    opts,
  );
}
