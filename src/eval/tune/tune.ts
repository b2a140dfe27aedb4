import { type Calibration, describeCalibration } from '../../cascade/calibration.js';
import type { WinnowEnv } from '../../cascade/env.js';
import type { CascadeSpec } from '../../cascade/spec.js';
import { costKind, PAIRS } from '../../core/costs.js';
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
import { type BudgetStat, chooseOnSubset, type PlanPoint, planForBudget, type SelectOptions } from './planner.js';
import {
  checkFolds,
  DEFAULT_LEVEL,
  DEFAULT_MIN_GAIN,
  defaultFolds,
  type EvidenceOptions,
  foldSplit,
  formatInterval,
  type Interval,
  judgeGain,
  pairedBootstrap,
  queryFolds,
  signed,
  spread,
  type StepEvidence,
} from './evidence.js';
import { type DocEmbeddingCounts, type Pools, type StageCost, scorePools } from './pool.js';
import { type FusionPlan, meanOf, type Plan, type PlanEval, evaluatePlan, planLabel, replayPlan } from './simulate.js';

/** What the choices need besides the pools. */
export interface TuneChoices {
  specFile?: string;
  spec: CascadeSpec;
  tune: { name: string };
  test: { name: string };
  /** latency budget per query in ms; ignored when `budgetShare` is given */
  budgetMs: number;
  /**
   * budget as a share of the heavy stage (the spec's last) over the whole pool, on the
   * tuning queries, with the costs measured in the same run: a budget that means the same
   * on a loaded or a quiet machine, since both sides of the ratio are measured under one load
   */
  budgetShare?: number;
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
  /** cross-validation folds over the tuning queries (default `defaultFolds`) */
  folds?: number;
  /** nDCG@10 a quality step must gain under cross-validation (default 0.001) */
  minGain?: number;
  /** level of the paired-bootstrap intervals (default 0.95) */
  level?: number;
  /** how the splits were made, said in the report */
  splitNote?: string;
}

export interface TuneOptions extends TuneChoices {
  env: WinnowEnv;
  docs: DocLookup;
  tune: { queries: readonly Query[]; qrels: Qrels; name: string };
  test: { queries: readonly Query[]; qrels: Qrels; name: string };
  progress?: boolean;
  /**
   * environment to load fresh, cache-less scorers from, to measure the cold cost of stages
   * with a document-side cache (see `scorePools`); without it they are costed from the
   * scoring pass, which with warm embeddings makes them look nearly free
   */
  coldEnv?: WinnowEnv;
  coldSample?: { queries?: number; smallDocs?: number; largeDocs?: number };
}

/** A plan's numbers as JSON carries them (no per-query arrays). */
export interface PlanSummary {
  label: string;
  steps: { stage: string; k: number }[];
  'nDCG@10': number;
  'R@10': number;
  /** mean pairs scored per query, by stage name (an LLM tier: documents it was shown) */
  pairs: Record<string, number>;
  /** mean work per query by cost name, when stages book more than pairs (LLM calls, tokens, money) */
  costs?: Record<string, number>;
  latencyMs: { p50: number; p95: number; mean: number };
  skipped?: number;
}

