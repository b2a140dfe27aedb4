import { WinnowError } from '../../core/errors.js';
import { intAtLeast } from '../../core/values.js';
import type { HttpOptions } from '../remote/http.js';
import type { TokenLogprob } from './parse.js';
import type { Prompt } from './prompt.js';

/** One completion request, whatever the backend. */
export interface LlmRequest extends Prompt {
  /** most tokens to generate */
  maxTokens: number;
  /** ask for this many alternatives of the first answer token (judges read P(yes) from them) */
  topLogprobs?: number;
  /** cancels the call (a query's deadline) */
  signal?: AbortSignal;
}

export interface LlmAnswer {
  text: string;
  tokensIn: number;
  tokensOut: number;
  /** alternatives for the first generated token, when the backend returns them */
  top?: TokenLogprob[];
}

/** An LLM behind a chat or completion interface. */
export interface LlmBackend {
  /** provider, model and endpoint: part of every cache key */
  readonly id: string;
  /** `openai`, `anthropic`, `gguf` */
  readonly provider: string;
  readonly model: string;
  complete(req: LlmRequest): Promise<LlmAnswer>;
  /** prompt tokens of a request, when the backend can count them before sending (budgets reserve them) */
  countTokens?(prompt: Prompt): number | undefined;
  close?(): Promise<void>;
}

/** Options every backend takes from the stage's spec entry. */
export interface BackendOptions extends HttpOptions {
  baseUrl?: string;
  apiKey?: string;
  /** calls in flight at once to one endpoint, shared by every stage that uses it; default 4 */
  concurrency?: number;
  /** where `${VAR}` and default env vars are read; default `process.env` (tests pass their own) */
  env?: Record<string, string | undefined>;
}

/**
 * Expands `${VAR}` from `env`; a variable that is unset is an error naming it, since an empty
 * model name or URL would fail later with a less useful message.
 */
export function expandEnv(value: string, env: Record<string, string | undefined>, where: string): string {
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
    const v = env[name];
    if (v === undefined || v === '') throw new WinnowError('usage', `${where}: environment variable ${name} is not set`, `export ${name}=… or write the value in the spec`);
    return v;
  });
}

/**
 * A counting semaphore. One per endpoint, so stages and queries that share an endpoint share
 * its limit (a local server serves a few requests at once; a hosted API has a rate limit).
 */
export class Limiter {
  private active = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(readonly limit: number) {
    intAtLeast(limit, 'concurrency');
  }

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    try {
      return await work();
    } finally {
      // Hand the slot straight to the next waiter, so `active` never dips and lets a newcomer jump the queue.
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}

const LIMITERS = new Map<string, Limiter>();

/** The limiter of an endpoint; the first stage to name an endpoint sets its limit. */
export function endpointLimiter(endpoint: string, concurrency = 4): Limiter {
  let l = LIMITERS.get(endpoint);
  if (!l) {
    l = new Limiter(concurrency);
    LIMITERS.set(endpoint, l);
  }
  return l;
}

/** Splits `provider:model`; the model keeps any further colons (`openai:qwen2.5:7b` for Ollama). */
export function splitModelRef(ref: string, where: string): { provider: string; model: string } {
  const colon = ref.indexOf(':');
  if (colon <= 0 || colon === ref.length - 1) {
    throw new WinnowError('bad_spec', `${where}: model "${ref}" is not provider:model`, 'write openai:MODEL, anthropic:MODEL or gguf:/path/model.gguf');
  }
  return { provider: ref.slice(0, colon), model: ref.slice(colon + 1) };
}

/** `provider (model M)`: how errors name a call, with the endpoint URL added by the HTTP client. */
export function callName(provider: string, model: string): string {
  return `${provider} (model ${model})`;
}
