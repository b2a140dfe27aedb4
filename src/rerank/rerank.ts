import { WinnowError } from '../core/errors.js';
import type { Stage, StageContext, StageDescription } from '../core/stage.js';
import { CACHE_HITS, CACHE_MISSES, PAIRS, type Costs } from '../core/costs.js';
import { compareHits, type Doc, type Hit, type Ranking, type ScoreKind } from '../core/types.js';
import { checkScoreCount, type Scorer } from './scorer.js';
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
    // Hits with stored document vectors are scored without reading their text (or the cache:
    // a dot product is cheaper than hashing the document to look its score up).
    const stored = await this.scorer.scoreStored?.(r.query.text, r.hits, ctx.costs);
    const open: number[] = [];
    for (let i = 0; i < n; i++) if (!stored || Number.isNaN(stored[i])) open.push(i);
    const docs: Doc[] = new Array<Doc>(n);
    await Promise.all(open.map(async (i) => (docs[i] = await lookupDoc(r.hits[i], ctx, this.name))));
    const scores = stored ?? new Float32Array(n);
    const missing: number[] = [];
    if (ctx.cache) {
      const cached = await ctx.cache.getMany(this.scorer.id, r.query.text, open.map((i) => docs[i]));
      cached.forEach((v, j) => {
        if (v === undefined) missing.push(open[j]);
        else scores[open[j]] = v;
      });
      ctx.costs.add(CACHE_HITS, open.length - missing.length);
      ctx.costs.add(CACHE_MISSES, missing.length);
    } else {
      missing.push(...open);
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

/**
 * Scores hits whose documents are at hand, through stored vectors where the scorer has them
 * and the model for the rest (the tuner's scoring pass: no cache, no lookups to time).
 */
export async function scoreHits(scorer: Scorer, query: string, hits: readonly Hit[], docs: readonly Doc[], costs: Costs): Promise<Float32Array> {
  const stored = await scorer.scoreStored?.(query, hits, costs);
  if (!stored) return scorer.score(query, docs, costs);
  const rest: number[] = [];
  for (let i = 0; i < stored.length; i++) if (Number.isNaN(stored[i])) rest.push(i);
  if (rest.length > 0) {
    const fresh = await scorer.score(query, rest.map((i) => docs[i]), costs);
    rest.forEach((i, j) => (stored[i] = fresh[j]));
  }
  return stored;
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

registry.defineStage(
  'rerank',
  async (value, options, { env, where }) => {
    const { name, ...scorerOptions } = options;
    const scorer = await env.scorer(str(value, `${where}.rerank`), scorerOptions, where);
    return new Rerank(scorer, name === undefined ? undefined : str(name, `${where}.name`));
  },
  'rescore hits with a pointwise scorer (a name, a model folder or reference, a remote API): `rerank: REF, name: ce, ...options`',
);
