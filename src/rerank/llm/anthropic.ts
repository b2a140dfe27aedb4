import { WinnowError } from '../../core/errors.js';
import { joinUrl, numberAt, requireKey, setting } from '../remote/base.js';
import { HttpClient } from '../remote/http.js';
import { callName, endpointLimiter, type BackendOptions, type Limiter, type LlmAnswer, type LlmBackend, type LlmRequest } from './backend.js';
import { estimateTokens } from './prompt.js';

export interface AnthropicOptions extends BackendOptions {
  /** the `anthropic-version` header; default 2023-06-01 */
  version?: string;
}

/**
 * Anthropic's Messages API. It returns no log-probabilities, so judges read the answer's text
 * (a yes/no judge then scores 0 or 1). Base URL from the spec, else `ANTHROPIC_BASE_URL`,
 * else api.anthropic.com; key from the spec or `ANTHROPIC_API_KEY`.
 */
export class AnthropicBackend implements LlmBackend {
  readonly provider = 'anthropic';
  readonly id: string;
  private readonly url: string;
  private readonly headers: Record<string, string>;
  private readonly http: HttpClient;
  private readonly limiter: Limiter;
  private readonly name: string;

  constructor(
    readonly model: string,
    private readonly opts: AnthropicOptions = {},
  ) {
    const env = opts.env ?? process.env;
    const base = setting(opts.baseUrl, env, ['ANTHROPIC_BASE_URL'], 'https://api.anthropic.com') as string;
    const key = requireKey(setting(opts.apiKey, env, ['ANTHROPIC_API_KEY']), callName('anthropic', model), ['ANTHROPIC_API_KEY']);
    this.url = joinUrl(base, '/v1/messages');
    this.headers = { 'x-api-key': key, 'anthropic-version': opts.version ?? '2023-06-01' };
    this.http = new HttpClient(opts);
    this.limiter = endpointLimiter(this.url, opts.concurrency);
    this.name = callName('anthropic', model);
    const u = new URL(base);
    this.id = `anthropic:${model}@${u.host}${u.pathname.replace(/\/+$/, '')}`;
  }

  async complete(req: LlmRequest): Promise<LlmAnswer> {
    const body = {
      model: this.model,
      max_tokens: req.maxTokens,
      temperature: 0,
      system: req.system,
      messages: [{ role: 'user', content: req.user }],
    };
    const http = req.signal ? new HttpClient({ ...this.opts, signal: req.signal }) : this.http;
    const json = await this.limiter.run(() => http.postJson({ provider: this.name, url: this.url, headers: this.headers, body, resultsKey: 'content', keyHint: 'ANTHROPIC_API_KEY or apiKey' }));
    const content = (json as { content?: unknown }).content;
    if (!Array.isArray(content)) throw new WinnowError('model_error', `${this.name}: answer from ${this.url} has no content list`);
    const text = content
      .filter((b): b is { type: string; text: string } => (b as { type?: unknown })?.type === 'text' && typeof (b as { text?: unknown }).text === 'string')
      .map((b) => b.text)
      .join('');
    return {
      text,
      tokensIn: numberAt(json, 'usage', 'input_tokens') ?? estimateTokens(req),
      tokensOut: numberAt(json, 'usage', 'output_tokens') ?? Math.ceil(text.length / 4),
    };
  }
}
