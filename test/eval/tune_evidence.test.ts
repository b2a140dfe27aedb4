import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WinnowError } from '../../src/core/errors.js';
import { formatTune, tuneCommand } from '../../src/cli/tune.js';
import { tuneReport } from '../../src/report/html.js';
import { defaultFolds, pairedBootstrap, queryFolds } from '../../src/eval/tune/evidence.js';
import { buildQueryPool, type Pools, type QueryPool, type TuneStage } from '../../src/eval/tune/pool.js';
import { seededRandom } from '../../src/eval/tune/random.js';
import { chooseOnSubset, cutsNothing, type PlanPoint } from '../../src/eval/tune/planner.js';
import { type TuneChoices, type TuneResult, tuneOnPools, widenCutoffs } from '../../src/eval/tune/tune.js';

const DEPTH = 30;

/** A normal deviate from a seeded uniform source (Box-Muller). */
function gauss(rnd: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(2 * Math.PI * rnd());
}

interface Synth {
  /** score of a document for the light and heavy stages, from its relevance, the heavy score and noise */
  light: (rel: number, heavy: number, rnd: () => number) => number;
  heavy: (rel: number, rnd: () => number) => number;
}

/**
 * Pools for n queries of DEPTH documents, 3 relevant each: a weak first pass, a cheap light
 * stage and a heavy stage the budget lets score only 10 documents per query.
 */
function synthPools(n: number, seed: number, synth: Synth, poison = false): Pools {
  const rnd = seededRandom(seed);
  const stages: TuneStage[] = [
    { name: 'bm25', role: 'retriever', scoreKind: 'unbounded', spec: { retrieve: 'bm25' }, cost: { perPairMs: 0, fixedMs: 0.1, medianQueryMs: 0.1 } },
    { name: 'light', role: 'reranker', scoreKind: 'unbounded', spec: { rerank: 'bm25', name: 'light' }, cost: { perPairMs: 0.01, fixedMs: 0, medianQueryMs: 0.3 } },
    { name: 'heavy', role: 'reranker', scoreKind: 'unbounded', spec: { rerank: 'bm25', name: 'heavy' }, cost: { perPairMs: 1, fixedMs: 0, medianQueryMs: 30 } },
  ];
  const queries: QueryPool[] = [];
  for (let qi = 0; qi < n; qi++) {
    const docIds = Array.from({ length: DEPTH }, (_, i) => `q${qi}d${i}`);
    const rel = docIds.map(() => 0);
    for (let r = 0; r < 3; r++) rel[Math.floor(rnd() * DEPTH)] = 1;
    const first = Float32Array.from(rel, (g) => 0.4 * g + gauss(rnd));
    const heavy = Float32Array.from(rel, (g) => synth.heavy(g, rnd));
    const light = Float32Array.from(rel, (g, i) => synth.light(g, heavy[i], rnd));
    // poisoned held-out judgements: relevant documents moved elsewhere
    const judged = new Map(docIds.map((id, i) => [id, poison ? rel[(i + 7) % DEPTH] : rel[i]]));
    if (![...judged.values()].some((g) => g > 0)) judged.set(docIds[0], 1);
    const pool = buildQueryPool(`q${qi}`, docIds, [first, light, heavy], judged, { retrieveMs: 0.1, pairMs: Float64Array.of(0.01, 1) });
    if (pool) queries.push(pool);
  }
  return { stages, queries, depth: DEPTH, skippedNoRelevant: 0 };
}

const CHOICES: TuneChoices = {
  spec: { name: 'synth', stages: [] },
  tune: { name: 'tune' },
  test: { name: 'test' },
  budgetMs: 12,
  budgetStat: 'p95',
  epsilon: 0.005,
  finalK: 10,
  fuse: 'linear',
  rrfK: 60,
  earlyExit: false,
  earlyExitLoss: 0.005,
  resamples: 1000,
  seed: 42,
};

