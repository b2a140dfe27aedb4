import { WinnowError } from '../../core/errors.js';
import { joinUrl, numberAt, setting } from '../remote/base.js';
import { HttpClient } from '../remote/http.js';
import { callName, endpointLimiter, type BackendOptions, type Limiter, type LlmAnswer, type LlmBackend, type LlmRequest } from './backend.js';
import { estimateTokens } from './prompt.js';
import type { TokenLogprob } from './parse.js';

export interface OpenAiOptions extends BackendOptions {
  /** set false for servers that reject `logprobs` (judges then read the answer's text) */
  logprobs?: boolean;
  /** fields merged into every request body (`{seed: 1}`, server-specific switches) */
  extraBody?: Record<string, unknown>;
}

/**
 * Any OpenAI-compatible `/chat/completions` endpoint: OpenAI, vLLM, llama.cpp's server,
 * Ollama (`/v1`), LM Studio. Base URL from the spec, else `OPENAI_BASE_URL`, else OpenAI's;
 * key from the spec, else `OPENAI_API_KEY` (local servers need none). Transport (timeouts,
 * retries on 429/5xx with Retry-After, backoff) is the remote scorers' `HttpClient`.
 */
export class OpenAiBackend implements LlmBackend {
  readonly provider = 'openai';
  readonly id: string;
  private readonly url: string;
  private readonly headers: Record<string, string>;
  private readonly http: HttpClient;
  private readonly limiter: Limiter;
  private readonly name: string;

  constructor(
    readonly model: string,
    private readonly opts: OpenAiOptions = {},
  ) {
    const env = opts.env ?? process.env;
    const base = setting(opts.baseUrl, env, ['OPENAI_BASE_URL'], 'https://api.openai.com/v1') as string;
    const key = setting(opts.apiKey, env, ['OPENAI_API_KEY']);
    this.url = joinUrl(base, '/chat/completions');
    this.headers = key ? { authorization: `Bearer ${key}` } : {};
    this.http = new HttpClient(opts);
    this.limiter = endpointLimiter(this.url, opts.concurrency);
    this.name = callName('openai', model);
    const u = new URL(base);
    const extra = opts.extraBody && Object.keys(opts.extraBody).length ? JSON.stringify(opts.extraBody) : '';
    this.id = `openai:${model}@${u.host}${u.pathname.replace(/\/+$/, '')}${extra ? `[${extra}]` : ''}`;
  }

  async complete(req: LlmRequest): Promise<LlmAnswer> {
    const wantLogprobs = req.topLogprobs !== undefined && this.opts.logprobs !== false;
    const body = {
      ...this.opts.extraBody,
      model: this.model,
      messages: [
        { role: 'system', content: req.system },
        { role: 'user', content: req.user },
      ],
      max_tokens: req.maxTokens,
      temperature: 0,
      ...(wantLogprobs ? { logprobs: true, top_logprobs: req.topLogprobs } : {}),
    };
    const http = req.signal ? new HttpClient({ ...this.opts, signal: req.signal }) : this.http;
    const json = await this.limiter.run(() => http.postJson({ provider: this.name, url: this.url, headers: this.headers, body, resultsKey: 'choices', keyHint: 'OPENAI_API_KEY or apiKey' }));
    return readChatAnswer(json, req, this.name, this.url);
  }
}

function readChatAnswer(json: unknown, req: LlmRequest, name: string, url: string): LlmAnswer {
  const choice = (json as { choices?: unknown[] }).choices?.[0] as Record<string, unknown> | undefined;
  if (!choice || typeof choice !== 'object') throw new WinnowError('model_error', `${name}: answer from ${url} has no choices[0]`);
  const message = choice.message as { content?: unknown } | undefined;
  const content = message?.content;
  // A null content (refusal, tool call, cut by length) is an empty answer: the stage keeps its order.
  const text = typeof content === 'string' ? content : '';
  const first = ((choice.logprobs as { content?: unknown[] } | undefined)?.content?.[0] as { top_logprobs?: unknown[] } | undefined)?.top_logprobs;
  const top: TokenLogprob[] | undefined = Array.isArray(first)
    ? first.filter((t): t is TokenLogprob => typeof (t as TokenLogprob)?.token === 'string' && typeof (t as TokenLogprob)?.logprob === 'number')
    : undefined;
  return {
    text,
    // Servers that omit usage still cost something: estimate at 4 characters a token.
    tokensIn: numberAt(json, 'usage', 'prompt_tokens') ?? estimateTokens(req),
    tokensOut: numberAt(json, 'usage', 'completion_tokens') ?? Math.ceil(text.length / 4),
    top: top && top.length ? top : undefined,
  };
}
