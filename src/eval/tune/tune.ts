import { type Calibration, describeCalibration } from '../../cascade/calibration.js';
import type { WinnowEnv } from '../../cascade/env.js';
import type { CascadeSpec } from '../../cascade/spec.js';
import { WinnowError } from '../../core/errors.js';
import type { DocLookup, Query } from '../../core/types.js';
import type { Qrels } from '../metrics.js';
import {
  applyCalibration,
  type CalibrationMethod,
  type CalibrationQuality,
  calibrationQuality,
  fitCalibration,
  rawProbability,
} from './calibrate.js';
import { type StageCurve, recallCurves } from './curves.js';
import { type EarlyExitChoice, tuneEarlyExit } from './early-exit.js';
import { type FusionMethodName, fitFusion } from './fusion.js';
import { type BudgetStat, planForBudget } from './planner.js';
import { type DocEmbeddingCounts, type Pools, type StageCost, scorePools } from './pool.js';
import { type Plan, type PlanEval, evaluatePlan, planLabel, replayPlan } from './simulate.js';

export interface TuneOptions {
  spec: CascadeSpec;
  specFile?: string;
  env: WinnowEnv;
  docs: DocLookup;
  tune: { queries: readonly Query[]; qrels: Qrels; name: string };
  test: { queries: readonly Query[]; qrels: Qrels; name: string };
  budgetMs: number;
  budgetStat: BudgetStat;
  epsilon: number;
  finalK: number;
  calibrate?: CalibrationMethod;
  fuse?: FusionMethodName;
  rrfK: number;
  earlyExit: boolean;
  /** relative nDCG@10 loss the early exit may cost on the tuning split */
  earlyExitLoss: number;
  resamples: number;
  seed: number;
  progress?: boolean;
  /**
   * environment to load fresh, cache-less scorers from, to measure the cold cost of stages
   * with a document-side cache (see `scorePools`); without it they are costed from the
   * scoring pass, which with warm embeddings makes them look nearly free
   */
  coldEnv?: WinnowEnv;
  coldSample?: { queries?: number; smallDocs?: number; largeDocs?: number };
  /** how the splits were made, said in the report */
  splitNote?: string;
}

/** A plan's numbers as JSON carries them (no per-query arrays). */
export interface PlanSummary {
  label: string;
  steps: { stage: string; k: number }[];
  'nDCG@10': number;
  'R@10': number;
  /** mean pairs scored per query, by stage name */
  pairs: Record<string, number>;
  latencyMs: { p50: number; p95: number; mean: number };
  skipped?: number;
}

export interface ConfigPoint {
  label: string;
  tune: PlanSummary;
  test: PlanSummary;
  pareto: boolean;
  withinBudget: boolean;
}

export interface StageCalibration {
  stage: string;
  scoreKind: string;
  method: string;
  calibration: Record<string, unknown>;
  note?: string;
  /** held-out pairs; `before` is absent for scores that are no probability (unbounded) */
  before?: CalibrationQuality;
  after: CalibrationQuality;
}

export interface TuneResult {
  kind: 'winnow-tune';
  version: 1;
  specFile?: string;
  splits: { tune: string; test: string; tuneQueries: number; testQueries: number; note?: string; skippedNoRelevant: number };
  depth: number;
  finalK: number;
  stages: { name: string; role: string; scoreKind: string; cost: StageCost; docEmbeddings?: DocEmbeddingCounts }[];
  curves: StageCurve[];
  plateauPlan: { tune: PlanSummary; test: PlanSummary };
  budget: { ms: number; stat: BudgetStat; met: boolean; message: string };
  configs: ConfigPoint[];
  chosen: { tune: PlanSummary; test: PlanSummary };
  baselines: { heavyFullPool: PlanSummary; lightAlone?: PlanSummary; firstPassAlone: PlanSummary };
  calibration?: StageCalibration[];
  fusion?: { method: string; params: Record<string, unknown>; tune: { fused: number; lastStage: number }; test: { fused: number; lastStage: number }; beatsLastStageOnTest: boolean; adopted: boolean; note?: string };
  earlyExit?: Omit<EarlyExitChoice, 'rule'> & { margin?: number; k: number; calibration: Record<string, unknown>; test?: PlanSummary; note?: string };
  final: { plan: PlanSummary; test: PlanSummary };
  summary: {
    /** final plan nDCG@10 over the heavy stage run on the whole first-pass pool, held-out */
    qualityRetained: number;
    /** share of the heavy stage's pairs (vs. the whole pool) the final plan does not score */
    heavyPairsAvoided: number;
  };
  spec: CascadeSpec;
  epsilon: number;
  resamples: number;
  seed: number;
}

