import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { WinnowEnv } from '../../src/cascade/env.js';
import { type CascadeSpec, compileSpec } from '../../src/cascade/spec.js';
import { runExperiment } from '../../src/eval/experiment.js';
import type { Query } from '../../src/core/types.js';
import type { Qrels } from '../../src/eval/metrics.js';
import { type Pools, scorePools } from '../../src/eval/tune/pool.js';
import { fnv1a } from '../../src/eval/tune/random.js';
import { type TuneChoices, tuneOnPools } from '../../src/eval/tune/tune.js';
import { formatTune } from '../../src/cli/tune.js';
import { tuneReport } from '../../src/report/html.js';
import { walkForTopK, windowStarts } from '../../src/rerank/llm/window.js';
import { startFakeLlm } from '../helpers/fake-llm-server.js';

const DEPTH = 30;
const NQ = 24;
const TOKENS_IN = 400;
const TOKENS_OUT = 30;
const PRICE = { input: 2, output: 8 };

/**
 * Per query, 30 documents of equal length whose BM25 order is their number (the topic word
 * 30 - j times); the relevant ones sit at positions 11-16 and 26, where a shallow LLM tier
 * cannot see them. The fake LLM ranks by the qrels grade plus fixed-seed noise.
 */
function dataset(): { dir: string; queries: Query[]; qrels: Qrels; grade: (qid: string, docId: string) => number } {
  const dir = mkdtempSync(path.join(tmpdir(), 'winnow-tune-llm-'));
  const docs: string[] = [];
  const queries: Query[] = [];
  const qrels: Qrels = new Map();
  for (let i = 0; i < NQ; i++) {
    const judged = new Map<string, number>();
    for (let j = 0; j < DEPTH; j++) {
      const id = `q${i}d${j}`;
      const tf = DEPTH - j;
      docs.push(JSON.stringify({ _id: id, title: '', text: `${`topic${i} `.repeat(tf)}${'pad '.repeat(DEPTH - tf)}marker ${id}` }));
    }
    judged.set(`q${i}d${11 + (i % 6)}`, 2);
    judged.set(`q${i}d${26}`, 1);
    judged.set(`q${i}d${3}`, 1);
    qrels.set(`q${i}`, judged);
    queries.push({ id: `q${i}`, text: `about topic${i}` });
  }
  writeFileSync(path.join(dir, 'corpus.jsonl'), docs.join('\n') + '\n');
  const grade = (qid: string, docId: string): number => qrels.get(qid)?.get(docId) ?? 0;
  return { dir, queries, qrels, grade };
}

const CHOICES: Omit<TuneChoices, 'budgetMs' | 'spec'> = {
  tune: { name: 'tune' },
  test: { name: 'test' },
  budgetStat: 'p95',
  epsilon: 0.005,
  finalK: 10,
  rrfK: 60,
  earlyExit: false,
  earlyExitLoss: 0.005,
  resamples: 200,
  seed: 7,
};

/** Machine-independent timing: retrieval free, each LLM call 100 ms (the call counts are what is measured). */
function fixTiming(pools: Pools): void {
  for (const q of pools.queries) q.retrieveMs = 0;
  pools.stages[0].cost = { ...pools.stages[0].cost, fixedMs: 0, medianQueryMs: 0 };
  const llm = pools.stages[pools.stages.length - 1];
  llm.cost = { ...llm.cost, perCallMs: 100 };
}

/** Windows of the pushed-down walk over a list of n for the final top 10 (window 10, stride 5). */
function callsAt(n: number): number {
  const walk = walkForTopK(10, 5, 1, Math.min(10, n));
  return windowStarts(n, 10, walk.stride).filter(([s, e]) => e - s >= 2).length;
}

