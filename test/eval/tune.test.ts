import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { calibrate, parseCalibration } from '../../src/cascade/calibration.js';
import { EarlyExit } from '../../src/cascade/early-exit.js';
import { compileSpec, loadSpecFile } from '../../src/cascade/spec.js';
import { tunedSpecYaml } from '../../src/cli/tune.js';
import { WinnowError } from '../../src/core/errors.js';
import { runExperiment } from '../../src/eval/experiment.js';
import { calibrationQuality, fitCalibration, fitIsotonic, fitPlatt } from '../../src/eval/tune/calibrate.js';
import { logGrid, plateauIndex } from '../../src/eval/tune/curves.js';
import { markPareto } from '../../src/eval/tune/planner.js';
import { scorePools } from '../../src/eval/tune/pool.js';
import { seededRandom } from '../../src/eval/tune/random.js';
import { evaluatePlan, type Plan } from '../../src/eval/tune/simulate.js';
import { planToSpec } from '../../src/eval/tune/tune.js';
import { registry } from '../../src/core/registry.js';
import { cranfieldFixture, SPEC, tuneFixture } from './tune_fixture.js';

test('log grid is nice numbers from min to max, ending at max', () => {
  assert.deepEqual(logGrid(5, 1000), [5, 8, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000]);
  assert.deepEqual(logGrid(5, 120), [5, 8, 10, 15, 20, 30, 50, 75, 100, 120]);
});

test('plateau is the smallest k within epsilon of the best recall', () => {
  assert.equal(plateauIndex([0.5, 0.8, 0.896, 0.9, 0.9], 0.005), 2);
  assert.equal(plateauIndex([0.5, 0.8, 0.89, 0.9, 0.9], 0.005), 3);
  assert.equal(plateauIndex([0.5, 0.8, 0.89, 0.9], 0), 3);
});

test('Pareto frontier keeps points no other point beats on both axes', () => {
  const pts = [
    { quality: 0.3, latency: 1 },
    { quality: 0.35, latency: 5 },
    { quality: 0.34, latency: 6 },
    { quality: 0.4, latency: 20 },
    { quality: 0.4, latency: 30 },
  ];
  assert.deepEqual(markPareto(pts), [true, true, false, true, false]);
});

test('Platt scaling recovers a known logistic model', () => {
  const rnd = seededRandom(1);
  const scores: number[] = [];
  const labels: number[] = [];
  for (let i = 0; i < 20000; i++) {
    const s = rnd() * 10 - 5;
    scores.push(s);
    labels.push(rnd() < 1 / (1 + Math.exp(-(1.5 * s - 2))) ? 1 : 0);
  }
  const { a, b } = fitPlatt(scores, labels);
  assert.ok(Math.abs(a - 1.5) < 0.1, `a = ${a}`);
  assert.ok(Math.abs(b + 2) < 0.1, `b = ${b}`);
});

test('Platt target smoothing keeps a separable set finite', () => {
  const scores = Array.from({ length: 60 }, (_, i) => i);
  const labels = scores.map((s) => (s >= 30 ? 1 : 0));
  const { a, b } = fitPlatt(scores, labels);
  assert.ok(Number.isFinite(a) && Number.isFinite(b) && a > 0);
  // the smoothed targets cap the top probability at (N+ + 1)/(N+ + 2)
  assert.ok(calibrate({ kind: 'platt', a, b }, 59) < 1 - 1e-6);
});

test('isotonic regression pools adjacent violators into a non-decreasing step function', () => {
  const fit = fitIsotonic([1, 2, 3, 4, 5, 6], [0, 1, 0, 0, 1, 1]);
  assert.deepEqual(fit.x, [1, 2, 5]);
  assert.deepEqual(fit.y, [0, 1 / 3, 1]);
  const c = parseCalibration({ isotonic: fit }, 'test');
  assert.equal(calibrate(c, 0), 0);
  assert.equal(calibrate(c, 3.5), 1 / 3);
  assert.equal(calibrate(c, 9), 1);
  assert.throws(() => parseCalibration({ isotonic: { x: [2, 1], y: [0, 1] } }, 'spec'), /must increase strictly/);
});

test('ECE over 10 equal-width bins and Brier score', () => {
  const q = calibrationQuality([0.05, 0.05, 0.95, 0.95], [0, 1, 1, 1]);
  // bin 0: predicted 0.05, observed 0.5; bin 9: predicted 0.95, observed 1
  assert.ok(Math.abs(q.ece - (0.5 * 0.45 + 0.5 * 0.05)) < 1e-12);
  assert.ok(Math.abs(q.brier - (0.05 ** 2 + 0.95 ** 2 + 2 * 0.05 ** 2) / 4) < 1e-12);
  assert.equal(q.bins.length, 2);
});

