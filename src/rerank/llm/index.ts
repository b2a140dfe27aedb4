/** LLM rerank stages: `listwise`, `judge` and `setwise` spec keys, on OpenAI-compatible, Anthropic or GGUF backends. */
import './listwise.js';
import './judge.js';
import './setwise.js';

export { ListwiseStage, type ListwiseOptions } from './listwise.js';
export { JudgeStage, readJudgement, type JudgeMode } from './judge.js';
export { SetwiseStage, bubbleTop, heapTop, type SetwiseOptions } from './setwise.js';
export { slidingWindow, topDown, windowStarts } from './window.js';
export { parsePermutation, defuseIds, normalizeDigits, stripReasoning } from './parse.js';
export { backendFor } from './common.js';
export type { LlmBackend, LlmAnswer, LlmRequest } from './backend.js';
export { MemoBackend, onMemoBackend } from './replay.js';
