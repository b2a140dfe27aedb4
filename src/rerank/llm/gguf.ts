import { existsSync } from 'node:fs';
import path from 'node:path';
import { WinnowError } from '../../core/errors.js';
import { Limiter, type BackendOptions, type LlmAnswer, type LlmBackend, type LlmRequest } from './backend.js';
import type { TokenLogprob } from './parse.js';
import type { Prompt } from './prompt.js';

/** Options of the in-process backend (spec fields on the stage). */
export interface GgufOptions extends BackendOptions {
  /** tokens of context; default 4096 (a 20-passage window at 100 words needs about 3000) */
  contextSize?: number;
  /** `false` (default) for CPU, or node-llama-cpp's `auto`, `cuda`, `vulkan`, `metal` */
  gpu?: false | 'auto' | 'cuda' | 'vulkan' | 'metal';
  /**
   * CPU threads; default node-llama-cpp's (all cores). On a shared machine 1 can be far
   * faster: llama.cpp's threads spin while they wait for each other.
   */
  threads?: number;
}

// The parts of node-llama-cpp used here, typed locally: it is an optional peer dependency, so
// its types may be absent when Winnow is compiled.
interface NlcToken {
  readonly __token?: never;
}
type Token = number & NlcToken;
interface NlcModel {
  tokenize(text: string, specialTokens?: boolean): Token[];
  detokenize(tokens: readonly Token[], specialTokens?: boolean): string;
  isEogToken(token: Token | undefined): boolean;
  readonly tokens: { readonly bos: Token | null };
  readonly fileInfo: { readonly metadata?: { readonly tokenizer?: { readonly chat_template?: string } } };
  createContext(opts: { contextSize?: number; threads?: number }): Promise<NlcContext>;
  dispose(): Promise<void>;
}
interface NlcContext {
  getSequence(): NlcSequence;
  dispose(): Promise<void>;
}
interface NlcSequence {
  clearHistory(): Promise<void>;
  evaluateWithMetadata(tokens: Token[], metadata: { probabilities: true }, options?: { temperature?: number }): AsyncGenerator<{ token: Token; probabilities: Map<Token, number> }, void, void>;
  evaluate(tokens: Token[], options?: { temperature?: number }): AsyncGenerator<Token, void, void>;
  dispose(): void;
}
interface NlcChatWrapper {
  generateContextState(opts: { chatHistory: unknown[] }): { contextText: { tokenize(tokenizer: unknown): Token[] } };
}
interface NlcModule {
  getLlama(opts: { build: 'never'; gpu?: unknown; logLevel?: unknown }): Promise<{ loadModel(opts: { modelPath: string }): Promise<NlcModel> }>;
  resolveChatWrapper?(model: NlcModel): NlcChatWrapper;
  LlamaLogLevel?: Record<string, unknown>;
}

/**
 * A local GGUF model in process, on node-llama-cpp's prebuilt binaries (`build: 'never'`:
 * Winnow never compiles llama.cpp behind a user's back). node-llama-cpp is an optional peer
 * dependency, loaded only when a spec names `gguf:/path/model.gguf`. Models with a chat
 * template get it; base models get the prompt as plain text. Generation is greedy; the first
 * token's probabilities give judges P(yes). Calls run one at a time (one context sequence).
 */
export async function openGguf(file: string, options: GgufOptions & Record<string, unknown>): Promise<LlmBackend> {
  const modelPath = path.resolve(file);
  if (!existsSync(modelPath)) throw new WinnowError('not_found', `gguf: model file not found: ${modelPath}`, 'tools/fetch-gguf.sh fetches a small test model and prints its path');
  let nlc: NlcModule;
  try {
    nlc = (await import('node-llama-cpp' as string)) as NlcModule;
  } catch (e) {
    throw new WinnowError('usage', `gguf: node-llama-cpp is not installed (${(e as Error).message.split('\n')[0]})`, 'npm install node-llama-cpp (an optional dependency of Winnow: prebuilt CPU binaries, nothing is compiled)');
  }
  let model: NlcModel;
  let context: NlcContext;
  try {
    const llama = await nlc.getLlama({ build: 'never', gpu: options.gpu ?? false, logLevel: nlc.LlamaLogLevel?.error });
    model = await llama.loadModel({ modelPath });
    context = await model.createContext({ contextSize: options.contextSize ?? 4096, threads: options.threads });
  } catch (e) {
    throw new WinnowError('model_error', `gguf: cannot load ${modelPath} with node-llama-cpp: ${(e as Error).message.split('\n')[0]}`, 'node-llama-cpp needs a prebuilt binary for this platform (build: never)');
  }
  return new GgufBackend(modelPath, nlc, model, context);
}

