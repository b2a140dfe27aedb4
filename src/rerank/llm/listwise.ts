import { registry } from '../../core/registry.js';
import type { Stage, StageContext, StageDescription } from '../../core/stage.js';
import type { Ranking } from '../../core/types.js';
import { posInt } from '../../core/values.js';
import { WinnowError } from '../../core/errors.js';
import type { LlmBackend } from './backend.js';
import { getOrder, setOrder } from './cache.js';
import {
  arrange, backendFor, contentHash, degraded, eachQuery, keyHash, LLM_CACHE_HITS, LLM_TRUNCATED, lookupDocs, PARSE_COSTS, QueryCalls, rankScored, readOptions,
  type LlmStageOptions,
} from './common.js';
import { parsePermutation, type IdStyle } from './parse.js';
import { listwisePrompt, PROMPT_VERSION, truncated } from './prompt.js';
import { slidingWindow, topDown, walkForTopK } from './window.js';
import { TopK } from '../../cascade/cutoff.js';

export interface ListwiseOptions {
  /** passages per call; default 20 */
  window: number;
  /** how far each window moves toward the head; default 10 */
  stride: number;
  /** sliding-window passes; default 1 */
  passes: number;
  /** `sliding` (back to front over the whole list) or `topDown` (partition around a pivot for the top `topK`) */
  strategy: 'sliding' | 'topDown';
  /** with `topDown`: how many of the head the model orders; default 10 */
  topK: number;
  /** `[1]` or `[A]` identifiers */
  ids: IdStyle;
  /** most answer tokens; default 8 per passage + 16 (room for `[12] > ` each) */
  maxAnswerTokens?: number;
  /**
   * a following top-k cut-off taken in (`absorb`): the stage keeps k hits and walks only as
   * far as the top k needs (`walkForTopK`; with `topDown`, its topK is at most k)
   */
  cutoff?: number;
}

const OWN = ['window', 'stride', 'passes', 'strategy', 'topK', 'ids', 'maxAnswerTokens'];

/**
 * A listwise LLM reranker (RankGPT, RankZephyr): the model sees a window of passages and
 * answers with their order; windows slide from the back of the list to its head, so strong
 * passages bubble up. Scores are ranks (n for the first), so the kind is `unbounded`.
 */
export class ListwiseStage implements Stage {
  readonly kind = 'reranker' as const;
  readonly scoring = 'listwise' as const;
  readonly scoreKind = 'unbounded' as const;
  readonly name: string;

  constructor(
    readonly backend: LlmBackend,
    readonly common: LlmStageOptions,
    readonly list: ListwiseOptions,
  ) {
    if (list.stride > list.window) throw new WinnowError('bad_spec', `listwise: stride (${list.stride}) must not exceed window (${list.window})`);
    if (list.window < 2) throw new WinnowError('bad_spec', 'listwise: window must be at least 2');
    if (list.strategy === 'topDown' && list.topK >= list.window) throw new WinnowError('bad_spec', `listwise: topK (${list.topK}) must be below window (${list.window})`);
    this.name = common.name ?? `listwise(${backend.model})`;
  }

  get label(): string | undefined {
    return this.list.cutoff === undefined ? undefined : `${this.name} → top(${this.list.cutoff})`;
  }

  describe(): StageDescription {
    const { window, stride, passes, strategy, topK, ids, cutoff } = this.list;
    const { instruction, maxWords, order, seed } = this.common;
    const d: StageDescription = { listwise: { model: this.backend.id, window, stride, passes, strategy, ...(strategy === 'topDown' ? { topK } : {}), ids, instruction, maxWords, order, seed }, name: this.name };
    if (cutoff !== undefined) d.top = cutoff;
    return d;
  }

  /** Cut-off push-down: a following top-k becomes the stage's window budget (see `walkForTopK`). */
  absorb(next: Stage): Stage | undefined {
    if (!(next instanceof TopK)) return undefined;
    const k = Math.min(next.k, this.list.cutoff ?? Infinity);
    return new ListwiseStage(this.backend, this.common, { ...this.list, cutoff: k });
  }

  async close(): Promise<void> {
    await this.backend.close?.();
  }

