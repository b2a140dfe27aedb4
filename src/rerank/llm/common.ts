import { createHash } from 'node:crypto';
import { defineCost, type Costs } from '../../core/costs.js';
import { WinnowError } from '../../core/errors.js';
import type { StageContext } from '../../core/stage.js';
import { checkOptions } from '../../core/suggest.js';
import { docText, type Doc, type Hit, type Ranking } from '../../core/types.js';
import { num, posInt, str } from '../../core/values.js';
import { lookupDoc } from '../rerank.js';
import { RemoteError } from '../remote/http.js';
import { expandEnv, splitModelRef, type BackendOptions, type LlmAnswer, type LlmBackend, type LlmRequest } from './backend.js';
import type { ParseStatus } from './parse.js';
import { estimateTokens, type Prompt } from './prompt.js';

export const LLM_CALLS = defineCost({ name: 'llm.calls', label: 'llm calls', unit: 'calls', help: 'LLM calls (chat/completion requests; cache hits excluded)', role: 'work' });
export const LLM_TOKENS_IN = defineCost({ name: 'llm.tokens.in', label: 'tok in', unit: 'tokens', help: 'prompt tokens sent to LLMs', role: 'work' });
export const LLM_TOKENS_OUT = defineCost({ name: 'llm.tokens.out', label: 'tok out', unit: 'tokens', help: 'tokens LLMs generated', role: 'work' });
export const LLM_USD = defineCost({ name: 'llm.usd', label: 'usd', unit: 'usd', help: 'LLM spend at the price per million tokens in the spec', role: 'work' });
export const LLM_CACHE_HITS = defineCost({ name: 'llm.cache.hits', label: 'llm cached', unit: 'calls', help: 'LLM answers served from the cache (listwise windows, setwise sets)', role: 'cache' });
export const PARSE_COSTS: Record<ParseStatus, string> = {
  clean: defineCost({ name: 'llm.parse.clean', label: 'parse ok', unit: 'answers', help: 'LLM answers read as given', role: 'note' }),
  repaired: defineCost({ name: 'llm.parse.repaired', label: 'repaired', unit: 'answers', help: 'LLM answers with duplicate, unknown or missing ids, repaired', role: 'note' }),
  fallback: defineCost({ name: 'llm.parse.fallback', label: 'fallback', unit: 'answers', help: 'LLM answers with nothing usable: the previous order was kept', role: 'note' }),
};
export const LLM_DEGRADED = defineCost({ name: 'llm.degraded', label: 'degraded', unit: 'queries', help: 'queries whose LLM stage stopped at its budget and returned the order so far', role: 'note' });
export const LLM_TRUNCATED = defineCost({ name: 'llm.truncated', label: 'llm trunc', unit: 'documents', help: 'passages cut to the LLM stage word budget', role: 'note' });

/** Per-query limits; on reaching one the stage returns the order it has and marks the ranking degraded. */
export interface Budget {
  maxCalls?: number;
  maxTokens?: number;
  deadlineMs?: number;
}

export interface Price {
  /** USD per million prompt tokens */
  input: number;
  /** USD per million generated tokens */
  output: number;
}

/** Options every LLM stage takes (the stage adds its own). */
export interface LlmStageOptions {
  model: string;
  name?: string;
  /** domain rules ("prefer primary sources"): in the prompt and in every cache key */
  instruction?: string;
  /** words of each passage shown to the model; default 100 */
  maxWords: number;
  price?: Price;
  budget: Budget;
  /** position-bias control: the order the stage sees its input in */
  order: 'keep' | 'reverse' | 'shuffle';
  seed: number;
  backend: BackendOptions & Record<string, unknown>;
}

export const COMMON_KEYS = ['model', 'name', 'instruction', 'maxWords', 'price', 'budget', 'order', 'seed'];
const BACKEND_KEYS = ['baseUrl', 'apiKey', 'concurrency', 'timeoutMs', 'maxAttempts', 'backoffBaseMs', 'backoffMaxMs', 'retryAfterMaxMs', 'logprobs', 'extraBody', 'version', 'contextSize', 'gpu', 'threads'];

/**
 * Reads an LLM stage's spec entry. The key's value is the options object (`listwise: {model:
 * …, window: 20}`) or just the model reference; the entry's other fields are options too.
 */
