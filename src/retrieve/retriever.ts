import type { Stage, StageContext, StageDescription } from '../core/stage.js';
import { compareHits, type Hit, type Query, type Ranking, type ScoreKind } from '../core/types.js';
import { TopK } from '../cascade/cutoff.js';
import { registry } from '../core/registry.js';
import { posInt, str } from '../core/values.js';
import { Pipeline } from '../cascade/pipeline.js';

/** Depth a retriever goes to when no cut-off follows it (PyTerrier and trec_eval runs use 1000). */
export const DEFAULT_RETRIEVE_K = 1000;

/**
 * A stage that produces candidates from an index and ignores the hits it is given. `k` is
 * how deep it retrieves; `Pipeline.compile` lowers it when a cut-off follows, so a retriever
 * fetches k hits instead of everything.
 */
export abstract class Retriever implements Stage {
  readonly kind = 'retriever' as const;
  readonly scoring = 'pointwise' as const;
  /** BM25 and fused scores have no fixed range; dense retrievers say `similarity` */
  readonly scoreKind: ScoreKind = 'unbounded';

  constructor(
    readonly name: string,
    readonly k: number = DEFAULT_RETRIEVE_K,
  ) {}

  get label(): string {
    return `${this.name} k=${this.k}`;
  }

  /** The same retriever going to another depth. */
  abstract withK(k: number): Retriever;

  /** A following top-k becomes the depth: retrieving k hits rather than all of them. */
  absorb(next: Stage): Stage | undefined {
    return next instanceof TopK ? this.withK(Math.min(this.k, next.k)) : undefined;
  }

  abstract retrieve(query: Query, k: number, ctx: StageContext): Promise<Hit[]>;

  abstract describe(): StageDescription;

  /**
   * Hits under this retriever's name, in the one tie order (engines break ties by internal
   * doc number; after this, ties follow `compareHits` like every other stage).
   */
  protected toHits(results: readonly { docId: string; score: number }[]): Hit[] {
    return results.map((h) => ({ docId: h.docId, score: h.score, scores: { [this.name]: h.score } })).sort(compareHits);
  }

  async run(batch: readonly Ranking[], ctx: StageContext): Promise<Ranking[]> {
    const out: Ranking[] = [];
    for (const r of batch) out.push({ query: r.query, hits: await this.retrieve(r.query, this.k, ctx) });
    return out;
  }
}

registry.defineStage(
  'retrieve',
  async (value, options, ctx) => {
    const ref = str(value, `${ctx.where}.retrieve`);
    const { k, ...rest } = options;
    const r = await ctx.env.retriever(ref, rest, ctx.where);
    if (k === undefined) return r;
    const cut = new TopK(posInt(k, `${ctx.where}.k`));
    // A retriever that cannot take a depth still returns k hits, with a cut-off after it.
    return r.absorb?.(cut) ?? new Pipeline([r, cut], r.name);
  },
  'fetch candidates (ignores the hits it is given): `retrieve: bm25, k: 1000`',
);