  run(batch: readonly Ranking[], ctx: StageContext): Promise<Ranking[]> {
    return eachQuery(batch, (r) => this.rankOne(r, ctx));
  }

  private async rankOne(r: Ranking, ctx: StageContext): Promise<Ranking> {
    const { common, list } = this;
    const docs = await lookupDocs(r, ctx, this.name);
    ctx.costs.add(LLM_TRUNCATED, docs.filter((d) => truncated(d, common.maxWords)).length);
    const calls = new QueryCalls(this.backend, common.budget, common.price, ctx.costs);
    const answerTokens = list.maxAnswerTokens ?? 8 * list.window + 16;
    const rank = async (window: number[]): Promise<number[] | undefined> => {
      const wdocs = window.map((i) => docs[i]);
      const key = ctx.cache
        ? `llm.listwise\u0000${keyHash([this.backend.id, PROMPT_VERSION, list.ids, common.maxWords, common.instruction ?? '', r.query.text, wdocs.map((d) => [d.id, contentHash(d)])])}`
        : '';
      const cached = getOrder(ctx.cache, key, window.length);
      if (cached) {
        ctx.costs.add(LLM_CACHE_HITS, 1);
        return cached.map((j) => window[j]);
      }
      const answer = await calls.call(listwisePrompt(r.query.text, wdocs, common.maxWords, list.ids, common.instruction), answerTokens);
      if (!answer) return undefined;
      const parsed = parsePermutation(answer.text, window.length, list.ids);
      ctx.costs.add(PARSE_COSTS[parsed.status], 1);
      // A fallback may be a transient failure (an empty answer): asking again later may do better.
      if (parsed.status !== 'fallback') setOrder(ctx.cache, key, parsed.order);
      return parsed.order.map((j) => window[j]);
    };
    const start = arrange(docs.map((_, i) => i), common.order, common.seed, r.query.id);
    const walk = walkForTopK(list.window, list.stride, list.passes, list.cutoff);
    const walked =
      list.strategy === 'topDown'
        ? await topDown(start, list.window, Math.min(list.topK, list.cutoff ?? Infinity), rank)
        : await slidingWindow(start, list.window, walk.stride, walk.passes, rank);
    // Scored over the whole list, then cut: the same hits and scores as the stage and a top(k) apart.
    const hits = rankScored(walked.items.map((i) => r.hits[i]), this.name).slice(0, list.cutoff);
    return degraded(r, hits, this.name, walked.stopped ? calls.stopped : undefined, ctx.costs);
  }
}

registry.defineStage(
  'listwise',
  async (value, rest, { where }) => {
    const { common, own } = readOptions('listwise', value, rest, where, OWN);
    const strategy = own.strategy ?? 'sliding';
    if (strategy !== 'sliding' && strategy !== 'topDown') throw new WinnowError('bad_spec', `${where}.listwise.strategy: expected sliding or topDown, got ${JSON.stringify(strategy)}`);
    const ids = own.ids ?? 'number';
    if (ids !== 'number' && ids !== 'letter') throw new WinnowError('bad_spec', `${where}.listwise.ids: expected number or letter, got ${JSON.stringify(ids)}`);
    const window = own.window === undefined ? 20 : posInt(own.window, `${where}.listwise.window`);
    const list: ListwiseOptions = {
      window,
      stride: own.stride === undefined ? Math.max(1, Math.floor(window / 2)) : posInt(own.stride, `${where}.listwise.stride`),
      passes: own.passes === undefined ? 1 : posInt(own.passes, `${where}.listwise.passes`),
      strategy,
      topK: own.topK === undefined ? Math.min(10, window - 1) : posInt(own.topK, `${where}.listwise.topK`),
      ids,
      maxAnswerTokens: own.maxAnswerTokens === undefined ? undefined : posInt(own.maxAnswerTokens, `${where}.listwise.maxAnswerTokens`),
    };
    return new ListwiseStage(await backendFor(common.model, common.backend, `${where}.listwise`), common, list);
  },
  'rerank with an LLM over sliding windows (RankGPT): `listwise: {model: openai:MODEL, window: 20, stride: 10, passes: 1, strategy: sliding|topDown, instruction: …, budget: {maxCalls, maxTokens, deadlineMs}, price: {input, output}}`',
);
