import { WinnowError } from '../../core/errors.js';
import { registry } from '../../core/registry.js';
import type { Stage, StageContext, StageDescription } from '../../core/stage.js';
import type { Doc, Ranking } from '../../core/types.js';
import { posInt } from '../../core/values.js';
import type { LlmBackend } from './backend.js';
import { getOrder, setOrder } from './cache.js';
import {
  arrange, backendFor, contentHash, degraded, eachQuery, keyHash, LLM_CACHE_HITS, LLM_TRUNCATED, lookupDocs, PARSE_COSTS, QueryCalls, rankScored, readOptions,
  type LlmStageOptions,
} from './common.js';
import { parsePermutation } from './parse.js';
import { PROMPT_VERSION, setwisePrompt, truncated } from './prompt.js';
import { TopK } from '../../cascade/cutoff.js';

export interface SetwiseOptions {
  /** passages per call (the parent and its children in the heap); default 4 */
  setSize: number;
  /** `heap` (heapsort, cheapest for a short top) or `bubble` (setwise bubble sort) */
  policy: 'heap' | 'bubble';
  /** how many of the head get ordered by the model; default 10 */
  topK: number;
  /** a following top-k cut-off taken in (`absorb`): the stage keeps k hits and orders only those */
  cutoff?: number;
}

/** Picks the best of `items` (positions into the query's documents), or undefined when over budget. */
type PickBest = (items: number[]) => Promise<number | undefined>;

/**
 * Setwise reranking (Zhuang et al., 2024): the model picks the most relevant of a small
 * labelled set, and a sort built on that comparison orders the top k. Cheaper than a listwise
 * pass when k is small; the rest of the list follows in its previous order.
 */
export class SetwiseStage implements Stage {
  readonly kind = 'reranker' as const;
  readonly scoring = 'listwise' as const;
  readonly scoreKind = 'unbounded' as const;
  readonly name: string;

  constructor(
    readonly backend: LlmBackend,
    readonly common: LlmStageOptions,
    readonly set: SetwiseOptions,
  ) {
    if (set.setSize < 2) throw new WinnowError('bad_spec', 'setwise: setSize must be at least 2');
    this.name = common.name ?? `setwise(${backend.model})`;
  }

  get label(): string | undefined {
    return this.set.cutoff === undefined ? undefined : `${this.name} → top(${this.set.cutoff})`;
  }

  describe(): StageDescription {
    const { instruction, maxWords, order, seed } = this.common;
    const { cutoff, ...set } = this.set;
    const d: StageDescription = { setwise: { model: this.backend.id, ...set, instruction, maxWords, order, seed }, name: this.name };
    if (cutoff !== undefined) d.top = cutoff;
    return d;
  }

  /**
   * Cut-off push-down: a following top-k means only k positions need the model. Both sorts
   * settle the head one position at a time (a bubble pass per position, a heap pop per
   * position) and the first k steps do not depend on how many follow, so the top k and the
   * calls that make it are the same as without the cut, for any model.
   */
  absorb(next: Stage): Stage | undefined {
    if (!(next instanceof TopK)) return undefined;
    const k = Math.min(next.k, this.set.cutoff ?? Infinity);
    return new SetwiseStage(this.backend, this.common, { ...this.set, cutoff: k });
  }

  async close(): Promise<void> {
    await this.backend.close?.();
  }

  run(batch: readonly Ranking[], ctx: StageContext): Promise<Ranking[]> {
    return eachQuery(batch, (r) => this.rankOne(r, ctx));
  }

  private async rankOne(r: Ranking, ctx: StageContext): Promise<Ranking> {
    const { common } = this;
    const docs = await lookupDocs(r, ctx, this.name);
    ctx.costs.add(LLM_TRUNCATED, docs.filter((d) => truncated(d, common.maxWords)).length);
    const calls = new QueryCalls(this.backend, common.budget, common.price, ctx.costs);
    const pick: PickBest = async (items) => {
      if (items.length === 1) return items[0];
      const set: Doc[] = items.map((i) => docs[i]);
      const key = ctx.cache ? `llm.setwise\u0000${keyHash([this.backend.id, PROMPT_VERSION, common.maxWords, common.instruction ?? '', r.query.text, set.map((d) => [d.id, contentHash(d)])])}` : '';
      const cached = getOrder(ctx.cache, key, 1);
      if (cached && cached[0] < items.length) {
        ctx.costs.add(LLM_CACHE_HITS, 1);
        return items[cached[0]];
      }
      const answer = await calls.call(setwisePrompt(r.query.text, set, common.maxWords, common.instruction), 8);
      if (!answer) return undefined;
      // Only the first label matters; no label keeps the set's first item (its previous order).
      const parsed = parsePermutation(answer.text, items.length, 'letter');
      const status = parsed.status === 'fallback' ? 'fallback' : 'clean';
      ctx.costs.add(PARSE_COSTS[status], 1);
      if (status === 'clean') setCachedPick(ctx, key, parsed.order[0]);
      return items[parsed.order[0]];
    };
    const start = arrange(docs.map((_, i) => i), common.order, common.seed, r.query.id);
    const k = Math.min(this.set.topK, this.set.cutoff ?? Infinity, start.length);
    const result = this.set.policy === 'heap' ? await heapTop(start, k, this.set.setSize, pick) : await bubbleTop(start, k, this.set.setSize, pick);
    const hits = rankScored(result.items.map((i) => r.hits[i]), this.name).slice(0, this.set.cutoff);
    return degraded(r, hits, this.name, result.stopped ? calls.stopped : undefined, ctx.costs);
  }
}

