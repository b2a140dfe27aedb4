import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import test from 'node:test';
import { build, context, corpus, ids, ranking } from './helpers.js';
import type { Stage } from '../../../src/core/stage.js';

/**
 * The in-process GGUF path end to end on a real model: tools/fetch-gguf.sh puts Gemma 3 270M
 * (a base model: plumbing, not quality) under .venv/; WINNOW_GGUF may point elsewhere.
 */
const MODEL = process.env.WINNOW_GGUF ?? path.resolve('.venv/gguf/models/gemma-3-270m-q4_k_m.gguf');

async function unavailable(): Promise<string | undefined> {
  if (!existsSync(MODEL)) return `no GGUF model at ${MODEL} (run tools/fetch-gguf.sh)`;
  try {
    await import('node-llama-cpp' as string);
  } catch {
    return 'node-llama-cpp is not installed (tools/fetch-gguf.sh installs it without saving)';
  }
  return undefined;
}

const docs = corpus(3, (i) => i);
const input = ranking('q', ['d0', 'd1', 'd2']);

test('gguf backend: listwise over 3 documents returns a permutation and books tokens', async (t) => {
  const why = await unavailable();
  if (why) return t.skip(why);
  let stage: Stage;
  try {
    stage = await build({ listwise: { model: `gguf:${MODEL}`, contextSize: 1024, threads: 1, maxAnswerTokens: 16 } });
  } catch (e) {
    // Only a platform without a prebuilt binary is a reason to skip; anything else fails.
    if (/cannot load .* with node-llama-cpp/.test((e as Error).message)) return t.skip(`node-llama-cpp cannot load here: ${(e as Error).message}`);
    throw e;
  }
  const ctx = context(docs);
  const [out] = await stage.run([input], ctx);
  assert.deepEqual([...ids(out)].sort(), ['d0', 'd1', 'd2']);
  assert.equal(ctx.costs.get('llm.calls'), 1);
  assert.ok(ctx.costs.get('llm.tokens.in') > 50, 'prompt tokens counted by the model tokenizer');
  assert.ok(ctx.costs.get('llm.tokens.out') >= 1);
  const parsed = ctx.costs.get('llm.parse.clean') + ctx.costs.get('llm.parse.repaired') + ctx.costs.get('llm.parse.fallback');
  assert.equal(parsed, 1, 'the answer was read one way or another');

  const judge = await build({ judge: { model: `gguf:${MODEL}`, contextSize: 1024, threads: 1 } });
  const jctx = context(docs);
  const [judged] = await judge.run([input], jctx);
  assert.equal(judged.hits.length, 3);
  for (const h of judged.hits) assert.ok(h.score >= 0 && h.score <= 1, `P(yes) in [0, 1]: ${h.score}`);
  assert.equal(jctx.costs.get('llm.calls'), 3);
  await stage.close?.();
});