// light is heavy plus a little noise: fusing them can only reshuffle near ties, by chance
const NOISE: Synth = { heavy: (g, rnd) => 1.2 * g + gauss(rnd), light: (_g, h, rnd) => h + 0.4 * gauss(rnd) };
// light and heavy see relevance through independent noise: their sum is better, by construction
const HELPS: Synth = { heavy: (g, rnd) => 1.2 * g + gauss(rnd), light: (g, _h, rnd) => 1.2 * g + gauss(rnd) };

function step(r: TuneResult, name: string) {
  const s = r.evidence.steps.find((x) => x.step === name);
  assert.ok(s, `no ${name} step in ${JSON.stringify(r.evidence.steps.map((x) => x.step))}`);
  return s;
}

test('folds and bootstrap: defaults for 30-2000 queries, deterministic folds and intervals', () => {
  assert.equal(defaultFolds(30), 5);
  assert.equal(defaultFolds(2000), 5);
  assert.equal(defaultFolds(18), 3);
  assert.equal(defaultFolds(11), 0);
  const a = queryFolds(23, 5, 1);
  assert.deepEqual(a, queryFolds(23, 5, 1));
  const sizes = [0, 1, 2, 3, 4].map((f) => a.filter((x) => x === f).length);
  assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, JSON.stringify(sizes));
  const diffs = Float64Array.from({ length: 200 }, (_, i) => (i % 2 ? 0.02 : 0.0));
  const i1 = pairedBootstrap(diffs, 1000, 0.95, 3);
  assert.deepEqual(i1, pairedBootstrap(diffs, 1000, 0.95, 3));
  assert.ok(i1.lo > 0 && i1.lo < 0.01 && i1.hi > 0.01 && i1.hi < 0.02, JSON.stringify(i1));
});

test('fusion that helps tuning queries by chance only is not adopted, and the output says why with the interval', async () => {
  const r = await tuneOnPools(synthPools(60, 1, NOISE), synthPools(60, 2, NOISE), CHOICES);
  const f = step(r, 'fusion');
  assert.ok(f.tuneGain > 0, `the fit must win on its own queries for this test to mean anything: ${f.tuneGain}`);
  assert.equal(f.adopted, false, JSON.stringify(f));
  assert.equal(r.fusion?.adopted, false);
  assert.ok(!r.final.plan.label.includes('linear'), r.final.plan.label);
  const text = formatTune(r);
  assert.match(text, /fusion: not adopted, the simpler plan is kept: .*95% interval \[[-+]\d\.\d{4}, [-+]\d\.\d{4}\]/);
  assert.equal(r.evidence.folds, 5);
  assert.equal(f.foldGains.length, 5);
});

test('fusion with a consistent gain is adopted', async () => {
  const r = await tuneOnPools(synthPools(60, 3, HELPS), synthPools(60, 4, HELPS), CHOICES);
  const f = step(r, 'fusion');
  assert.equal(f.adopted, true, JSON.stringify(f));
  assert.ok(f.cvGain >= 0.001 && f.interval.lo > 0, JSON.stringify(f));
  assert.ok(r.final.plan.label.includes('+linear'), r.final.plan.label);
  assert.ok(r.spec.stages.some((s) => typeof s === 'object' && s !== null && 'linear' in s));
  assert.match(formatTune(r), /fusion: adopted: cross-validated gain \+\d\.\d{4} >= 0.001, 95% interval .* excludes 0/);
  const html = await tuneReport(JSON.parse(JSON.stringify(r)));
  assert.match(html, /Optional steps: adopted only on evidence/);
  assert.match(html, /<td>fusion<\/td><td>[^<]*<\/td><td>[-+]\d\.\d{4}<\/td><td>[-+]\d\.\d{4}<\/td><td>\[[-+]\d\.\d{4}, [-+]\d\.\d{4}\]<\/td><td>[-+]\d\.\d{4}<\/td><td>yes<\/td>/);
  assert.match(html, /Cut-offs per cross-validation fold/);
  // the summary speaks of the adopted plan
  assert.match(formatTune(r), new RegExp(`summary: the adopted plan \\(${r.final.test.label.replace(/[()+.]/g, '\\$&')}\\)`));
});

