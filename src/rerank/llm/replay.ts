import type { Stage } from '../../core/stage.js';
import type { LlmAnswer, LlmBackend, LlmRequest } from './backend.js';
import { JudgeStage } from './judge.js';
import { ListwiseStage } from './listwise.js';
import { SetwiseStage } from './setwise.js';
import type { Prompt } from './prompt.js';

/**
 * A backend for `winnow tune`: each distinct request goes to the model once and its answer is
 * replayed after that, so the tuner can run an LLM stage on many candidate lists and pay only
 * for windows it has not seen. The stage itself runs without a cache, so it books every call
 * as a cold production run would (calls, tokens, money); only this backend knows which calls
 * were real. Latencies are kept of the real calls only.
 */
export class MemoBackend implements LlmBackend {
  readonly id: string;
  readonly provider: string;
  readonly model: string;
  /** ms of each real call, in the order they were made */
  readonly ms: number[] = [];
  /** requests answered from memory */
  replayed = 0;
  private readonly answers = new Map<string, Promise<LlmAnswer>>();

  constructor(private readonly inner: LlmBackend) {
    this.id = inner.id;
    this.provider = inner.provider;
    this.model = inner.model;
  }

  complete(req: LlmRequest): Promise<LlmAnswer> {
    const key = JSON.stringify([req.system, req.user, req.maxTokens, req.topLogprobs ?? null]);
    const known = this.answers.get(key);
    if (known) {
      this.replayed++;
      return known;
    }
    const t0 = performance.now();
    const answer = this.inner.complete(req).then((a) => {
      this.ms.push(performance.now() - t0);
      return a;
    });
    this.answers.set(key, answer);
    // A failed call is not remembered: the next identical request tries again.
    answer.catch(() => this.answers.delete(key));
    return answer;
  }

  countTokens(prompt: Prompt): number | undefined {
    return this.inner.countTokens?.(prompt);
  }
}

/**
 * The same LLM stage on a `MemoBackend`, for the tuner; undefined for a stage that is no LLM
 * stage (the tuner then costs it as it costs any other).
 */
export function onMemoBackend(stage: Stage): { stage: Stage; backend: MemoBackend } | undefined {
  if (stage instanceof ListwiseStage) {
    const backend = new MemoBackend(stage.backend);
    return { stage: new ListwiseStage(backend, stage.common, stage.list), backend };
  }
  if (stage instanceof JudgeStage) {
    const backend = new MemoBackend(stage.backend);
    return { stage: new JudgeStage(backend, stage.common, stage.mode), backend };
  }
  if (stage instanceof SetwiseStage) {
    const backend = new MemoBackend(stage.backend);
    return { stage: new SetwiseStage(backend, stage.common, stage.set), backend };
  }
  return undefined;
}