test('winnow tune with a listwise LLM last tier: depth chosen under the budget, costed per call, deterministic', { timeout: 60_000 }, async () => {
  const { dir, queries, qrels, grade } = dataset();
  const fake = await startFakeLlm({
    tokensIn: TOKENS_IN,
    tokensOut: TOKENS_OUT,
    relevance: (query, passage) => {
      const qid = `q${/topic(\d+)/.exec(query)?.[1]}`;
      const docId = /marker (q\d+d\d+)/.exec(passage)?.[1] ?? '';
      // fixed-seed noise below one grade: orders within a grade, never across two
      return grade(qid, docId) + (fnv1a(`seed1:${docId}`) % 1000) / 1250;
    },
  });
  const env = await WinnowEnv.create({ corpus: path.join(dir, 'corpus.jsonl') });
  try {
    const spec: CascadeSpec = {
      name: 'bm25-llm',
      stages: [
        { retrieve: 'bm25', k: DEPTH },
        { listwise: { model: 'openai:oracle', baseUrl: fake.url, window: 10, stride: 5, price: PRICE }, name: 'llm' },
        { top: 10 },
      ],
    };
    const tuneQs = queries.filter((_, i) => i % 2 === 0);
    const testQs = queries.filter((_, i) => i % 2 === 1);
    const pools = async () => {
      const tp = await scorePools({ spec, env, docs: env.lookup, queries: tuneQs, qrels });
      const hp = await scorePools({ spec, env, docs: env.lookup, queries: testQs, qrels, costs: tp.stages.map((s) => s.cost) });
      fixTiming(tp);
      fixTiming(hp);
      return [tp, hp] as const;
    };
    const [tp, hp] = await pools();
    const llm = tp.stages[1];
    assert.equal(llm.scoring, 'listwise');
    assert.equal(llm.cost.measured, 'calls');
    // the scoring pass ran the tier once per query on the whole pool: 5 windows of 10 over 30
    assert.equal(fake.requests.length, 2 * (NQ / 2) * windowStarts(DEPTH, 10, 5).length);

    // 100 ms a call: 250 ms allows 2 calls (input depth 15), 1000 ms allows the whole pool
    const tight = await tuneOnPools(tp, hp, { ...CHOICES, spec, budgetMs: 250 });
    assert.equal(tight.budget.met, true, tight.budget.message);
    assert.deepEqual(tight.chosen.tune.steps, [{ stage: 'bm25', k: 15 }, { stage: 'llm', k: 10 }]);
    const loose = await tuneOnPools(tp, hp, { ...CHOICES, spec, budgetMs: 1000 });
    assert.deepEqual(loose.chosen.tune.steps, [{ stage: 'bm25', k: 30 }, { stage: 'llm', k: 10 }]);
    assert.ok(loose.chosen.test['nDCG@10'] > tight.chosen.test['nDCG@10'], 'a deeper LLM input finds the relevant document at 26');
    assert.ok(tight.chosen.test['nDCG@10'] > tight.baselines.firstPassAlone['nDCG@10'], 'the LLM tier lifts BM25');

    // per-call costs: calls of the pushed-down walk, tokens and money per call, ms = calls × 100
    for (const [r, depth] of [[tight, 15], [loose, 30]] as const) {
      const p = r.chosen.test;
      const calls = callsAt(depth);
      assert.equal(p.costs?.['llm.calls'], calls, `depth ${depth}`);
      assert.equal(p.costs?.['llm.tokens.in'], calls * TOKENS_IN);
      assert.equal(p.costs?.['llm.tokens.out'], calls * TOKENS_OUT);
      assert.ok(Math.abs((p.costs?.['llm.usd'] ?? 0) - (calls * (TOKENS_IN * PRICE.input + TOKENS_OUT * PRICE.output)) / 1e6) < 1e-12);
      assert.equal(p.latencyMs.p95, calls * 100);
      assert.equal(p.pairs.llm, depth, 'the documents the LLM was shown');
    }
    assert.equal(callsAt(15), 2);
    assert.equal(callsAt(30), 5);

    // shown in the text output and the report
    const text = formatTune(loose);
    assert.match(text, /llm calls\/q/);
    assert.match(text, /usd\/q/);
    assert.match(text, /per call, 100\.0 ms median \(\d+ LLM calls made, \d+ repeats answered from memory\)/);
    const html = await tuneReport(JSON.parse(JSON.stringify(loose)));
    assert.match(html, /llm calls\/q/);
    assert.match(html, /tok in\/q/);
    assert.ok((loose.stages[1].llmCalls?.replayed ?? 0) > 0, 'windows seen before are answered from memory');

    // the written spec runs in winnow eval as the replay predicted: quality and calls per query
    for (const r of [tight, loose]) {
      const pipeline = await compileSpec(r.spec, env, 'tuned');
      const exp = await runExperiment({ pipeline, queries: testQs, qrels, docs: env.lookup, finalK: 10 });
      assert.ok(Math.abs(exp.final['nDCG@10'] - r.final.test['nDCG@10']) < 1e-9, `${exp.final['nDCG@10']} vs ${r.final.test['nDCG@10']}`);
      assert.equal(exp.stages[1].costs['llm.calls'], (r.final.test.costs?.['llm.calls'] ?? 0) * testQs.length);
    }

    // calibration skips the listwise tier (its scores are ranks); an early exit before it still works
    const extras = await tuneOnPools(tp, hp, { ...CHOICES, spec, budgetMs: 1000, calibrate: 'platt', earlyExit: true, earlyExitLoss: 0.05 });
    assert.deepEqual(extras.calibration?.map((c) => c.stage), ['bm25']);
    assert.ok(extras.earlyExit, 'an early-exit margin was tuned in front of the LLM');
    await compileSpec(extras.spec, env, 'tuned with extras');

    // deterministic: scoring and tuning again give the same choices and numbers
    const made = fake.requests.length;
    const [tp2, hp2] = await pools();
    const again = await tuneOnPools(tp2, hp2, { ...CHOICES, spec, budgetMs: 250 });
    assert.deepEqual(again.chosen, tight.chosen);
    assert.deepEqual(again.configs.map((c) => [c.label, c.test['nDCG@10'], c.test.costs]), tight.configs.map((c) => [c.label, c.test['nDCG@10'], c.test.costs]));
    assert.ok(fake.requests.length > made, 'a new scoring pass asks the model again (memory is per pass)');
  } finally {
    await env.close();
    await fake.close();
  }
});

