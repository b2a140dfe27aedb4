import { WinnowError } from '../core/errors.js';
import type { Stage, StageContext, StageDescription } from '../core/stage.js';
import { CACHE_HITS, CACHE_MISSES, PAIRS } from '../core/costs.js';
import { compareHits, type Doc, type Hit, type Ranking, type ScoreKind } from '../core/types.js';
import type { Scorer } from './scorer.js';
import { registry } from '../core/registry.js';
import { str } from '../core/values.js';

/**
 * Turns a pointwise scorer into a stage: looks up document text, serves cached scores,
 * sends only the misses to the model, and re-sorts. The new score is recorded under the
 * stage's name next to the scores of earlier stages.
 */
export class Rerank implements Stage {
  readonly kind = 'reranker' as const;
  readonly scoring = 'pointwise' as const;
  readonly name: string;

  constructor(
    readonly scorer: Scorer,
    name?: string,
  ) {
    this.name = name ?? scorer.id;
  }

  get scoreKind(): ScoreKind {
    return this.scorer.kind;
  }

  describe(): StageDescription {
    return { rerank: this.scorer.id, name: this.name };
  }

  async close(): Promise<void> {
    await this.scorer.close?.();
  }

  async run(batch: readonly Ranking[], ctx: StageContext): Promise<Ranking[]> {
    const out: Ranking[] = [];
    for (const r of batch) out.push({ query: r.query, hits: await this.rerankOne(r, ctx) });
    return out;
  }

  private async rerankOne(r: Ranking, ctx: StageContext): Promise<Hit[]> {
    const n = r.hits.length;
    if (n === 0) return [];
    const docs = await Promise.all(r.hits.map((h) => lookupDoc(h, ctx, this.name)));
    const scores = new Float32Array(n);
    const missing: number[] = [];
    if (ctx.cache) {
      const cached = await ctx.cache.getMany(this.scorer.id, r.query.text, docs);
      cached.forEach((v, i) => {
        if (v === undefined) missing.push(i);
        else scores[i] = v;
      });
      ctx.costs.add(CACHE_HITS, n - missing.length);
      ctx.costs.add(CACHE_MISSES, missing.length);
    } else {
      for (let i = 0; i < n; i++) missing.push(i);
    }
    if (missing.length > 0) {
      const fresh = await this.scorer.score(r.query.text, missing.map((i) => docs[i]), ctx.costs);
      checkScoreCount(this.name, fresh.length, missing.length);
      ctx.costs.add(PAIRS, missing.length);
      missing.forEach((i, j) => (scores[i] = fresh[j]));
      ctx.cache?.setMany(this.scorer.id, r.query.text, missing.map((i, j) => [docs[i], fresh[j]] as const));
    }
    return r.hits
      .map((h, i) => ({ ...h, score: scores[i], scores: { ...h.scores, [this.name]: scores[i] } }))
      .sort(compareHits);
  }
}

/** The document behind a hit: carried on the hit (a remote engine's `_source`), else looked up. */
export async function lookupDoc(hit: Hit, ctx: StageContext, stage: string): Promise<Doc> {
  const doc = hit.doc ?? (await ctx.docs?.get(hit.docId));
  if (!doc) {
    throw new WinnowError(
      'bad_input',
      `${stage}: no text for document "${hit.docId}"`,
      'a reranker needs the corpus (--corpus/--dataset) or candidates with text',
    );
  }
  return doc;
}

/** A model that answers with another number of scores than it was asked for is broken, not slow. */
export function checkScoreCount(stage: string, got: number, asked: number): void {
  if (got !== asked) throw new WinnowError('model_error', `${stage}: scorer returned ${got} scores for ${asked} documents`);
}

registry.defineStage(
  'rerank',
  async (value, options, { env, where }) => {
    const { name, ...scorerOptions } = options;
    const scorer = await env.scorer(str(value, `${where}.rerank`), scorerOptions, where);
    return new Rerank(scorer, name === undefined ? undefined : str(name, `${where}.name`));
  },
  'rescore hits with a pointwise scorer (a name, a model folder or reference, a remote API): `rerank: REF, name: ce, ...options`',
);
