import { WinnowError } from '../core/errors.js';
import { readModelFolder } from '../models/folder.js';
import { BiEncoder, type BiEncoderOptions } from './bi-encoder.js';
import { CrossEncoder, type CrossEncoderOptions } from './cross-encoder.js';
import { LateInteraction, type LateInteractionOptions } from './late-interaction.js';
import type { Scorer } from './scorer.js';
import { registry } from '../core/registry.js';

export type ScorerOptions = CrossEncoderOptions & BiEncoderOptions & LateInteractionOptions;

/**
 * Builds the scorer a model folder is for: the manifest's `task`, else config.json
 * `architectures` (`*ForSequenceClassification` -> cross-encoder), sentence-transformers
 * files -> bi-encoder, ColBERT files (artifact.metadata, PyLate config) -> late interaction.
 */
export async function loadScorer(folder: string, options: ScorerOptions = {}): Promise<Scorer> {
  const f = readModelFolder(folder, options);
  switch (f.task) {
    case 'cross-encoder':
      return CrossEncoder.load(f, options);
    case 'embedding':
      return BiEncoder.load(f, options);
    case 'late-interaction':
      return LateInteraction.load(f, options);
    default:
      throw new WinnowError(
        'model_error',
        `${f.dir}: cannot tell what the model is for (no winnow-model.json task, no *ForSequenceClassification architecture, no sentence-transformers or ColBERT files)`,
        'add winnow-model.json with "task": "cross-encoder" | "embedding" | "late-interaction"',
      );
  }
}

registry.defineScorerFallback(
  (ref, options, { env, where }) => env.loadModel(ref, options, where),
  'a model folder or reference (org/name, hf:, maven:group:artifact, pypi:package): cross-encoder, bi-encoder or late interaction by what the folder holds',
);