export function readOptions(what: string, value: unknown, rest: Record<string, unknown>, where: string, own: readonly string[], env = process.env): { common: LlmStageOptions; own: Record<string, unknown> } {
  const o: Record<string, unknown> = typeof value === 'string' ? { model: value, ...rest } : value && typeof value === 'object' && !Array.isArray(value) ? { ...(value as Record<string, unknown>), ...rest } : (undefined as never);
  if (!o) throw new WinnowError('bad_spec', `${where}.${what}: expected the model reference or an options object`, `${what}: {model: openai:gpt-4o-mini, …}`);
  checkOptions(o, [...COMMON_KEYS, ...BACKEND_KEYS, ...own], where, what);
  const model = expandEnv(str(o.model, `${where}.${what}.model`), env, `${where}.${what}.model`);
  const backend: Record<string, unknown> = {};
  for (const k of BACKEND_KEYS) {
    const v = o[k];
    if (v === undefined) continue;
    backend[k] = typeof v === 'string' ? expandEnv(v, env, `${where}.${what}.${k}`) : v;
  }
  const order = o.order ?? 'keep';
  if (order !== 'keep' && order !== 'reverse' && order !== 'shuffle') throw new WinnowError('bad_spec', `${where}.${what}.order: expected keep, reverse or shuffle, got ${JSON.stringify(order)}`);
  const ownOpts: Record<string, unknown> = {};
  for (const k of own) if (o[k] !== undefined) ownOpts[k] = o[k];
  return {
    common: {
      model,
      name: o.name === undefined ? undefined : str(o.name, `${where}.name`),
      instruction: o.instruction === undefined ? undefined : str(o.instruction, `${where}.${what}.instruction`),
      maxWords: o.maxWords === undefined ? 100 : posInt(o.maxWords, `${where}.${what}.maxWords`),
      price: o.price === undefined ? undefined : readPrice(o.price, `${where}.${what}.price`),
      budget: o.budget === undefined ? {} : readBudget(o.budget, `${where}.${what}.budget`),
      order,
      seed: o.seed === undefined ? 0 : num(o.seed, `${where}.${what}.seed`),
      backend,
    },
    own: ownOpts,
  };
}

function readPrice(v: unknown, where: string): Price {
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new WinnowError('bad_spec', `${where}: expected {input: USD per million tokens, output: USD per million tokens}`);
  const o = v as Record<string, unknown>;
  checkOptions(o, ['input', 'output'], where, 'price');
  const p = { input: o.input === undefined ? 0 : num(o.input, `${where}.input`), output: o.output === undefined ? 0 : num(o.output, `${where}.output`) };
  if (p.input < 0 || p.output < 0) throw new WinnowError('bad_spec', `${where}: prices cannot be negative`);
  return p;
}

function readBudget(v: unknown, where: string): Budget {
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new WinnowError('bad_spec', `${where}: expected {maxCalls, maxTokens, deadlineMs}`);
  const o = v as Record<string, unknown>;
  checkOptions(o, ['maxCalls', 'maxTokens', 'deadlineMs'], where, 'budget');
  return {
    maxCalls: o.maxCalls === undefined ? undefined : posInt(o.maxCalls, `${where}.maxCalls`),
    maxTokens: o.maxTokens === undefined ? undefined : posInt(o.maxTokens, `${where}.maxTokens`),
    deadlineMs: o.deadlineMs === undefined ? undefined : posInt(o.deadlineMs, `${where}.deadlineMs`),
  };
}

const BACKENDS = new Map<string, Promise<LlmBackend>>();

/**
 * The backend a model reference names: `openai:MODEL`, `anthropic:MODEL`, `gguf:/path.gguf`.
 * One per reference and options, so stages naming the same model share it (a GGUF model is
 * loaded once).
 */
export function backendFor(model: string, options: BackendOptions & Record<string, unknown>, where: string): Promise<LlmBackend> {
  const key = JSON.stringify([model, options]);
  let b = BACKENDS.get(key);
  if (!b) {
    b = openBackend(model, options, where);
    BACKENDS.set(key, b);
    b.catch(() => BACKENDS.delete(key));
  }
  return b;
}

async function openBackend(ref: string, options: BackendOptions & Record<string, unknown>, where: string): Promise<LlmBackend> {
  const { provider, model } = splitModelRef(ref, where);
  switch (provider) {
    case 'openai':
      return new (await import('./openai.js')).OpenAiBackend(model, options);
    case 'anthropic':
      return new (await import('./anthropic.js')).AnthropicBackend(model, options);
    case 'gguf':
      return (await import('./gguf.js')).openGguf(model, options);
    default:
      throw new WinnowError('bad_spec', `${where}: unknown LLM provider "${provider}" in "${ref}"`, 'write openai:MODEL (any OpenAI-compatible server), anthropic:MODEL or gguf:/path/model.gguf');
  }
}

/**
 * One query's LLM calls: checks its budget before each call, races each call against its
 * deadline, and books calls, tokens and money.
 *
 * Token budgets hold with calls in flight (a judge sends a query's pairs concurrently): a
 * call reserves what it may use, its prompt's tokens (counted by the backend when it can,
 * else estimated) plus the answer's maximum, before it is sent, and is refused when that
 * reservation would take the query past `maxTokens`. When the call returns, the reservation
 * is replaced by what the backend reports. A server that counts more prompt tokens than
 * estimated raises the estimate of the query's later calls by the same ratio.
 */
