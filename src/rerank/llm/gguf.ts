import { WinnowError } from '../../core/errors.js';
import type { BackendOptions, LlmBackend } from './backend.js';

export async function openGguf(file: string, _options: BackendOptions & Record<string, unknown>): Promise<LlmBackend> {
  throw new WinnowError('usage', `gguf:${file}: the GGUF backend is not available yet`);
}
