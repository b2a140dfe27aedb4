import { WinnowError } from '../core/errors.js';
import type { Stage, StageContext, StageDescription } from '../core/stage.js';
import { compareHits, type Doc, type Hit, type Ranking } from '../core/types.js';
import type { Scorer } from './scorer.js';

/**
 * Turns a pointwise scorer into a stage: looks up document text, serves cached scores,
 * sends only the misses to the model, and re-sorts. The new score is recorded under the
 * stage's name next to the scores of earlier stages.
 */
export class Rerank implements Stage {
  readonly kind = 'reranker' as const;
  readonly name: string;

  constructor(
    readonly scorer: Scorer,
    name?: string,
  ) {
    this.name = name ?? scorer.id;
  }

  describe(): StageDescription {
    return { rerank: this.scorer.id, name: this.name };
  }

  async run(batch: readonly Ranking[], ctx: StageContext): Promise<Ranking[]> {
    const out: Ranking[] = [];
    for (const r of batch) out.push({ query: r.query, hits: await this.rerankOne(r, ctx) });
    return out;
  }

  private async rerankOne(r: Ranking, ctx: StageContext): Promise<Hit[]> {
    const n = r.hits.length;
    if (n === 0) return [];
    const docs = r.hits.map((h) => lookup(h.docId, ctx, this.name));
    const scores = new Float32Array(n);
    const keys: string[] = [];
    const missing: number[] = [];
    for (let i = 0; i < n; i++) {
      if (!ctx.cache) {
        missing.push(i);
        continue;
      }
      const key = ctx.cache.key(this.scorer.id, r.query.text, docs[i]);
      keys[i] = key;
      const cached = ctx.cache.get(key);
      if (cached === undefined) missing.push(i);
      else scores[i] = cached;
    }
    if (ctx.cache) {
      ctx.stats.cacheHits += n - missing.length;
      ctx.stats.cacheMisses += missing.length;
    }
    if (missing.length > 0) {
      const fresh = await this.scorer.score(r.query.text, missing.map((i) => docs[i]), ctx.stats);
      if (fresh.length !== missing.length) {
        throw new WinnowError(
          'model_error',
          `${this.name}: scorer returned ${fresh.length} scores for ${missing.length} documents`,
        );
      }
      ctx.stats.pairs += missing.length;
      missing.forEach((i, j) => {
        scores[i] = fresh[j];
        if (ctx.cache) ctx.cache.set(keys[i], fresh[j]);
      });
    }
    return r.hits
      .map((h, i) => ({ docId: h.docId, score: scores[i], scores: { ...h.scores, [this.name]: scores[i] } }))
      .sort(compareHits);
  }
}

function lookup(docId: string, ctx: StageContext, stage: string): Doc {
  const doc = ctx.docs?.get(docId);
  if (!doc) {
    throw new WinnowError(
      'bad_input',
      `${stage}: no text for document "${docId}"`,
      'a reranker needs the corpus (--corpus/--dataset) or candidates with text',
    );
  }
  return doc;
}