function summarize(pools: Pools, plan: Plan, e: PlanEval, finalK: number): PlanSummary {
  const pairs: Record<string, number> = {};
  pools.stages.forEach((s, i) => {
    if (s.role === 'reranker') pairs[s.name] = e.pairs[i];
  });
  const out: PlanSummary = {
    label: planLabel(pools, plan, finalK),
    steps: plan.steps.map((s, j) => ({ stage: pools.stages[s.stage].name, k: j === plan.steps.length - 1 ? finalK : s.k })),
    'nDCG@10': e['nDCG@10'],
    'R@10': e['R@10'],
    pairs,
    latencyMs: e.latencyMs,
  };
  if (plan.earlyExit) out.skipped = e.skipped;
  return out;
}

/** (score, label) of every pair a stage scores under a plan: its input candidates. */
async function stagePairs(pools: Pools, plan: Plan, step: number, finalK: number): Promise<{ scores: Float64Array; labels: Uint8Array }> {
  const scores: number[] = [];
  const labels: number[] = [];
  const stage = plan.steps[step].stage;
  // the retriever scores what it keeps; a later stage, what the steps before it keep
  const upTo = step === 0 ? (plan.steps.length === 1 ? undefined : 1) : step;
  const { rankings } = await replayPlan(pools, plan, finalK, pools.queries, upTo);
  pools.queries.forEach((q, i) => {
    for (const h of rankings[i].hits) {
      const d = q.index.get(h.docId) as number;
      scores.push(q.scores[stage][d]);
      labels.push(q.gain[d] >= 1 ? 1 : 0);
    }
  });
  return { scores: Float64Array.from(scores), labels: Uint8Array.from(labels) };
}

/**
 * The whole tuning run: one scoring pass per split, recall curves with plateau cut-offs,
 * the budget plan, then optional calibration, fusion and early exit, each fitted on the
 * tuning split and reported on the held-out split, and the resulting spec.
 */