test('calibration refuses too few labelled pairs and never sigmoids a probability', () => {
  assert.throws(
    () => fitCalibration('platt', 'logit', [1, 2, 3], [0, 1, 0], 'stage "x"'),
    (e: unknown) => e instanceof WinnowError && /3 pairs \(1 relevant, 2 not\).*at least 50 pairs with 5 relevant/.test(e.message),
  );
  const probs = Array.from({ length: 100 }, (_, i) => i / 100);
  const fit = fitCalibration('platt', 'probability', probs, probs.map((p) => (p > 0.5 ? 1 : 0)), 'api');
  assert.equal(fit.calibration.kind, 'identity');
  assert.match(fit.note ?? '', /not put through a sigmoid/);
  assert.equal(fitCalibration('isotonic', 'probability', probs, probs.map((p) => (p > 0.5 ? 1 : 0)), 'api').calibration.kind, 'isotonic');
});

test('a pool replays plans through the interpreter exactly as winnow eval runs the real stages', async () => {
  const f = await cranfieldFixture();
  const queries = f.tune.slice(0, 12);
  const pools = await scorePools({ spec: SPEC, env: f.env, docs: f.env.lookup, queries, qrels: f.qrels });
  const plans: Plan[] = [
    { steps: [{ stage: 0, k: 10 }] },
    { steps: [{ stage: 0, k: 30 }, { stage: 2, k: 10 }] },
    { steps: [{ stage: 0, k: 75 }, { stage: 1, k: 20 }, { stage: 2, k: 10 }] },
    { steps: [{ stage: 0, k: 75 }, { stage: 1, k: 20 }, { stage: 2, k: 10 }], fusion: { kind: 'linear', weights: [0.3, 0.7] } },
    { steps: [{ stage: 0, k: 50 }, { stage: 1, k: 15 }, { stage: 2, k: 10 }], fusion: { kind: 'rrf', k: 60 }, earlyExit: { margin: 1.5, k: 1 } },
  ];
  const judgedQueries = queries.filter((q) => pools.queries.some((p) => p.qid === q.id));
  for (const plan of plans) {
    const replayed = await evaluatePlan(pools, plan, 10);
    const pipeline = await compileSpec(planToSpec(pools, plan, 10, 'x'), f.env, 'plan');
    const exp = await runExperiment({ pipeline, queries: judgedQueries, qrels: f.qrels, docs: f.env.lookup, finalK: 10 });
    judgedQueries.forEach((q, i) => {
      assert.ok(Math.abs(replayed.perQueryNdcg[i] - exp.perQuery[q.id]['nDCG@10']) < 1e-12, `${JSON.stringify(plan)} query ${q.id}`);
    });
    // pairs: what the real cascade scored (its cache-less fusion re-scores the earlier reranker's input)
    const realPairs = exp.stages.reduce((a, s) => a + (s.costs.pairs ?? 0), 0) / judgedQueries.length;
    const replayPairs = replayed.pairs.reduce((a, b) => a + b, 0);
    if (!plan.fusion) assert.ok(Math.abs(realPairs - replayPairs) < 1e-9, `${realPairs} vs ${replayPairs}`);
  }
});

test('a pool holds any pointwise stage, not only rerank; a listwise one only as an LLM last tier', async () => {
  const f = await cranfieldFixture();
  registry.defineStage('titleLength', () => ({
    name: 'titleLength',
    kind: 'reranker',
    scoring: 'pointwise',
    scoreKind: 'unbounded',
    async run(batch, ctx) {
      const out = [];
      for (const r of batch) {
        const hits = [];
        for (const h of r.hits) {
          const d = h.doc ?? (await ctx.docs?.get(h.docId));
          const score = (d?.text.length ?? 0) % 37;
          hits.push({ ...h, score, scores: { ...h.scores, titleLength: score } });
        }
        out.push({ query: r.query, hits: hits.sort((a, b) => b.score - a.score || (a.docId > b.docId ? -1 : 1)) });
      }
      return out;
    },
    describe: () => ({ titleLength: {} }),
  }), 'test: a pointwise plugin stage');
  registry.defineStage('shuffleList', () => ({
    name: 'shuffleList', kind: 'reranker', scoring: 'listwise', scoreKind: 'unbounded',
    async run(batch) { return [...batch]; },
    describe: () => ({ shuffleList: {} }),
  }), 'test: a listwise plugin stage');
  const pools = await scorePools({ spec: { stages: [{ retrieve: 'bm25', k: 40 }, { titleLength: {} }] }, env: f.env, docs: f.env.lookup, queries: f.tune.slice(0, 4), qrels: f.qrels });
  assert.equal(pools.stages[1].name, 'titleLength');
  const q = pools.queries[0];
  const d = q.order[1][0];
  assert.equal(q.scores[1][d], (f.env.docs.get(q.docIds[d])?.text.length ?? 0) % 37);
  // a listwise stage can only be the last tier (run per list), and then only an LLM stage (costed per call)
  await assert.rejects(
    scorePools({ spec: { stages: [{ retrieve: 'bm25', k: 40 }, { shuffleList: {} }, { titleLength: {} }] }, env: f.env, docs: f.env.lookup, queries: f.tune.slice(0, 4), qrels: f.qrels }),
    /"shuffleList" is not a pointwise stage \(listwise\)/,
  );
  await assert.rejects(
    scorePools({ spec: { stages: [{ retrieve: 'bm25', k: 40 }, { shuffleList: {} }] }, env: f.env, docs: f.env.lookup, queries: f.tune.slice(0, 4), qrels: f.qrels }),
    /"shuffleList" is listwise but no LLM stage/,
  );
});