test('winnow tune with a pointwise LLM judge last: replayed from the pool, calls and tokens per pair', { timeout: 60_000 }, async () => {
  const { dir, queries, qrels, grade } = dataset();
  const fake = await startFakeLlm({
    tokensIn: TOKENS_IN,
    tokensOut: 1,
    relevance: (query, passage) => grade(`q${/topic(\d+)/.exec(query)?.[1]}`, /marker (q\d+d\d+)/.exec(passage)?.[1] ?? ''),
  });
  const env = await WinnowEnv.create({ corpus: path.join(dir, 'corpus.jsonl') });
  try {
    const spec: CascadeSpec = { stages: [{ retrieve: 'bm25', k: DEPTH }, { judge: { model: 'openai:oracle', baseUrl: fake.url, price: PRICE }, name: 'judge' }] };
    const qs = queries.slice(0, 12);
    const tp = await scorePools({ spec, env, docs: env.lookup, queries: qs.filter((_, i) => i % 2 === 0), qrels });
    const hp = await scorePools({ spec, env, docs: env.lookup, queries: qs.filter((_, i) => i % 2 === 1), qrels, costs: tp.stages.map((s) => s.cost) });
    assert.equal(fake.requests.length, 12 * DEPTH, 'one call per pair, no second timing call');
    const judge = tp.stages[1];
    assert.equal(judge.scoring, 'pointwise');
    const { 'llm.usd': usd, ...counts } = judge.unitCosts ?? {};
    assert.deepEqual(counts, { 'llm.calls': 1, 'llm.tokens.in': TOKENS_IN, 'llm.tokens.out': 1 });
    assert.ok(Math.abs(usd - (TOKENS_IN * PRICE.input + PRICE.output) / 1e6) < 1e-15, `${usd} usd a pair`);
    const r = await tuneOnPools(tp, hp, { ...CHOICES, spec, budgetMs: 1e9 });
    assert.equal(fake.requests.length, 12 * DEPTH, 'replays ask the model nothing');
    const p = r.chosen.test;
    const pairs = p.pairs.judge;
    assert.ok(pairs > 0);
    assert.equal(p.costs?.['llm.calls'], pairs);
    assert.equal(p.costs?.['llm.tokens.in'], pairs * TOKENS_IN);
  } finally {
    await env.close();
    await fake.close();
  }
});