export interface CutoffSpread {
  stage: string;
  /** plateau cut-off on the whole tuning split and on each fold's training queries */
  plateau: { k?: number; folds: number[] };
  /** budget-plan cut-off (absent when the plan drops the stage) and per fold */
  budget: { k?: number; folds: number[]; widenedTo?: number };
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
  stages: {
    name: string;
    role: string;
    scoreKind: string;
    cost: StageCost;
    docEmbeddings?: DocEmbeddingCounts;
    scoring?: 'pointwise' | 'listwise';
    unitCosts?: Record<string, number>;
    /** LLM stages: calls made while tuning both splits, and repeats answered from memory */
    llmCalls?: { made: number; replayed: number };
  }[];
  curves: StageCurve[];
  plateauPlan: { tune: PlanSummary; test: PlanSummary };
  budget: { ms: number; stat: BudgetStat; met: boolean; message: string; share?: number };
  configs: ConfigPoint[];
  chosen: { tune: PlanSummary; test: PlanSummary };
  /** each stage's cut-off on the whole tuning split and per cross-validation fold */
  cutoffs: CutoffSpread[];
  evidence: { folds: number; minGain: number; level: number; resamples: number; seed: number; steps: StepEvidence[] };
  baselines: { heavyFullPool: PlanSummary; lightAlone?: PlanSummary; firstPassAlone: PlanSummary };
  calibration?: StageCalibration[];
  fusion?: { method: string; params: Record<string, unknown>; tune: { fused: number; lastStage: number }; test: { fused: number; lastStage: number }; beatsLastStageOnTest: boolean; adopted: boolean; note?: string };
  earlyExit?: Omit<EarlyExitChoice, 'rule'> & { margin?: number; k: number; calibration: Record<string, unknown>; adopted?: boolean; test?: PlanSummary; note?: string };
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

/**
 * Columns for the work plans book besides pairs (an LLM tier's calls, tokens, money), by the
 * cost names that occur, each headed by its declared label and reported per query.
 */
export function costColumns(plans: readonly PlanSummary[]): { headers: string[]; cells: (p: PlanSummary) => string[] } {
  const names = [...new Set(plans.flatMap((p) => Object.keys(p.costs ?? {})))].filter((n) => n !== PAIRS);
  const show = (name: string, x: number): string => {
    const unit = costKind(name).unit;
    if (unit === 'usd') return x === 0 ? '0' : x.toPrecision(3);
    return unit === 'calls' ? x.toFixed(1) : x.toFixed(0);
  };
  return {
    headers: names.map((n) => `${costKind(n).label}/q`),
    cells: (p) => names.map((n) => show(n, p.costs?.[n] ?? 0)),
  };
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
  if (Object.keys(e.costs).length > 0) out.costs = e.costs;
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
 * The whole tuning run: one scoring pass per split, then `tuneOnPools`.
 */
export async function runTune(o: TuneOptions): Promise<TuneResult> {
  if (o.budgetShare !== undefined ? !(o.budgetShare > 0) : !(o.budgetMs > 0)) {
    throw new WinnowError('usage', `the latency budget must be a positive number of ms or a positive share, got ${o.budgetShare ?? o.budgetMs}`);
  }
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
  return tuneOnPools(tunePools, testPools, o);
}

/** Pools restricted to some of their queries (a fold's): every fitting function takes pools. */
function subsetPools(pools: Pools, idx: readonly number[]): Pools {
  return { ...pools, queries: idx.map((i) => pools.queries[i]) };
}

/** Fold cut-offs disagree widely when the largest is more than twice the smallest. */
const WIDE_SPREAD = 2;

/**
 * Every choice, made on the tuning pools only; the held-out pools are only evaluated.
 * Recall curves give plateau cut-offs; the budget planner picks cut-offs (and may drop a
 * stage); each choice is also made per cross-validation fold, so its spread is reported and
 * an optional step (a dropped stage, fusion, early exit) is adopted only on evidence.
 */
export async function tuneOnPools(tunePools: Pools, testPools: Pools, o: TuneChoices): Promise<TuneResult> {
  const { finalK } = o;
  const nTune = tunePools.queries.length;
  const folds = o.folds ?? defaultFolds(nTune);
  if (o.folds !== undefined) checkFolds(o.folds, nTune);
  const ev: EvidenceOptions = { folds, minGain: o.minGain ?? DEFAULT_MIN_GAIN, level: o.level ?? DEFAULT_LEVEL, resamples: o.resamples, seed: o.seed };
  const assignment = folds > 0 ? queryFolds(nTune, folds, o.seed) : undefined;
  const foldSplits = assignment ? Array.from({ length: folds }, (_, f) => foldSplit(assignment, f)) : [];

  const both = async (plan: Plan) => ({
    tune: summarize(tunePools, plan, await evaluatePlan(tunePools, plan, finalK), finalK),
    test: summarize(testPools, plan, await evaluatePlan(testPools, plan, finalK), finalK),
  });
  const ndcgOn = async (pools: Pools, plan: Plan, qs = pools.queries) => (await evaluatePlan(pools, plan, finalK, qs)).perQueryNdcg;

  const heavyPlan: Plan = { steps: [{ stage: 0, k: tunePools.depth }, { stage: tunePools.stages.length - 1, k: finalK }] };
  const budgetMs = o.budgetShare !== undefined ? o.budgetShare * (await evaluatePlan(tunePools, heavyPlan, finalK)).latencyMs[o.budgetStat] : o.budgetMs;

  const curveOpts = { epsilon: o.epsilon, finalK, resamples: o.resamples, seed: o.seed };
  const { curves, plan: plateau } = await recallCurves(tunePools, curveOpts);
  const select: SelectOptions = { minGain: ev.minGain, level: ev.level, resamples: ev.resamples, seed: ev.seed };
  const choice = await planForBudget(tunePools, finalK, budgetMs, o.budgetStat, select);
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

  // Cut-offs per fold: the plateau and the budget choice made on each fold's training queries.
  const all = Array.from({ length: nTune }, (_, i) => i);
  const foldPlateaus: Plan[] = [];
  const foldBudget: (PlanPoint | undefined)[] = [];
  for (const { train } of foldSplits) {
    foldPlateaus.push((await recallCurves(subsetPools(tunePools, train), curveOpts)).plan);
    foldBudget.push(chooseOnSubset(choice.points, train, budgetMs, o.budgetStat, select));
  }
  let best = choice.best;
  const cutoffs: CutoffSpread[] = [];
  for (let s = 0; s < tunePools.stages.length - 1; s++) {
    const name = tunePools.stages[s].name;
    const plateauKs = foldPlateaus.map((p) => p.steps.find((x) => x.stage === s)?.k).filter((k): k is number => k !== undefined);
    const budgetKs = foldBudget.map((p) => p?.plan.steps.slice(0, -1).find((x) => x.stage === s)?.k).filter((k): k is number => k !== undefined);
    const entry: CutoffSpread = {
      stage: name,
      plateau: { k: plateau.steps.find((x) => x.stage === s)?.k, folds: plateauKs },
      budget: { k: best.plan.steps.slice(0, -1).find((x) => x.stage === s)?.k, folds: budgetKs },
    };
    cutoffs.push(entry);
  }
  // When folds disagree widely on a kept stage's cut-off, the full-split choice is the luck
  // of one sample: take the largest fold cut-off that still meets the budget instead.
  if (choice.met && foldBudget.length > 0) {
    const widened = widenCutoffs(best, foldBudget, choice.points, budgetMs, o.budgetStat);
    if (widened && widened !== best) {
      for (const c of cutoffs) {
        const s = tunePools.stages.findIndex((st) => st.name === c.stage);
        const k = widened.plan.steps.slice(0, -1).find((x) => x.stage === s)?.k;
        if (k !== c.budget.k) c.budget.widenedTo = k;
      }
      best = widened;
    }
  }

  const nStages = tunePools.stages.length;
  const depth = tunePools.depth;
  const heavy = nStages - 1;
  const baselines: TuneResult['baselines'] = {
    heavyFullPool: (await both({ steps: [{ stage: 0, k: depth }, { stage: heavy, k: finalK }] })).test,
    firstPassAlone: (await both({ steps: [{ stage: 0, k: finalK }] })).test,
  };
  if (nStages > 2) baselines.lightAlone = (await both({ steps: [{ stage: 0, k: depth }, { stage: 1, k: finalK }] })).test;

  const steps: StepEvidence[] = [];
  const noCv = `too few tuning queries (${nTune}) for cross-validation (needs 12): not adopted without evidence`;

  // A dropped stage: the budget plan skips a reranker of the spec. The plan keeping every
  // stage is the simpler choice (the cascade as written); dropping must earn its place.
  const keepsAll = (p: PlanPoint) => p.plan.steps.length === nStages;
  let plan: Plan = best.plan;
  if (choice.met && !keepsAll(best)) {
    const full = chooseOnSubset(choice.points, all, budgetMs, o.budgetStat, select, keepsAll);
    if (full) {
      const oof = new Float64Array(nTune);
      const foldGains: number[] = [];
      foldSplits.forEach(({ train, held }) => {
        const withDrop = chooseOnSubset(choice.points, train, budgetMs, o.budgetStat, select) ?? best;
        const without = chooseOnSubset(choice.points, train, budgetMs, o.budgetStat, select, keepsAll) ?? full;
        let g = 0;
        for (const i of held) {
          oof[i] = withDrop.eval.perQueryNdcg[i] - without.eval.perQueryNdcg[i];
          g += oof[i];
        }
        foldGains.push(g / held.length);
      });
      const e = await stepEvidence(
        'dropped stage',
        `${best.label} instead of ${full.label}`,
        best.eval['nDCG@10'] - full.eval['nDCG@10'],
        assignment ? oof : undefined,
        foldGains,
        meanOf(await ndcgOn(testPools, best.plan)) - meanOf(await ndcgOn(testPools, full.plan)),
        ev,
        noCv,
      );
      steps.push(e);
      if (!e.adopted) {
        best = full;
        plan = full.plan;
      }
    }
  }

  const result: Partial<TuneResult> = {};

  // Calibration per stage of the chosen plan, fitted on tuning pairs, judged on held-out pairs.
  const calibrations = new Map<number, Calibration>();
  if (o.calibrate) {
    result.calibration = [];
    for (let j = 0; j < plan.steps.length; j++) {
      const step = plan.steps[j];
      const st = tunePools.stages[step.stage];
      // a listwise tier's scores are ranks within each list it was given: nothing to calibrate
      if (st.scoring === 'listwise') continue;
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
      const tuneFused = meanOf(await ndcgOn(tunePools, fused));
      const tuneLast = meanOf(await ndcgOn(tunePools, plan));
      const testFused = meanOf(await ndcgOn(testPools, fused));
      const testLast = meanOf(await ndcgOn(testPools, plan));
      // Each fold's queries are judged by weights fitted on the other folds.
      const oof = new Float64Array(nTune);
      const foldGains: number[] = [];
      for (const { train, held } of foldSplits) {
        const fit = (await fitFusion(subsetPools(tunePools, train), plan, o.fuse, finalK, o.rrfK)) as FusionPlan;
        const heldQs = held.map((i) => tunePools.queries[i]);
        const a = await ndcgOn(tunePools, { ...plan, fusion: fit }, heldQs);
        const b = await ndcgOn(tunePools, plan, heldQs);
        held.forEach((i, j) => (oof[i] = a[j] - b[j]));
        foldGains.push(meanOf(a) - meanOf(b));
      }
      const e = await stepEvidence('fusion', planLabel(tunePools, fused, finalK), tuneFused - tuneLast, assignment ? oof : undefined, foldGains, testFused - testLast, ev, noCv);
      steps.push(e);
      result.fusion = {
        method: fusion.kind,
        params: fusion.kind === 'rrf' ? { k: fusion.k } : { weights: fusion.weights, normalize: 'minmax' },
        tune: { fused: tuneFused, lastStage: tuneLast },
        test: { fused: testFused, lastStage: testLast },
        beatsLastStageOnTest: testFused > testLast,
        adopted: e.adopted,
        note: e.reason,
      };
      if (e.adopted) plan = fused;
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
      const marginCalibration = async (pools: Pools): Promise<Calibration> => {
        const fitted = calibrations.get(plan.steps[j].stage);
        if (fitted && pools === tunePools) return fitted;
        const data = await stagePairs(pools, plan, j, finalK);
        return fitCalibration(o.calibrate ?? 'platt', light.scoreKind, data.scores, data.labels, `stage "${light.name}" (for the early-exit margin)`).calibration;
      };
      const cal = await marginCalibration(tunePools);
      const ee = await tuneEarlyExit(tunePools, plan, cal, 1, o.earlyExitLoss, finalK);
      const { rule, ...rest } = ee;
      result.earlyExit = { ...rest, margin: rule?.margin, k: 1, calibration: describeCalibration(cal) };
      if (!rule) {
        result.earlyExit.note = `no margin skips any query within ${(100 * o.earlyExitLoss).toFixed(2)}% nDCG@10 loss on the tuning split`;
      } else {
        const withExit: Plan = { ...plan, earlyExit: rule };
        const tuneWith = await evaluatePlan(tunePools, withExit, finalK);
        const testWith = await evaluatePlan(testPools, withExit, finalK);
        const tuneWithout = await ndcgOn(tunePools, plan);
        const testWithout = await ndcgOn(testPools, plan);
        // Each fold's queries meet a margin (and its calibration) fitted on the other folds.
        const oof = new Float64Array(nTune);
        const foldGains: number[] = [];
        let cvSkipped = 0;
        for (const { train, held } of foldSplits) {
          const sub = subsetPools(tunePools, train);
          const fit = (await tuneEarlyExit(sub, plan, await marginCalibration(sub), 1, o.earlyExitLoss, finalK)).rule;
          const heldQs = held.map((i) => tunePools.queries[i]);
          const b = await ndcgOn(tunePools, plan, heldQs);
          let a = b;
          if (fit) {
            const w = await evaluatePlan(tunePools, { ...plan, earlyExit: fit }, finalK, heldQs);
            a = w.perQueryNdcg;
            cvSkipped += w.skipped * held.length;
          }
          held.forEach((i, jj) => (oof[i] = a[jj] - b[jj]));
          foldGains.push(meanOf(a) - meanOf(b));
        }
        const e = await stepEvidence(
          'early exit',
          planLabel(tunePools, withExit, finalK),
          tuneWith['nDCG@10'] - meanOf(tuneWithout),
          assignment ? oof : undefined,
          foldGains,
          testWith['nDCG@10'] - meanOf(testWithout),
          ev,
          noCv,
          // its point is cost: adopted when it skips queries out of fold and its loss stays
          // within the allowed loss with confidence
          (cv, interval) => judgeLoss(cv, interval, o.earlyExitLoss * meanOf(tuneWithout), cvSkipped / nTune),
        );
        e.skipped = { tune: tuneWith.skipped, cv: cvSkipped / nTune, test: testWith.skipped };
        steps.push(e);
        result.earlyExit.note = e.reason;
        result.earlyExit.adopted = e.adopted;
        if (e.adopted) {
          plan = withExit;
          result.earlyExit.test = summarize(testPools, plan, testWith, finalK);
        }
      }
    }
  }

  const final = await both(plan);
  const heavyFull = baselines.heavyFullPool;
  const heavyName = tunePools.stages[heavy].name;
  const chosenStat = best.eval.latencyMs[o.budgetStat];
  // two decimals, unless that rounds a tiny budget to 0
  const budgetText = `${+budgetMs.toFixed(2) || budgetMs}`;
  const shareNote = o.budgetShare !== undefined ? ` (${o.budgetShare} x the heavy stage over the whole pool)` : '';
  const budgetMessage = choice.met
    ? `plan meets the budget: predicted ${o.budgetStat} ${chosenStat.toFixed(2)} ms <= ${budgetText} ms${shareNote}`
    : `no plan meets ${o.budgetStat} <= ${budgetText} ms${shareNote}; the cheapest plan (${choice.best.label}) takes ${chosenStat.toFixed(2)} ms`;
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
      if (s.scoring) out.scoring = s.scoring;
      if (s.unitCosts) out.unitCosts = s.unitCosts;
      // read after every replay of both splits: the calls tuning paid for, all told
      const memos = [s.memo, testPools.stages[i].memo].filter((m) => m !== undefined);
      if (memos.length > 0) out.llmCalls = { made: memos.reduce((n, m) => n + m.ms.length, 0), replayed: memos.reduce((n, m) => n + m.replayed, 0) };
      const a = s.docEmbeddings;
      const b = testPools.stages[i].docEmbeddings;
      if (a && b) out.docEmbeddings = { fromCache: a.fromCache + b.fromCache, embedded: a.embedded + b.embedded, ...(a.stored !== undefined || b.stored !== undefined ? { stored: (a.stored ?? 0) + (b.stored ?? 0) } : {}) };
      return out;
    }),
    curves,
    plateauPlan: await both(plateau),
    budget: { ms: budgetMs, stat: o.budgetStat, met: choice.met, message: budgetMessage, ...(o.budgetShare !== undefined ? { share: o.budgetShare } : {}) },
    configs,
    chosen: await both(best.plan),
    cutoffs,
    evidence: { folds, minGain: ev.minGain, level: ev.level, resamples: ev.resamples, seed: ev.seed, steps },
    baselines,
    ...result,
    final: { plan: final.tune, test: final.test },
    summary: {
      qualityRetained: heavyFull['nDCG@10'] > 0 ? final.test['nDCG@10'] / heavyFull['nDCG@10'] : NaN,
      heavyPairsAvoided: heavyFull.pairs[heavyName] > 0 ? 1 - (final.test.pairs[heavyName] ?? 0) / heavyFull.pairs[heavyName] : NaN,
    },
    spec: planToSpec(tunePools, plan, finalK, o.spec.name),
    epsilon: o.epsilon,
    resamples: o.resamples,
    seed: o.seed,
  };
}