export async function runTune(o: TuneOptions): Promise<TuneResult> {
  if (!(o.budgetMs > 0)) throw new WinnowError('usage', `the latency budget must be a positive number of ms, got ${o.budgetMs}`);
  const tunePools = await scorePools({
    spec: o.spec,
    env: o.env,
    docs: o.docs,
    queries: o.tune.queries,
    qrels: o.tune.qrels,
    where: o.specFile,
    progress: o.progress,
    coldEnv: o.coldEnv,
    coldSample: o.coldSample,
  });
  const testPools = await scorePools({
    spec: o.spec,
    env: o.env,
    docs: o.docs,
    queries: o.test.queries,
    qrels: o.test.qrels,
    where: o.specFile,
    progress: o.progress,
    costs: tunePools.stages.map((s) => s.cost),
  });
  const { finalK } = o;
  const both = async (plan: Plan) => ({
    tune: summarize(tunePools, plan, await evaluatePlan(tunePools, plan, finalK), finalK),
    test: summarize(testPools, plan, await evaluatePlan(testPools, plan, finalK), finalK),
  });

  const { curves, plan: plateau } = await recallCurves(tunePools, { epsilon: o.epsilon, finalK, resamples: o.resamples, seed: o.seed });
  const choice = await planForBudget(tunePools, finalK, o.budgetMs, o.budgetStat);
  const configs: ConfigPoint[] = [];
  for (const p of choice.points) {
    configs.push({
      label: p.label,
      tune: summarize(tunePools, p.plan, p.eval, finalK),
      test: summarize(testPools, p.plan, await evaluatePlan(testPools, p.plan, finalK), finalK),
      pareto: p.pareto,
      withinBudget: p.withinBudget,
    });
  }
  const chosenStat = choice.best.eval.latencyMs[o.budgetStat];
  const budgetMessage = choice.met
    ? `plan meets the budget: predicted ${o.budgetStat} ${chosenStat.toFixed(2)} ms <= ${o.budgetMs} ms`
    : `no plan meets ${o.budgetStat} <= ${o.budgetMs} ms; the cheapest plan (${choice.best.label}) takes ${chosenStat.toFixed(2)} ms`;

  const nStages = tunePools.stages.length;
  const depth = tunePools.depth;
  const heavy = nStages - 1;
  const baselines: TuneResult['baselines'] = {
    heavyFullPool: (await both({ steps: [{ stage: 0, k: depth }, { stage: heavy, k: finalK }] })).test,
    firstPassAlone: (await both({ steps: [{ stage: 0, k: finalK }] })).test,
  };
  if (nStages > 2) baselines.lightAlone = (await both({ steps: [{ stage: 0, k: depth }, { stage: 1, k: finalK }] })).test;

  let plan: Plan = choice.best.plan;
  const result: Partial<TuneResult> = {};

  // Calibration per stage of the chosen plan, fitted on tuning pairs, judged on held-out pairs.
  const calibrations = new Map<number, Calibration>();
  if (o.calibrate) {
    result.calibration = [];
    for (let j = 0; j < plan.steps.length; j++) {
      const step = plan.steps[j];
      const st = tunePools.stages[step.stage];
      const fitData = await stagePairs(tunePools, plan, j, finalK);
      const fit = fitCalibration(o.calibrate as CalibrationMethod, st.scoreKind, fitData.scores, fitData.labels, `stage "${st.name}"`);
      calibrations.set(step.stage, fit.calibration);
      const held = await stagePairs(testPools, plan, j, finalK);
      const raw = rawProbability(st.scoreKind);
      const entry: StageCalibration = {
        stage: st.name,
        scoreKind: st.scoreKind,
        method: fit.calibration.kind,
        calibration: describeCalibration(fit.calibration),
        after: calibrationQuality(applyCalibration(fit.calibration, held.scores), held.labels),
      };
      if (fit.note) entry.note = fit.note;
      if (raw) entry.before = calibrationQuality(Float64Array.from(held.scores, raw), held.labels);
      result.calibration.push(entry);
    }
  }

  if (o.fuse) {
    const fusion = await fitFusion(tunePools, plan, o.fuse, finalK, o.rrfK);
    if (!fusion) {
      result.fusion = {
        method: o.fuse,
        params: {},
        tune: { fused: NaN, lastStage: NaN },
        test: { fused: NaN, lastStage: NaN },
        beatsLastStageOnTest: false,
        adopted: false,
        note: 'the chosen plan runs fewer than two rerankers: nothing to fuse',
      };
    } else {
      const fused: Plan = { ...plan, fusion };
      const tuneFused = (await evaluatePlan(tunePools, fused, finalK))['nDCG@10'];
      const tuneLast = (await evaluatePlan(tunePools, plan, finalK))['nDCG@10'];
      const testFused = (await evaluatePlan(testPools, fused, finalK))['nDCG@10'];
      const testLast = (await evaluatePlan(testPools, plan, finalK))['nDCG@10'];
      // Adopted on tuning evidence only; the held-out comparison is reported, not used to choose.
      const adopted = tuneFused > tuneLast;
      result.fusion = {
        method: fusion.kind,
        params: fusion.kind === 'rrf' ? { k: fusion.k } : { weights: fusion.weights, normalize: 'minmax' },
        tune: { fused: tuneFused, lastStage: tuneLast },
        test: { fused: testFused, lastStage: testLast },
        beatsLastStageOnTest: testFused > testLast,
        adopted,
      };
      if (adopted) plan = fused;
    }
  }

  if (o.earlyExit) {
    if (plan.steps.length < 2) {
      result.earlyExit = {
        skipped: 0,
        ndcgFull: NaN,
        ndcgWithExit: NaN,
        maxLoss: o.earlyExitLoss,
        curve: [],
        k: 1,
        calibration: { identity: true },
        note: 'the chosen plan has a single stage: nothing to skip',
      };
    } else {
      const j = plan.steps.length - 2;
      const light = tunePools.stages[plan.steps[j].stage];
      let cal = calibrations.get(plan.steps[j].stage);
      if (!cal) {
        const data = await stagePairs(tunePools, plan, j, finalK);
        cal = fitCalibration('platt', light.scoreKind, data.scores, data.labels, `stage "${light.name}" (for the early-exit margin)`).calibration;
      }
      const ee = await tuneEarlyExit(tunePools, plan, cal, 1, o.earlyExitLoss, finalK);
      const { rule, ...rest } = ee;
      result.earlyExit = { ...rest, margin: rule?.margin, k: 1, calibration: describeCalibration(cal) };
      if (rule) {
        plan = { ...plan, earlyExit: rule };
        result.earlyExit.test = (await both(plan)).test;
      } else {
        result.earlyExit.note = `no margin skips any query within ${(100 * o.earlyExitLoss).toFixed(2)}% nDCG@10 loss on the tuning split`;
      }
    }
  }

  const final = await both(plan);
  const heavyFull = baselines.heavyFullPool;
  const heavyName = tunePools.stages[heavy].name;
  return {
    kind: 'winnow-tune',
    version: 1,
    specFile: o.specFile,
    splits: {
      tune: o.tune.name,
      test: o.test.name,
      tuneQueries: tunePools.queries.length,
      testQueries: testPools.queries.length,
      note: o.splitNote,
      skippedNoRelevant: tunePools.skippedNoRelevant + testPools.skippedNoRelevant,
    },
    depth,
    finalK,
    stages: tunePools.stages.map((s, i) => {
      const out: TuneResult['stages'][number] = { name: s.name, role: s.role, scoreKind: s.scoreKind, cost: s.cost };
      const a = s.docEmbeddings;
      const b = testPools.stages[i].docEmbeddings;
      if (a && b) out.docEmbeddings = { fromCache: a.fromCache + b.fromCache, embedded: a.embedded + b.embedded };
      return out;
    }),
    curves,
    plateauPlan: await both(plateau),
    budget: { ms: o.budgetMs, stat: o.budgetStat, met: choice.met, message: budgetMessage },
    configs,
    chosen: await both(choice.best.plan),
    baselines,
    ...result,
    final: { plan: final.tune, test: final.test },
    summary: {
      qualityRetained: heavyFull['nDCG@10'] > 0 ? final.test['nDCG@10'] / heavyFull['nDCG@10'] : NaN,
      heavyPairsAvoided: heavyFull.pairs[heavyName] > 0 ? 1 - (final.test.pairs[heavyName] ?? 0) / heavyFull.pairs[heavyName] : NaN,
    },
    spec: planToSpec(tunePools, plan, finalK, o.spec.name, calibrations),
    epsilon: o.epsilon,
    resamples: o.resamples,
    seed: o.seed,
  };
}