function setCachedPick(ctx: StageContext, key: string, best: number): void {
  setOrder(ctx.cache, key, [best]);
}

/**
 * Setwise bubble sort: pass p slides a set of `c` from the bottom up to position p, moving
 * each set's best to the set's top, so the best of items[p..] ends at p. Sets overlap by one.
 */
export async function bubbleTop(items: readonly number[], k: number, c: number, pick: PickBest): Promise<{ items: number[]; stopped: boolean }> {
  const list = [...items];
  for (let p = 0; p < k && p < list.length - 1; p++) {
    let end = list.length;
    while (end - p > 1) {
      const start = Math.max(p, end - c);
      const best = await pick(list.slice(start, end));
      if (best === undefined) return { items: list, stopped: true };
      const at = list.indexOf(best, start);
      list.splice(at, 1);
      list.splice(start, 0, best);
      end = start + 1;
    }
  }
  return { items: list, stopped: false };
}

/**
 * Setwise heapsort: a heap where each node has `c - 1` children, so sifting compares one set
 * per level; the top `k` are popped in order and the rest follow in their previous order.
 * Over budget during heap building nothing is ordered yet, so the input order is kept.
 */
export async function heapTop(items: readonly number[], k: number, c: number, pick: PickBest): Promise<{ items: number[]; stopped: boolean }> {
  const heap = [...items];
  const d = c - 1;
  let size = heap.length;
  const siftDown = async (i: number): Promise<boolean> => {
    for (;;) {
      const kids: number[] = [];
      for (let j = d * i + 1; j <= d * i + d && j < size; j++) kids.push(j);
      if (kids.length === 0) return true;
      const positions = [i, ...kids];
      const best = await pick(positions.map((x) => heap[x]));
      if (best === undefined) return false;
      const bp = positions[positions.map((x) => heap[x]).indexOf(best)];
      if (bp === i) return true;
      [heap[i], heap[bp]] = [heap[bp], heap[i]];
      i = bp;
    }
  };
  for (let i = Math.floor((size - 2) / d); i >= 0; i--) {
    if (!(await siftDown(i))) return { items: [...items], stopped: true };
  }
  const top: number[] = [];
  let stopped = false;
  while (top.length < k && size > 0) {
    top.push(heap[0]);
    heap[0] = heap[size - 1];
    size--;
    if (size > 0 && top.length < k && !(await siftDown(0))) {
      stopped = true;
      break;
    }
  }
  const chosen = new Set(top);
  return { items: [...top, ...items.filter((x) => !chosen.has(x))], stopped };
}

registry.defineStage(
  'setwise',
  async (value, rest, { where }) => {
    const { common, own } = readOptions('setwise', value, rest, where, ['setSize', 'policy', 'topK']);
    const policy = own.policy ?? 'heap';
    if (policy !== 'heap' && policy !== 'bubble') throw new WinnowError('bad_spec', `${where}.setwise.policy: expected heap or bubble, got ${JSON.stringify(policy)}`);
    const set: SetwiseOptions = {
      setSize: own.setSize === undefined ? 4 : posInt(own.setSize, `${where}.setwise.setSize`),
      policy,
      topK: own.topK === undefined ? 10 : posInt(own.topK, `${where}.setwise.topK`),
    };
    return new SetwiseStage(await backendFor(common.model, common.backend, `${where}.setwise`), common, set);
  },
  'rerank the top k with an LLM picking the best of small sets: `setwise: {model: openai:MODEL, setSize: 4, policy: heap|bubble, topK: 10}`',
);