/**
 * The cut-offs of `best`, raised stage by stage to the largest a fold chose (with the same
 * stages kept) when the folds' choices for that stage spread wider than WIDE_SPREAD,
 * provided the raised plan still meets the budget on the whole tuning split.
 */
export function widenCutoffs(best: PlanPoint, folds: readonly (PlanPoint | undefined)[], points: readonly PlanPoint[], budgetMs: number, stat: BudgetStat): PlanPoint | undefined {
  const sameStages = (p: PlanPoint) => p.plan.steps.length === best.plan.steps.length && p.plan.steps.every((s, i) => s.stage === best.plan.steps[i].stage);
  const agreeing = folds.filter((p): p is PlanPoint => p !== undefined && sameStages(p));
  if (agreeing.length === 0) return undefined;
  let current = best;
  for (let j = 0; j < best.plan.steps.length - 1; j++) {
    const ks = agreeing.map((p) => p.plan.steps[j].k);
    const { min, max } = spread(ks);
    if (max <= WIDE_SPREAD * min) continue;
    // try the fold cut-offs from the largest down, each with the other cut-offs as they are
    for (const k of [...new Set(ks)].sort((a, b) => b - a)) {
      if (k <= current.plan.steps[j].k) break;
      const cand = points.find((p) => sameStages(p) && p.plan.steps.every((s, i) => (i === j ? s.k === k : s.k === current.plan.steps[i].k)));
      if (cand && cand.eval.latencyMs[stat] <= budgetMs) {
        current = cand;
        break;
      }
    }
  }
  return current;
}

