import { WinnowError } from '../core/errors.js';
import { retrievesCandidates, type Stage, type StageContext, type StageDescription } from '../core/stage.js';
import { compareHits, type Hit, type Ranking } from '../core/types.js';
import { registry } from '../core/registry.js';
import { checkOptions } from '../core/suggest.js';
import { num, str } from '../core/values.js';
import { Pipeline } from './pipeline.js';

/**
 * How several rankings of one query become one.
 * - `rrf`: reciprocal rank fusion, sum of 1/(k + rank). Engines disagree on k (60 in the
 *   original paper and Elasticsearch, 2 in some vector stores), so it is always explicit here.
 * - `linear`: weighted sum of each ranking's scores, optionally min-max normalised per list;
 *   a document missing from a list contributes nothing from it.
 * - `union`: the candidates of all lists, unfused, for a reranker to score next; order is by
 *   best rank across lists so a later cut-off still keeps the strongest candidates.
 */
export type FusionMethod =
  | { kind: 'rrf'; k: number }
  | { kind: 'linear'; weights: readonly number[]; normalize: 'none' | 'minmax' }
  | { kind: 'union' };

export class Fusion implements Stage {
  readonly kind = 'fusion' as const;
  /** RRF sums, weighted sums and negated ranks: no fixed range */
  readonly scoreKind = 'unbounded' as const;
  /** a fused score depends on ranks in the input lists, not on the pair alone */
  readonly scoring = 'listwise' as const;

  constructor(
    readonly name: string,
    readonly inputs: readonly Stage[],
    readonly method: FusionMethod,
  ) {
    if (inputs.length < 2) throw new WinnowError('bad_spec', `${name}: fusion needs at least two pipelines`);
    if (method.kind === 'rrf' && !(method.k >= 0)) throw new WinnowError('bad_spec', `${name}: rrf k must be >= 0`);
    if (method.kind === 'linear' && method.weights.length !== inputs.length) {
      throw new WinnowError(
        'bad_spec',
        `${name}: linear fusion has ${inputs.length} pipelines but ${method.weights.length} weights`,
      );
    }
  }

  children(): readonly Stage[] {
    return this.inputs;
  }

  get retrieves(): boolean {
    return this.inputs.every(retrievesCandidates);
  }

  describe(): StageDescription {
    const m = this.method;
    const params =
      m.kind === 'rrf' ? { k: m.k } : m.kind === 'linear' ? { weights: [...m.weights], normalize: m.normalize } : {};
    return { [m.kind]: { name: this.name, ...params, of: this.inputs.map((p) => p.describe()) } };
  }

  async run(batch: readonly Ranking[], ctx: StageContext): Promise<Ranking[]> {
    // Inputs run one after another on the same batch, their costs counted as this stage's.
    const lists: Ranking[][] = [];
    for (const input of this.inputs) lists.push(await input.run(batch, ctx));
    return batch.map((r, qi) => ({ query: r.query, hits: this.fuse(lists.map((l) => l[qi].hits)) }));
  }

  private fuse(lists: readonly Hit[][]): Hit[] {
    const byDoc = new Map<string, Hit>();
    const m = this.method;
    lists.forEach((hits, li) => {
      const norm = m.kind === 'linear' && m.normalize === 'minmax' ? minMax(hits) : undefined;
      hits.forEach((h, rank) => {
        let fused = byDoc.get(h.docId);
        if (!fused) {
          fused = { docId: h.docId, score: 0, scores: {} };
          byDoc.set(h.docId, fused);
        }
        // A document a remote engine sent along (`_source`) stays on the fused hit, so
        // rerankers after the fusion need no second lookup.
        if (h.doc && !fused.doc) fused.doc = h.doc;
        Object.assign(fused.scores, h.scores);
        if (m.kind === 'rrf') fused.score += 1 / (m.k + rank + 1);
        else if (m.kind === 'linear') fused.score += m.weights[li] * (norm ? norm(h.score) : h.score);
        // union: the best (smallest) rank across lists, negated so higher is better
        else fused.score = fused.scores[this.name] === undefined ? -rank : Math.max(fused.score, -rank);
        fused.scores[this.name] = fused.score;
      });
    });
    return [...byDoc.values()].sort(compareHits);
  }
}

function minMax(hits: readonly Hit[]): (s: number) => number {
  let lo = Infinity;
  let hi = -Infinity;
  for (const h of hits) {
    lo = Math.min(lo, h.score);
    hi = Math.max(hi, h.score);
  }
  const span = hi - lo;
  return (s) => (span > 0 ? (s - lo) / span : 1);
}

/** `rrf: {k?, of: [[stages], [stages]]}`, `linear: {weights, normalize?, of}`, `union: {of}`. */
for (const kind of ['rrf', 'linear', 'union'] as const) {
  registry.defineStage(
    kind,
    async (raw, options, { where, compile }) => {
      checkOptions(options, [], where, kind);
      const at = `${where}.${kind}`;
      if (!raw || typeof raw !== 'object') throw new WinnowError('bad_spec', `${at}: expected {of: [[stages], [stages]], ...}`);
      const o = raw as Record<string, unknown>;
      const { of, name, ...params } = o;
      checkOptions(params, kind === 'rrf' ? ['k'] : kind === 'linear' ? ['weights', 'normalize'] : [], at, kind);
      if (!Array.isArray(of)) throw new WinnowError('bad_spec', `${at}.of: expected a list of stage lists`);
      const inputs: Stage[] = [];
      for (let i = 0; i < of.length; i++) inputs.push(new Pipeline(await compile(of[i], `${at}.of[${i}]`)));
      let method: FusionMethod;
      if (kind === 'rrf') {
        method = { kind, k: o.k === undefined ? 60 : num(o.k, `${at}.k`) };
      } else if (kind === 'linear') {
        if (!Array.isArray(o.weights)) throw new WinnowError('bad_spec', `${at}.weights: expected a list of numbers`);
        const normalize = o.normalize ?? 'none';
        if (normalize !== 'none' && normalize !== 'minmax') throw new WinnowError('bad_spec', `${at}.normalize: "none" or "minmax"`);
        method = { kind, weights: o.weights.map((w, i) => num(w, `${at}.weights[${i}]`)), normalize };
      } else {
        method = { kind };
      }
      return new Fusion(name === undefined ? kind : str(name, `${at}.name`), inputs, method);
    },
    kind === 'rrf' ? 'reciprocal rank fusion of sub-cascades: `rrf: {k: 60, of: [[...], [...]]}`' : kind === 'linear' ? 'weighted sum of sub-cascades\' scores: `linear: {weights: [0.7, 0.3], normalize: minmax, of: [...]}`' : 'candidates of all sub-cascades, unfused: `union: {of: [...]}`',
  );
}
