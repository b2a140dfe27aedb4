import { WinnowError } from '../../core/errors.js';
import { docText, type ScoreKind } from '../../core/types.js';
import { field, indexedScores, joinUrl, numberAt, posIntOption, RemoteScorer, remoteId, providerAccess, type RemoteOptions } from './base.js';

export interface VllmOptions extends RemoteOptions {
  /** the served model name (vLLM `--served-model-name`, Infinity's model id) */
  model?: string;
  /** `/v1/rerank` (default), `/rerank` or `/v2/rerank` */
  route?: string;
  /**
   * What the server returns. vLLM and Infinity apply a sigmoid to single-label cross-encoders by
   * default, so the default is `probability`; ask the server for raw scores through `extraBody`
   * (Infinity: `{raw_scores: true}`) and set `logit`.
   */
  scoreKind?: ScoreKind;
  /**
   * vLLM's `truncate_prompt_tokens`. Off by default: vLLM keeps the *last* k tokens of the
   * (query, document) prompt, which can cut the query; prefer a model context long enough.
   */
  truncatePromptTokens?: number;
  /** fields merged into every request (server-specific switches); part of the scorer id */
  extraBody?: Record<string, unknown>;
}

/** Neither vLLM nor Infinity caps documents per request; this bounds request size and latency. */
export const VLLM_MAX_DOCS = 1000;

/**
 * vLLM, Infinity and other OpenAI-style `/v1/rerank` servers (Cohere-like: `documents`,
 * `top_n`, `results[]` with `relevance_score`, `usage.total_tokens` → `stats.tokens`).
 * `top_n` is always the number of documents sent: vLLM reads 0 as "all" but Infinity rejects
 * 0, and n means "all" to both.
 *
 * Env: `VLLM_URL` (when the ref names no URL), `VLLM_API_KEY` (servers started with `--api-key`).
 */
export function vllmScorer(opts: VllmOptions = {}): RemoteScorer {
  const { base, bearer, keyHint } = providerAccess('vllm', opts, { urlEnv: ['VLLM_URL'], urlHint: 'write vllm:http://host:port/model, set VLLM_URL or pass baseUrl', keyEnv: ['VLLM_API_KEY'], keyOptional: true });
  const route = opts.route ?? '/v1/rerank';
  const kind = opts.scoreKind ?? 'probability';
  if (!['logit', 'probability', 'similarity', 'unbounded'].includes(kind)) throw new WinnowError('bad_spec', `vllm: unknown scoreKind "${String(kind)}"`);
  const truncate = opts.truncatePromptTokens === undefined ? undefined : posIntOption(opts.truncatePromptTokens, 0, 'truncatePromptTokens', 'vllm');
  const extra = opts.extraBody ?? {};
  return new RemoteScorer(
    remoteId('vllm', opts.model, base, {
      truncate_prompt_tokens: truncate,
      kind,
      extra: Object.keys(extra).length ? JSON.stringify(extra) : undefined,
    }),
    kind,
    {
      provider: 'vllm',
      url: joinUrl(base, route),
      headers: bearer,
      resultsKey: 'results',
      keyHint,
      body: (query, docs) => ({
        ...extra,
        ...(opts.model ? { model: opts.model } : {}),
        query,
        documents: docs.map(docText),
        top_n: docs.length,
        ...(truncate !== undefined ? { truncate_prompt_tokens: truncate } : {}),
      }),
      parse: (json, docs) => ({
        scores: indexedScores(field(json, 'results', 'vllm'), docs.length, 'relevance_score', 'vllm'),
        tokens: numberAt(json, 'usage', 'total_tokens'),
      }),
    },
    posIntOption(opts.maxDocsPerRequest, VLLM_MAX_DOCS, 'maxDocsPerRequest', 'vllm'),
    opts,
  );
}
