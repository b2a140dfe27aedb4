import { CACHE_HITS, CACHE_MISSES, PAIRS } from '../../core/costs.js';
import { WinnowError } from '../../core/errors.js';
import { registry } from '../../core/registry.js';
import type { Stage, StageContext, StageDescription } from '../../core/stage.js';
import { compareHits, type Doc, type Hit, type Ranking, type ScoreKind } from '../../core/types.js';
import type { LlmBackend } from './backend.js';
import { arrange, backendFor, degraded, eachQuery, keyHash, LLM_TRUNCATED, lookupDocs, PARSE_COSTS, QueryCalls, readOptions, type LlmStageOptions } from './common.js';
import { optionProbabilities, parseGrade, parseYesNo, type ParseStatus } from './parse.js';
import { gradedPrompt, PROMPT_VERSION, truncated, yesNoPrompt } from './prompt.js';

/** `yesno`: score = P(yes); `graded`: expected grade on the 0-3 rubric. */
export type JudgeMode = 'yesno' | 'graded';

const GRADES = ['0', '1', '2', '3'];
/** alternatives asked for the first answer token: enough to hold yes/no or the four grades in their spellings */
const TOP_LOGPROBS = 10;

/**
 * Reads a judge's answer: from the first token's log-probabilities when the backend returns
 * them (P(yes) normalised over yes and no; the expected grade over 0-3), else from the text.
 * An answer that says nothing usable scores the middle of the scale.
 */
export function readJudgement(mode: JudgeMode, text: string, top: Parameters<typeof optionProbabilities>[0]): { score: number; status: ParseStatus } {
  if (mode === 'yesno') {
    const p = optionProbabilities(top, ['yes', 'no']);
    if (p) return { score: p[0], status: 'clean' };
    const v = parseYesNo(text);
    return v === undefined ? { score: 0.5, status: 'fallback' } : { score: v, status: 'clean' };
  }
  const p = optionProbabilities(top, GRADES);
  if (p) return { score: p.reduce((sum, pg, g) => sum + g * pg, 0), status: 'clean' };
  const g = parseGrade(text, 3);
  return g === undefined ? { score: 1.5, status: 'fallback' } : { score: g, status: 'clean' };
}

/**
 * A pointwise LLM judge. Each (query, document) pair is one call, so it caches per pair in the
 * run's score cache like any scorer; calls of a query run concurrently up to the endpoint's
 * limit. Over budget, the pairs judged so far (the head of the input) are reordered and the
 * rest follow in their previous order.
 */
export class JudgeStage implements Stage {
  readonly kind = 'reranker' as const;
  readonly scoring = 'pointwise' as const;
  readonly name: string;
  readonly scoreKind: ScoreKind;
  /** everything that changes a judgement: the cache key's stage part */
  readonly id: string;

  constructor(
    readonly backend: LlmBackend,
    readonly common: LlmStageOptions,
    readonly mode: JudgeMode,
  ) {
    this.name = common.name ?? `judge(${backend.model})`;
    this.scoreKind = mode === 'yesno' ? 'probability' : 'unbounded';
    this.id = `llm.judge:${mode}:${backend.id}:v${PROMPT_VERSION}:w${common.maxWords}:${keyHash([common.instruction ?? '']).slice(0, 16)}`;
  }

  describe(): StageDescription {
    const { instruction, maxWords } = this.common;
    return { judge: { model: this.backend.id, mode: this.mode, instruction, maxWords }, name: this.name };
  }

  async close(): Promise<void> {
    await this.backend.close?.();
  }

  run(batch: readonly Ranking[], ctx: StageContext): Promise<Ranking[]> {
    return eachQuery(batch, (r) => this.judgeOne(r, ctx));
  }

  private async judgeOne(r: Ranking, ctx: StageContext): Promise<Ranking> {
    const { common } = this;
    const docs = await lookupDocs(r, ctx, this.name);
    const calls = new QueryCalls(this.backend, common.budget, common.price, ctx.costs);
    const scores: (number | undefined)[] = new Array(r.hits.length);
    const order = arrange(docs.map((_, i) => i), common.order, common.seed, r.query.id);
    let hits = 0;
    await Promise.all(
      order.map(async (i) => {
        const key = ctx.cache?.key(this.id, r.query.text, docs[i]);
        const cached = key === undefined ? undefined : ctx.cache?.get(key);
        if (cached !== undefined) {
          hits++;
          scores[i] = cached;
          return;
        }
        const s = await this.judge(r.query.text, docs[i], calls, ctx);
        if (s === undefined) return;
        scores[i] = s.score;
        if (key !== undefined && s.status !== 'fallback') ctx.cache?.set(key, s.score);
      }),
    );
    if (ctx.cache) {
      ctx.costs.add(CACHE_HITS, hits);
      ctx.costs.add(CACHE_MISSES, r.hits.length - hits);
    }
    const judged: Hit[] = [];
    const rest: Hit[] = [];
    r.hits.forEach((h, i) => {
      const s = scores[i];
      if (s === undefined) rest.push({ ...h, score: 0, scores: { ...h.scores } });
      else judged.push({ ...h, score: s, scores: { ...h.scores, [this.name]: s } });
    });
    judged.sort(compareHits);
    return degraded(r, [...judged, ...rest], this.name, rest.length ? calls.stopped : undefined, ctx.costs);
  }

  private async judge(query: string, doc: Doc, calls: QueryCalls, ctx: StageContext): Promise<{ score: number; status: ParseStatus } | undefined> {
    const { maxWords, instruction } = this.common;
    if (truncated(doc, maxWords)) ctx.costs.add(LLM_TRUNCATED, 1);
    const prompt = this.mode === 'yesno' ? yesNoPrompt(query, doc, maxWords, instruction) : gradedPrompt(query, doc, maxWords, instruction);
    const answer = await calls.call(prompt, 4, TOP_LOGPROBS);
    if (!answer) return undefined;
    ctx.costs.add(PAIRS, 1);
    const read = readJudgement(this.mode, answer.text, answer.top);
    ctx.costs.add(PARSE_COSTS[read.status], 1);
    return read;
  }
}

registry.defineStage(
  'judge',
  async (value, rest, { where }) => {
    const { common, own } = readOptions('judge', value, rest, where, ['mode']);
    const mode = own.mode ?? 'yesno';
    if (mode !== 'yesno' && mode !== 'graded') throw new WinnowError('bad_spec', `${where}.judge.mode: expected yesno or graded, got ${JSON.stringify(mode)}`);
    return new JudgeStage(await backendFor(common.model, common.backend, `${where}.judge`), common, mode);
  },
  'score each pair with an LLM judge: `judge: {model: openai:MODEL, mode: yesno|graded, instruction: …}` (yes/no → P(yes) from logprobs; graded → expected 0-3 grade)',
);