/**
 * Writes a plan as a cascade spec `winnow eval --spec` and `winnow serve` run: the original
 * stage entries with the chosen cut-offs, fusion as a `linear`/`rrf` stage over the
 * rerankers, the early exit as an `earlyExit` stage around the last stage. Fitted
 * calibrations are recorded under `calibration` by stage name, for thresholds to use.
 */
export function planToSpec(pools: Pools, plan: Plan, finalK: number, name: string | undefined, calibrations: Map<number, Calibration>): CascadeSpec {
  const entry = (s: number) => ({ ...pools.stages[s].spec });
  const stages: unknown[] = [];
  const first = plan.steps[0];
  stages.push({ ...entry(first.stage), k: plan.steps.length === 1 ? finalK : first.k });
  for (let j = 1; j < plan.steps.length - 1; j++) {
    stages.push(entry(plan.steps[j].stage), { top: plan.steps[j].k });
  }
  if (plan.steps.length > 1) {
    const last = plan.steps[plan.steps.length - 1];
    let lastStage: unknown = entry(last.stage);
    if (plan.fusion) {
      const of = plan.steps.slice(1).map((s) => [entry(s.stage)]);
      lastStage =
        plan.fusion.kind === 'rrf'
          ? { rrf: { name: 'fused', k: plan.fusion.k, of } }
          : { linear: { name: 'fused', weights: plan.fusion.weights, normalize: 'minmax', of } };
    }
    if (plan.earlyExit) {
      const ee: Record<string, unknown> = { margin: plan.earlyExit.margin, k: plan.earlyExit.k };
      if (plan.earlyExit.calibration) ee.calibration = describeCalibration(plan.earlyExit.calibration);
      ee.then = [lastStage];
      lastStage = { earlyExit: ee };
    }
    stages.push(lastStage, { top: finalK });
  }
  const spec: CascadeSpec & { calibration?: Record<string, unknown> } = { name: `${name ?? 'cascade'}-tuned`, stages };
  if (calibrations.size > 0) {
    spec.calibration = Object.fromEntries([...calibrations].map(([s, c]) => [pools.stages[s].name, describeCalibration(c)]));
  }
  return spec;
}