class GgufBackend implements LlmBackend {
  readonly provider = 'gguf';
  readonly id: string;
  readonly model: string;
  private readonly sequence: NlcSequence;
  private readonly chat?: NlcChatWrapper;
  // One sequence: calls take turns.
  private readonly limiter = new Limiter(1);

  constructor(
    private readonly file: string,
    nlc: NlcModule,
    private readonly llm: NlcModel,
    private readonly context: NlcContext,
  ) {
    this.model = path.basename(file);
    this.id = `gguf:${file}`;
    this.sequence = context.getSequence();
    if (llm.fileInfo.metadata?.tokenizer?.chat_template && nlc.resolveChatWrapper) this.chat = nlc.resolveChatWrapper(llm);
  }

  complete(req: LlmRequest): Promise<LlmAnswer> {
    return this.limiter.run(() => this.generate(req));
  }

  /** Exact: the tokens `complete` will evaluate (budgets reserve them before the call). */
  countTokens(prompt: Prompt): number {
    return this.promptTokens(prompt).length;
  }

  private promptTokens(req: Prompt): Token[] {
    if (this.chat) {
      const history = [
        { type: 'system', text: req.system },
        { type: 'user', text: req.user },
        { type: 'model', response: [] },
      ];
      return this.chat.generateContextState({ chatHistory: history }).contextText.tokenize((this.llm as unknown as { tokenizer: unknown }).tokenizer);
    }
    const bos = this.llm.tokens.bos;
    const text = this.llm.tokenize(`${req.system}\n\n${req.user}`);
    return bos === null || text[0] === bos ? text : [bos, ...text];
  }

  private async generate(req: LlmRequest): Promise<LlmAnswer> {
    const input = this.promptTokens(req);
    await this.sequence.clearHistory();
    const out: Token[] = [];
    let top: TokenLogprob[] | undefined;
    try {
      // The first token alone carries what judges read (P(yes), the grade's distribution);
      // a full-vocabulary probability map per step would cost seconds, so only it gets one.
      let first: Token | undefined;
      for await (const step of this.sequence.evaluateWithMetadata(input, { probabilities: true }, { temperature: 0 })) {
        first = step.token;
        if (req.topLogprobs) top = [...step.probabilities.entries()].slice(0, req.topLogprobs).map(([t, p]) => ({ token: this.llm.detokenize([t]), logprob: Math.log(p) }));
        break;
      }
      if (first !== undefined && !this.llm.isEogToken(first)) {
        out.push(first);
        if (out.length < req.maxTokens) {
          for await (const token of this.sequence.evaluate([first], { temperature: 0 })) {
            if (req.signal?.aborted || this.llm.isEogToken(token)) break;
            out.push(token);
            if (out.length >= req.maxTokens) break;
          }
        }
      }
    } catch (e) {
      throw new WinnowError('model_error', `gguf (model ${this.file}): generation failed: ${(e as Error).message.split('\n')[0]}`, 'is the prompt longer than contextSize?');
    }
    return { text: this.llm.detokenize(out), tokensIn: input.length, tokensOut: out.length, top };
  }

  private closed = false;

  async close(): Promise<void> {
    // Stages naming the same model share this backend, and each closes it.
    if (this.closed) return;
    this.closed = true;
    this.sequence.dispose();
    await this.context.dispose();
    await this.llm.dispose();
  }
}