test('--min-gain above the cross-validated gain keeps the simpler plan', async () => {
  const r = await tuneOnPools(synthPools(60, 3, HELPS), synthPools(60, 4, HELPS), { ...CHOICES, minGain: 0.5 });
  const f = step(r, 'fusion');
  assert.equal(f.adopted, false);
  assert.match(f.reason, /under --min-gain 0.5/);
});

test('the held-out split never changes a choice: poisoned held-out judgements give the same plan', async () => {
  const opts = { ...CHOICES, earlyExit: true, earlyExitLoss: 0.05 };
  const clean = await tuneOnPools(synthPools(60, 3, HELPS), synthPools(60, 4, HELPS), opts);
  const poisoned = await tuneOnPools(synthPools(60, 3, HELPS), synthPools(60, 4, HELPS, true), opts);
  assert.notEqual(clean.final.test['nDCG@10'], poisoned.final.test['nDCG@10']);
  assert.equal(poisoned.final.plan.label, clean.final.plan.label);
  assert.deepEqual(poisoned.spec, clean.spec);
  assert.deepEqual(poisoned.cutoffs, clean.cutoffs);
  const choices = (r: TuneResult) => r.evidence.steps.map((s) => ({ step: s.step, adopted: s.adopted, cv: s.cvGain, interval: s.interval, tune: s.tuneGain }));
  assert.deepEqual(choices(poisoned), choices(clean));
  assert.notDeepEqual(poisoned.evidence.steps.map((s) => s.testGain), clean.evidence.steps.map((s) => s.testGain));
});

