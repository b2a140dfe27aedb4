import { WinnowError } from '../../core/errors.js';
import type { ScoreKind } from '../../core/types.js';
import { field, indexedScores, joinUrl, posIntOption, RemoteScorer, remoteId, providerAccess, type RemoteOptions } from './base.js';
import { NATIVE_MAX_DOCUMENTS, NATIVE_ROUTE, type NativeRequest, type NativeResponse } from './native.js';

export interface WinnowRemoteOptions extends RemoteOptions {
  /** the remote server's cascade name (its request `model`); default the server's default */
  cascade?: string;
  /** what the remote cascade's final score means; default `logit` (a cross-encoder's output) */
  scoreKind?: ScoreKind;
  /** passed as `deadline_ms`; the remote then skips stages rather than answer late */
  deadlineMs?: number;
  /**
   * Accept answers where the remote skipped a stage. Off by default: a degraded answer's
   * scores come from an earlier stage, on another scale than the rest of the candidates.
   */
  allowDegraded?: boolean;
}

/**
 * Another Winnow over its native `POST /v1/cascade` (types in `native.ts`). Candidates go out
 * as `{id, text, title}` so the remote joins title and text itself and answers with ids we can
 * check. A remote cascade that cuts candidates (a `top` stage) cannot serve as a scorer: every
 * candidate needs a score, so missing results are an error.
 *
 * Env: `WINNOW_URL` (when the ref names no URL), `WINNOW_API_KEY`.
 */
export function winnowScorer(opts: WinnowRemoteOptions = {}): RemoteScorer {
  const { base, bearer, keyHint } = providerAccess('winnow', opts, { urlEnv: ['WINNOW_URL'], urlHint: 'write winnow:http://host:port[/cascade], set WINNOW_URL or pass baseUrl', keyEnv: ['WINNOW_API_KEY'], keyOptional: true });
  const kind = opts.scoreKind ?? 'logit';
  const deadline = opts.deadlineMs === undefined ? undefined : posIntOption(opts.deadlineMs, 0, 'deadlineMs', 'winnow');
  const provider = 'winnow';
  return new RemoteScorer(
    // The deadline is not part of the id: when it bites, the answer is degraded and refused
    // (or explicitly allowed), so it never changes accepted scores silently.
    remoteId(provider, opts.cascade, base, { kind, degraded: opts.allowDegraded ? 'allowed' : undefined }),
    kind,
    {
      provider,
      url: joinUrl(base, NATIVE_ROUTE),
      headers: bearer,
      resultsKey: 'results',
      keyHint,
      body: (query, docs): NativeRequest => ({
        query,
        documents: docs.map((d) => (d.title ? { id: d.id, text: d.text, title: d.title } : { id: d.id, text: d.text })),
        top_n: docs.length,
        ...(opts.cascade ? { model: opts.cascade } : {}),
        ...(deadline !== undefined ? { deadline_ms: deadline } : {}),
      }),
      parse: (json, docs) => {
        const res = json as NativeResponse;
        if (res.degraded && !opts.allowDegraded) {
          throw new WinnowError(
            'unavailable',
            `winnow: the remote cascade skipped ${res.skipped_stage ? `stage "${res.skipped_stage}"` : 'a stage'} to meet its deadline; its scores are not comparable`,
            'raise deadlineMs, or set allowDegraded to accept scores from an earlier stage',
          );
        }
        const results = field(json, 'results', provider);
        const scores = indexedScores(
          results,
          docs.length,
          'score',
          provider,
          'a remote cascade used as a scorer must score every candidate; remove its top/threshold cut-offs',
        );
        // Ids guard against a server that reorders or dedupes candidates behind our back.
        for (const r of results as NativeResponse['results']) {
          if (r.id !== undefined && r.id !== docs[r.index].id) {
            throw new WinnowError('model_error', `winnow: result for index ${r.index} has id "${r.id}", sent "${docs[r.index].id}"`);
          }
        }
        return { scores };
      },
    },
    posIntOption(opts.maxDocsPerRequest, NATIVE_MAX_DOCUMENTS, 'maxDocsPerRequest', provider),
    opts,
  );
}
