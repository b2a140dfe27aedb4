import { WinnowError } from '../../core/errors.js';
import { docText } from '../../core/types.js';
import { indexedScores, joinUrl, posIntOption, RemoteScorer, remoteId, providerAccess, type RemoteOptions } from './base.js';

export interface TeiOptions extends RemoteOptions {
  /**
   * The model the server runs, for the scorer id only (TEI serves one model and does not take
   * it in the request). Set it: without it a model swap behind the same URL would serve
   * cached scores of the old model.
   */
  model?: string;
  /** ask TEI to cut pairs over the model's maximum length; default true (TEI errors otherwise) */
  truncate?: boolean;
  /** which end TEI cuts; `right` (default) cuts the document's end and keeps the query whole */
  truncationDirection?: 'left' | 'right';
  /**
   * true (default): logits before TEI's sigmoid, kind `logit`, like local cross-encoders and
   * without float32 saturation near 1. false: TEI's sigmoid scores, kind `probability`.
   */
  rawScores?: boolean;
}

/** TEI's default `--max-client-batch-size`. */
export const TEI_MAX_DOCS = 32;

/**
 * Hugging Face text-embeddings-inference (`POST /rerank`, `texts`, bare array answer
 * `[{index, score}]`). A server started with a smaller batch cap answers 413, and the scorer
 * then halves its sub-requests.
 *
 * Env: `TEI_URL` (when the ref names no URL), `TEI_API_KEY` (servers started with `--api-key`).
 */
export function teiScorer(opts: TeiOptions = {}): RemoteScorer {
  const { base, bearer, keyHint } = providerAccess('tei', opts, { urlEnv: ['TEI_URL'], urlHint: 'write tei:http://host:port, set TEI_URL or pass baseUrl', keyEnv: ['TEI_API_KEY'], keyOptional: true });
  const truncate = opts.truncate ?? true;
  const direction = opts.truncationDirection ?? 'right';
  if (direction !== 'left' && direction !== 'right') throw new WinnowError('bad_spec', `tei: truncationDirection must be "left" or "right", got ${String(direction)}`);
  const rawScores = opts.rawScores ?? true;
  return new RemoteScorer(
    remoteId('tei', opts.model, base, { truncate: truncate ? direction : false, raw_scores: rawScores }),
    rawScores ? 'logit' : 'probability',
    {
      provider: 'tei',
      url: joinUrl(base, '/rerank'),
      headers: bearer,
      resultsKey: 'array',
      keyHint,
      body: (query, docs) => ({
        query,
        texts: docs.map(docText),
        truncate,
        // TEI's serde enum takes "Left"/"Right" (capitalised; "left" is rejected). "Right" is its
        // default, so it is sent only when it differs, which also keeps older TEI versions happy.
        ...(direction === 'left' ? { truncation_direction: 'Left' } : {}),
        raw_scores: rawScores,
        return_text: false,
      }),
      parse: (json, docs) => ({ scores: indexedScores(json, docs.length, 'score', 'tei') }),
    },
    posIntOption(opts.maxDocsPerRequest, TEI_MAX_DOCS, 'maxDocsPerRequest', 'tei'),
    opts,
  );
}