test('cut-offs are chosen per fold and reported with their spread', async () => {
  const r = await tuneOnPools(synthPools(60, 3, HELPS), synthPools(60, 4, HELPS), { ...CHOICES, fuse: undefined, folds: 3 });
  assert.equal(r.evidence.folds, 3);
  assert.equal(r.cutoffs.length, 2);
  for (const c of r.cutoffs) {
    assert.equal(c.plateau.folds.length, 3);
    assert.ok(c.budget.folds.length >= 1);
  }
  assert.equal(r.cutoffs[0].budget.k, r.chosen.tune.steps[0].k);
  const text = formatTune(r);
  assert.match(text, /cut-offs per cross-validation fold \(3 folds/);
  assert.match(text, /bm25\s+\|?\s*\d+/);
});

test('--folds, --min-gain and --level: bad values are refused with a clear message', async () => {
  const pools = synthPools(20, 5, HELPS);
  await assert.rejects(tuneOnPools(pools, pools, { ...CHOICES, folds: 15 }), (e: unknown) => e instanceof WinnowError && /--folds 15 needs at least 2 tuning queries per fold; the tuning split has 20/.test(e.message));
  await assert.rejects(tuneOnPools(pools, pools, { ...CHOICES, folds: 1 }), /--folds must be an integer >= 2/);
  const base = ['--dataset', 'nowhere', '--spec', 'nowhere.yaml', '--budget-ms', '10'];
  await assert.rejects(tuneCommand([...base, '--folds', '1']), /--folds must be an integer >= 2, got "1"/);
  await assert.rejects(tuneCommand([...base, '--folds', 'five']), /--folds must be an integer >= 2, got "five"/);
  await assert.rejects(tuneCommand([...base, '--min-gain=-0.01']), /--min-gain must be an nDCG@10 difference in \[0, 1\), got -0.01/);
  await assert.rejects(tuneCommand([...base, '--min-gain', '1.5']), /--min-gain must be an nDCG@10 difference in \[0, 1\), got 1.5/);
  await assert.rejects(tuneCommand([...base, '--min-gain', 'x']), /--min-gain must be a number/);
  await assert.rejects(tuneCommand([...base, '--level', '95']), /--level must be in \(0, 1\), e.g. 0.95, got 95/);
});

test('too few tuning queries for cross-validation: no optional step is adopted, and the output says so', async () => {
  const r = await tuneOnPools(synthPools(10, 3, HELPS), synthPools(20, 4, HELPS), CHOICES);
  assert.equal(r.evidence.folds, 0);
  const f = step(r, 'fusion');
  assert.equal(f.adopted, false);
  assert.match(f.reason, /too few tuning queries \(10\) for cross-validation/);
});

/** A budget-plan point with the numbers `widenCutoffs` reads: its cut-offs and its latency. */
function point(ks: number[], p95: number): PlanPoint {
  const plan = { steps: ks.map((k, stage) => ({ stage, k })) };
  const e = { queries: 1, 'nDCG@10': 0.5, 'R@10': 0.5, perQueryNdcg: Float64Array.of(0.5), perQueryMs: Float64Array.of(p95), perQueryPairs: [], pairs: [], costs: {}, latencyMs: { p50: p95, p95, mean: p95 }, skipped: 0 };
  return { label: ks.join(' → '), plan, eval: e, pareto: false, withinBudget: true };
}

test('folds that disagree by more than 2x on a cut-off raise it to the largest fold choice still within the budget', () => {
  // cost grows with the first cut-off: 50 → 50 ms, 100 → 100 ms, 200 → 200 ms
  const grid = [20, 50, 100, 200].map((k) => point([k, 10], k));
  const at = (k: number) => grid.find((p) => p.plan.steps[0].k === k) as PlanPoint;
  // folds chose 20, 50 and 200 (10x apart): with a 250 ms budget the largest, 200, is taken
  assert.equal(widenCutoffs(at(50), [at(20), at(50), at(200)], grid, 250, 'p95'), at(200));
  // 200 is over a 150 ms budget: the next fold choice down that fits (none above 50 but 50) keeps 50
  assert.equal(widenCutoffs(at(50), [at(20), at(50), at(200)], grid, 150, 'p95'), at(50));
  // a fold choice of 100 fits the 150 ms budget and is taken
  assert.equal(widenCutoffs(at(50), [at(20), at(100), at(200)], grid, 150, 'p95'), at(100));
  // folds within 2x of each other (50 and 100): the full-split choice stands
  assert.equal(widenCutoffs(at(50), [at(50), at(100), at(100)], grid, 250, 'p95'), at(50));
  // never lowered: folds far below the choice leave it as it is
  assert.equal(widenCutoffs(at(200), [at(20), at(50)], grid, 250, 'p95'), at(200));
});

/** A plan point with per-query nDCG@10 and last-stage pairs, for the budget choice. */
function scored(label: string, ndcg: number[], heavyPairs: number, ms: number): PlanPoint {
  const n = ndcg.length;
  const e = {
    queries: n,
    'nDCG@10': ndcg.reduce((a, b) => a + b, 0) / n,
    'R@10': 0,
    perQueryNdcg: Float64Array.from(ndcg),
    perQueryMs: new Float64Array(n).fill(ms),
    perQueryPairs: [new Float64Array(n), new Float64Array(n).fill(heavyPairs)],
    pairs: [0, heavyPairs],
    costs: {},
    latencyMs: { p50: ms, p95: ms, mean: ms },
    skipped: 0,
  };
  return { label, plan: { steps: [{ stage: 0, k: heavyPairs }, { stage: 1, k: 10 }] }, eval: e, pareto: false, withinBudget: true };
}

test('the budget choice: of the plans as good as the best on the tuning queries, the one giving the last stage the most candidates', () => {
  const rnd = seededRandom(9);
  const n = 40;
  const idx = Array.from({ length: n }, (_, i) => i);
  const base = idx.map(() => 0.3 + 0.4 * rnd());
  const select = { minGain: 0.001, level: 0.95, resamples: 1000, seed: 42 };
  // the shallow plan wins on these queries by noise: +-0.1 per query, +0.01 on average
  const shallow = scored('bm25 20 → heavy 10', base.map((b, i) => b + (i % 2 ? 0.11 : -0.09)), 20, 20);
  const deep = scored('bm25 100 → heavy 10', base, 100, 100);
  assert.ok(shallow.eval['nDCG@10'] > deep.eval['nDCG@10']);
  assert.equal(chooseOnSubset([shallow, deep], idx, 200, 'p95', select), deep);
  // over the budget, the deep plan is no candidate
  assert.equal(chooseOnSubset([shallow, deep], idx, 50, 'p95', select), shallow);
  // consistently worse on every query (by 0.01): the shallow plan's win is real and it is kept
  const worse = scored('bm25 100 → heavy 10', base.map((b) => b - 0.01), 100, 100);
  const better = scored('bm25 20 → heavy 10', base, 20, 20);
  assert.equal(chooseOnSubset([better, worse], idx, 200, 'p95', select), better);
  // with a tolerance above that loss, the deep plan counts as good as the best again
  assert.equal(chooseOnSubset([better, worse], idx, 200, 'p95', { ...select, minGain: 0.02 }), worse);
});

test('the budget choice: a middle stage that cuts nothing is no candidate, the plan without it is', () => {
  const n = 30;
  const idx = Array.from({ length: n }, (_, i) => i);
  const select = { minGain: 0.001, level: 0.95, resamples: 500, seed: 42 };
  const ndcg = idx.map((i) => 0.4 + (i % 7) / 20);
  // bm25 200 → light 200 → heavy 10: the heavy stage sees the same 200 candidates as without
  // light, so the same quality, and light's 200 pairs are pure cost; yet it has the most
  // pairs for "the stage before the last", which the tie-break would reward
  const noop = scored('bm25 200 → light 200 → heavy 10', ndcg, 200, 150);
  noop.plan = { steps: [{ stage: 0, k: 200 }, { stage: 1, k: 200 }, { stage: 2, k: 10 }] };
  noop.eval.perQueryPairs = [new Float64Array(n), new Float64Array(n).fill(200), new Float64Array(n).fill(200)];
  const direct = scored('bm25 200 → heavy 10', ndcg, 200, 100);
  direct.plan = { steps: [{ stage: 0, k: 200 }, { stage: 2, k: 10 }] };
  direct.eval.perQueryPairs = [new Float64Array(n), new Float64Array(n), new Float64Array(n).fill(200)];
  assert.equal(cutsNothing(noop.plan), true);
  assert.equal(cutsNothing(direct.plan), false);
  assert.equal(chooseOnSubset([noop, direct], idx, 200, 'p95', select), direct);
  // a light stage that does cut (300 → 200) stays a candidate and, as good, is preferred: it draws
  // the heavy stage's 200 from a deeper pool
  const cut = scored('bm25 300 → light 200 → heavy 10', ndcg, 200, 180);
  cut.plan = { steps: [{ stage: 0, k: 300 }, { stage: 1, k: 200 }, { stage: 2, k: 10 }] };
  cut.eval.perQueryPairs = [new Float64Array(n), new Float64Array(n).fill(300), new Float64Array(n).fill(200)];
  assert.equal(chooseOnSubset([noop, direct, cut], idx, 200, 'p95', select), cut);
});

test('--budget-share: the budget is that share of the heavy stage over the whole pool, costed in the same run', async () => {
  const pools = synthPools(30, 3, HELPS);
  const r = await tuneOnPools(pools, synthPools(30, 4, HELPS), { ...CHOICES, fuse: undefined, budgetMs: 0, budgetShare: 0.5 });
  // heavy over the whole pool: 0.1 ms retrieval + 30 pairs x 1 ms, for every query
  assert.ok(Math.abs(r.budget.ms - 0.5 * 30.1) < 1e-9, String(r.budget.ms));
  assert.equal(r.budget.share, 0.5);
  assert.ok(r.budget.met && r.chosen.tune.latencyMs.p95 <= r.budget.ms);
  assert.match(r.budget.message, /0\.5 x the heavy stage over the whole pool/);
  await assert.rejects(tuneCommand(['--dataset', 'x', '--spec', 'y', '--budget-share', '0']), /--budget-share must be a positive share/);
});