export class QueryCalls {
  calls = 0;
  /** tokens used by calls that returned */
  tokens = 0;
  /** tokens reserved by calls in flight */
  reserved = 0;
  /** why the query stopped early, once it has */
  stopped?: string;
  private readonly start = performance.now();
  /** reported / estimated prompt tokens, the largest seen: corrects a low estimate */
  private inflation = 1;

  constructor(
    private readonly backend: LlmBackend,
    private readonly budget: Budget,
    private readonly price: Price | undefined,
    private readonly costs: Costs,
  ) {}

  /** The answer, or undefined when the budget is spent (then `stopped` says which limit). */
  async call(prompt: Prompt, maxTokens: number, topLogprobs?: number): Promise<LlmAnswer | undefined> {
    const { maxCalls, maxTokens: tokenCap, deadlineMs } = this.budget;
    if (this.stopped) return undefined;
    if (maxCalls !== undefined && this.calls >= maxCalls) return this.stop(`maxCalls ${maxCalls} reached`);
    const promptTokens = promptTokenEstimate(this.backend, prompt);
    const reservation = Math.ceil(promptTokens * this.inflation) + maxTokens;
    if (tokenCap !== undefined && this.tokens + this.reserved + reservation > tokenCap) return this.stop(`maxTokens ${tokenCap} reached`);
    let signal: AbortSignal | undefined;
    if (deadlineMs !== undefined) {
      const left = deadlineMs - (performance.now() - this.start);
      if (left <= 0) return this.stop(`deadline ${deadlineMs} ms passed`);
      signal = AbortSignal.timeout(Math.ceil(left));
    }
    // Reserved synchronously, before the first await: concurrent callers see each other.
    this.calls++;
    this.reserved += reservation;
    const req: LlmRequest = { ...prompt, maxTokens, topLogprobs, signal };
    let answer: LlmAnswer;
    try {
      answer = await this.backend.complete(req);
    } catch (e) {
      if (signal?.aborted && e instanceof RemoteError) return this.stop(`deadline ${deadlineMs} ms passed`);
      throw e;
    } finally {
      this.reserved -= reservation;
    }
    if (promptTokens > 0) this.inflation = Math.max(this.inflation, answer.tokensIn / promptTokens);
    this.tokens += answer.tokensIn + answer.tokensOut;
    this.costs.add(LLM_CALLS, 1);
    this.costs.add(LLM_TOKENS_IN, answer.tokensIn);
    this.costs.add(LLM_TOKENS_OUT, answer.tokensOut);
    if (this.price) this.costs.add(LLM_USD, (answer.tokensIn * this.price.input + answer.tokensOut * this.price.output) / 1e6);
    return answer;
  }

  private stop(reason: string): undefined {
    this.stopped ??= reason;
    return undefined;
  }
}

/** Prompt tokens of a call before it is sent: the backend's count, else 4 characters a token. */
export function promptTokenEstimate(backend: LlmBackend, prompt: Prompt): number {
  return backend.countTokens?.(prompt) ?? estimateTokens(prompt);
}

/** The documents behind a ranking's hits. */
export function lookupDocs(r: Ranking, ctx: StageContext, stage: string): Promise<Doc[]> {
  return Promise.all(r.hits.map((h) => lookupDoc(h, ctx, stage)));
}

/** A short content hash: an edited document under the same id is a different window. */
export function contentHash(doc: Doc): string {
  return createHash('sha1').update(docText(doc)).digest('base64url').slice(0, 16);
}

/** Hashes a cache key's parts into one short string (window keys would be long otherwise). */
export function keyHash(parts: unknown[]): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('base64url');
}

/** Deterministic per (seed, query): mulberry32 over a hash of both. */
function rng(seed: number, query: string): () => number {
  let a = createHash('sha1').update(`${seed}\u0000${query}`).digest().readUInt32LE(0);
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The input order a stage sees under its `order` option (for measuring position bias). */
export function arrange<T>(items: readonly T[], order: LlmStageOptions['order'], seed: number, queryId: string): T[] {
  if (order === 'keep') return [...items];
  if (order === 'reverse') return [...items].reverse();
  const out = [...items];
  const random = rng(seed, queryId);
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** Hits in a final order, scored by rank (n for the first … 1 for the last) under the stage's name. */
export function rankScored(hits: readonly Hit[], stage: string): Hit[] {
  const n = hits.length;
  return hits.map((h, i) => ({ ...h, score: n - i, scores: { ...h.scores, [stage]: n - i } }));
}

/** A ranking that stopped at its budget: flagged on the ranking and counted in costs. */
export function degraded(r: Ranking, hits: Hit[], stage: string, reason: string | undefined, costs: Costs): Ranking {
  if (!reason) return { query: r.query, hits };
  costs.add(LLM_DEGRADED, 1);
  return { query: r.query, hits, degraded: { stage, reason } };
}

/** Runs queries of a batch concurrently; the endpoint limiter bounds what is in flight. */
export function eachQuery(batch: readonly Ranking[], work: (r: Ranking) => Promise<Ranking>): Promise<Ranking[]> {
  return Promise.all(batch.map(work));
}