/**
 * The evidence record of a step from its out-of-fold per-query gains (undefined without
 * cross-validation), judged by `judge` (default: the quality-gain rule).
 */
async function stepEvidence(
  step: StepEvidence['step'],
  detail: string,
  tuneGain: number,
  oof: Float64Array | undefined,
  foldGains: number[],
  testGain: number,
  ev: EvidenceOptions,
  noCv: string,
  judge: (cvGain: number, interval: Interval) => { adopted: boolean; reason: string } = (cv, i) => judgeGain(cv, i, ev),
): Promise<StepEvidence> {
  if (!oof) {
    return { step, detail, tuneGain, cvGain: NaN, foldGains, interval: { level: ev.level, lo: NaN, hi: NaN }, testGain, adopted: false, reason: noCv };
  }
  const cvGain = meanOf(oof);
  const interval = pairedBootstrap(oof, ev.resamples, ev.level, ev.seed);
  return { step, detail, tuneGain, cvGain, foldGains, interval, testGain, ...judge(cvGain, interval) };
}

/**
 * The rule for a step whose point is cost (early exit): it must skip queries out of fold,
 * and the lower end of its nDCG@10 change's interval must stay within the allowed loss.
 */
function judgeLoss(cvGain: number, interval: Interval, allowed: number, cvSkipped: number): { adopted: boolean; reason: string } {
  const ci = formatInterval(interval);
  if (!(cvSkipped > 0)) return { adopted: false, reason: `fitted on each fold's other queries, it skips no held-in query (${ci})` };
  if (!(interval.lo >= -allowed)) {
    return { adopted: false, reason: `cross-validated change ${signed(cvGain)}, ${ci} reaches below the allowed loss ${signed(-allowed)}` };
  }
  return { adopted: true, reason: `skips ${(100 * cvSkipped).toFixed(1)}% of queries out of fold; change ${signed(cvGain)}, ${ci} within the allowed loss ${signed(-allowed)}` };
}

/**
 * Writes a plan as a cascade spec `winnow eval --spec` and `winnow serve` run: the original
 * stage entries with the chosen cut-offs, fusion as a `linear`/`rrf` stage over the
 * rerankers, the early exit as an `earlyExit` stage around the last stage. The fitted
 * calibrations are not spec keys: `winnow tune -o` lists them in comments (`tuneSpecYaml`).
 */
export function planToSpec(pools: Pools, plan: Plan, finalK: number, name: string | undefined): CascadeSpec {
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
  return { name: `${name ?? 'cascade'}-tuned`, stages };
}