test('tune: the written spec reproduces the simulated plan in winnow eval (cut-offs, fusion, early exit)', async () => {
  const f = await cranfieldFixture();
  const r = await tuneFixture({ calibrate: 'platt', fuse: 'linear', earlyExit: true, earlyExitLoss: 0.02, budgetMs: 1000 });
  assert.equal(r.budget.met, true);
  assert.equal(r.curves.length, 2);
  for (const c of r.curves) {
    assert.ok(c.plateau.kLo <= c.plateau.k && c.plateau.k <= c.plateau.kHi + 1e-9, JSON.stringify(c.plateau));
    assert.ok(c.plateau.recall >= c.plateau.maxRecall - c.plateau.epsilon);
  }
  assert.ok(r.configs.length >= 40);
  assert.ok(r.configs.some((c) => c.pareto));
  assert.ok(r.calibration && r.calibration.length >= 2);
  for (const c of r.calibration) assert.ok(c.after.ece >= 0 && c.after.brier > 0 && c.after.brier < 1);
  // the file `winnow tune -o` writes is what `winnow eval --spec` reads: no key it refuses
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'winnow-tuned-')), 'tuned.yaml');
  writeFileSync(file, tunedSpecYaml(r));
  const written = loadSpecFile(file);
  assert.deepEqual(written.stages, r.spec.stages);
  // and the fitted calibrations, listed in its comments, are ones a threshold stage accepts
  const listed = readFileSync(file, 'utf8').split('\n').filter((l) => /^# {3}\S+: \{/.test(l));
  assert.equal(listed.length, r.calibration.length);
  for (const l of listed) parseCalibration(JSON.parse(l.slice(l.indexOf('{'))), 'comment');
  const pipeline = await compileSpec(written, f.env, 'tuned');
  const exp = await runExperiment({ pipeline, queries: f.test, qrels: f.qrels, docs: f.env.lookup, finalK: 10 });
  assert.ok(Math.abs(exp.final['nDCG@10'] - r.final.test['nDCG@10']) < 1e-9, `${exp.final['nDCG@10']} vs ${r.final.test['nDCG@10']}`);
  assert.equal(pipeline.compile().some((s) => s instanceof EarlyExit), r.earlyExit?.adopted === true);
});

test('tune: a budget no plan can meet reports the cheapest plan', async () => {
  const r = await tuneFixture({ budgetMs: 1e-6 });
  assert.equal(r.budget.met, false);
  assert.match(r.budget.message, /no plan meets p95 <= 0.000001 ms; the cheapest plan \(bm25 10\)/);
  const cheapest = Math.min(...r.configs.map((c) => c.tune.latencyMs.p95));
  assert.equal(r.chosen.tune.latencyMs.p95, cheapest);
});

test('tune: bad input is refused with a clear message', async () => {
  const f = await cranfieldFixture();
  const base = { env: f.env, docs: f.env.lookup, queries: f.tune };
  const noRel = new Map([[f.tune[0].id, new Map([['1', 0]])]]);
  await assert.rejects(
    scorePools({ ...base, spec: SPEC, queries: f.tune.slice(0, 1), qrels: noRel }),
    /none of the 1 queries has a judged relevant document/,
  );
  await assert.rejects(
    scorePools({ ...base, spec: { stages: [{ retrieve: 'bm25' }, { rerank: 'nosuch-model' }] }, qrels: f.qrels }),
    /stage 1 cannot run: .*unknown scorer "nosuch-model"/,
  );
  await assert.rejects(
    scorePools({ ...base, spec: { stages: [{ retrieve: 'bm25' }, { threshold: 0.5 }] }, qrels: f.qrels }),
    /winnow tune handles cascades of retrieve, rerank and top; found threshold/,
  );
  await assert.rejects(
    scorePools({ ...base, spec: { stages: [{ rerank: 'bm25' }] }, qrels: f.qrels }),
    /starts with a retriever/,
  );
});

