import { docText, type Doc } from '../../core/types.js';
import { field, indexedScores, joinUrl, numberAt, posIntOption, RemoteScorer, remoteId, providerAccess, type RemoteOptions } from './base.js';

export interface VoyageOptions extends RemoteOptions {
  /** e.g. `rerank-2`, `rerank-2.5-lite` */
  model?: string;
  /** let Voyage cut documents (never needed for the query unless it alone is too long); default true */
  truncation?: boolean;
  /**
   * Voyage's per-request budget: query tokens × documents + document tokens. Defaults by model
   * (600K for rerank-2*, 300K rerank-lite-1, 100K rerank-1).
   */
  maxTokensPerRequest?: number;
  /** token estimate used against the budget; default ceil(chars / 3), deliberately high */
  estimateTokens?: (text: string) => number;
}

export const VOYAGE_MAX_DOCS = 1000;
const ENV_KEYS = ['VOYAGE_API_KEY'];

/** Total-token budgets per request from Voyage's API reference. */
function defaultBudget(model: string): number {
  if (model === 'rerank-1') return 100_000;
  if (model === 'rerank-lite-1') return 300_000;
  return 600_000;
}

/**
 * Voyage rerank (`POST /v1/rerank`, `top_k`, answer `data[]` with `relevance_score`). Calibrated
 * [0, 1] scores: kind `probability`. `usage.total_tokens` lands in `stats.tokens`.
 * Requests are split both at 1000 documents and at the token budget, estimated from characters
 * because Voyage's tokenizer is not available offline.
 *
 * Env: `VOYAGE_API_KEY`, `VOYAGE_BASE_URL` (default https://api.voyageai.com).
 */
export function voyageScorer(opts: VoyageOptions = {}): RemoteScorer {
  const model = opts.model ?? 'rerank-2';
  const { base, bearer, keyHint } = providerAccess('voyage', opts, { urlEnv: ['VOYAGE_BASE_URL'], defaultUrl: 'https://api.voyageai.com', keyEnv: ENV_KEYS });
  const truncation = opts.truncation ?? true;
  const budget = posIntOption(opts.maxTokensPerRequest, defaultBudget(model), 'maxTokensPerRequest', 'voyage');
  const estimate = opts.estimateTokens ?? ((t: string) => Math.ceil(t.length / 3));
  return new RemoteScorer(
    remoteId('voyage', model, base, { truncation }),
    'probability',
    {
      provider: 'voyage',
      url: joinUrl(base, '/v1/rerank'),
      headers: bearer,
      resultsKey: 'data',
      keyHint,
      body: (query, docs) => ({ query, documents: docs.map(docText), model, top_k: docs.length, return_documents: false, truncation }),
      parse: (json, docs) => ({
        scores: indexedScores(field(json, 'data', 'voyage'), docs.length, 'relevance_score', 'voyage'),
        tokens: numberAt(json, 'usage', 'total_tokens'),
      }),
      split: (query, docs) => splitByBudget(estimate(query), docs.map((d: Doc) => estimate(docText(d))), budget),
    },
    posIntOption(opts.maxDocsPerRequest, VOYAGE_MAX_DOCS, 'maxDocsPerRequest', 'voyage'),
    opts,
  );
}

/** Greedy slices whose `q × n + Σ d` stays under the budget; a lone oversized document goes alone. */
export function splitByBudget(queryTokens: number, docTokens: readonly number[], budget: number): number[] {
  const sizes: number[] = [];
  let n = 0;
  let used = 0;
  for (const d of docTokens) {
    const cost = queryTokens + d;
    if (n > 0 && used + cost > budget) {
      sizes.push(n);
      n = 0;
      used = 0;
    }
    n++;
    used += cost;
  }
  if (n > 0) sizes.push(n);
  return sizes;
}
