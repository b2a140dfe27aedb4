import path from 'node:path';
import { WinnowEnv } from '../../src/cascade/env.js';
import type { CascadeSpec } from '../../src/cascade/spec.js';
import type { Query } from '../../src/core/types.js';
import { loadBeir } from '../../src/eval/io/beir.js';
import type { Qrels } from '../../src/eval/metrics.js';
import { runTune, type TuneOptions, type TuneResult } from '../../src/eval/tune/tune.js';

export const CRANFIELD = path.resolve('../shared/datasets/cranfield');

/** A three-tier BM25-family cascade over a 100-deep pool: cheap enough for CI. */
export const SPEC: CascadeSpec = {
  name: 'bm25x3',
  stages: [
    { retrieve: 'bm25', k1: 0.3, b: 0.2, k: 100 },
    { rerank: 'bm25', name: 'light', k1: 0.9, b: 0.4 },
    { top: 50 },
    { rerank: 'bm25', name: 'heavy', k1: 1.2, b: 0.75 },
    { top: 10 },
  ],
};

export interface Fixture {
  env: WinnowEnv;
  tune: Query[];
  test: Query[];
  qrels: Qrels;
}

let cached: Promise<Fixture> | undefined;

/** Cranfield's first 80 queries, alternating into tuning and held-out halves. */
export function cranfieldFixture(): Promise<Fixture> {
  cached ??= (async () => {
    const ds = await loadBeir(CRANFIELD, 'test');
    const env = await WinnowEnv.create({ corpus: ds.corpusFile });
    const qs = ds.queries.slice(0, 80);
    return { env, tune: qs.filter((_, i) => i % 2 === 0), test: qs.filter((_, i) => i % 2 === 1), qrels: ds.qrels };
  })();
  return cached;
}

export async function tuneFixture(overrides: Partial<TuneOptions> = {}): Promise<TuneResult> {
  const f = await cranfieldFixture();
  return runTune({
    spec: SPEC,
    env: f.env,
    docs: f.env.lookup,
    tune: { name: 'tune', queries: f.tune, qrels: f.qrels },
    test: { name: 'test', queries: f.test, qrels: f.qrels },
    budgetMs: 1000,
    budgetStat: 'p95',
    epsilon: 0.005,
    finalK: 10,
    rrfK: 60,
    earlyExit: false,
    earlyExitLoss: 0.005,
    resamples: 200,
    seed: 7,
    ...overrides,
  });
}
