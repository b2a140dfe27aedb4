import { writeFileSync } from 'node:fs';
import { stringify as toYaml } from 'yaml';
import { WinnowEnv } from '../cascade/env.js';
import { loadSpecFile } from '../cascade/spec.js';
import { WinnowError } from '../core/errors.js';
import type { Query } from '../core/types.js';
import { loadBeir } from '../eval/io/beir.js';
import type { Qrels } from '../eval/metrics.js';
import { textTable } from '../eval/table.js';
import { MIN_CALIBRATION_PAIRS, MIN_CALIBRATION_POSITIVES } from '../eval/tune/calibrate.js';
import { signed } from '../eval/tune/evidence.js';
import { fnv1a } from '../eval/tune/random.js';
import type { StageCost } from '../eval/tune/pool.js';
import { costColumns, type PlanSummary, runTune, type TuneResult } from '../eval/tune/tune.js';
import { command, helpText, intArg, CACHE_FLAGS, loadPlugins, numFlag, parseCommand, PLUGIN_FLAG, showHelp } from './args.js';
import { embeddingCacheFlag, writeJson } from './eval.js';

export const TUNE_COMMAND = command({
  name: 'tune',
  synopsis: [
    '--dataset DIR --spec FILE (--budget-ms MS | --budget-share F) [--budget-stat p50|p95]',
    '[--tune-split train] [--test-split test] [--epsilon 0.005] [--final-k 10]',
    '[--calibrate platt|isotonic] [--fuse rrf|linear] [--rrf-k 60]',
    '[--early-exit] [--early-exit-loss 0.005] [--folds N] [--min-gain 0.001]',
    '[--level 0.95] [--resamples 1000] [--seed 42]',
    '[-o tuned.yaml] [--json tune.json] [--index-cache DIR]',
    '[--embedding-cache DIR|none] [--cold-queries 8] [--collection NAME]',
  ],
  about: `Scores the first-pass pool of every query once with every stage of the spec (a retriever
followed by rerank stages), then chooses cut-offs from the recall curves and for the latency
budget, fitted on the tuning split and reported on the held-out split.`,
  flags: {
    dataset: { type: 'string', arg: 'DIR', help: 'BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)' },
    spec: { type: 'string', arg: 'FILE', help: "the cascade to tune; the retriever's k is the pool depth (default 1000)" },
    ...PLUGIN_FLAG,
    'budget-ms': { type: 'string', arg: 'MS', help: 'latency budget per query, in ms, predicted from costs measured here' },
    'budget-share': {
      type: 'string',
      arg: 'F',
      help: 'instead of --budget-ms: the budget as a share of the heavy stage (the last) over the whole pool, costed in the same run, so the load of the machine cancels out',
    },
    'budget-stat': { type: 'string', arg: 'STAT', default: 'p95', help: 'p50 or p95 of the per-query latency' },
    'tune-split': { type: 'string', arg: 'NAME', help: 'split the choices are made on (default train)' },
    'test-split': {
      type: 'string',
      arg: 'NAME',
      default: 'test',
      help: 'held-out split the results are reported on. When both name the same\nsplit, or the default train split does not exist, its queries are halved\ndeterministically (FNV-1a hash of the query id)',
    },
    epsilon: { type: 'string', arg: 'E', default: '0.005', help: 'plateau: smallest k with recall within E of the best' },
    'final-k': { type: 'string', arg: 'K', default: '10', help: 'the k of the reported nDCG and recall' },
    calibrate: {
      type: 'string',
      arg: 'METHOD',
      help: `fit platt or isotonic calibration per stage (needs >= ${MIN_CALIBRATION_PAIRS} labelled\npairs with >= ${MIN_CALIBRATION_POSITIVES} relevant; unjudged documents count as non-relevant)`,
    },
    fuse: { type: 'string', arg: 'METHOD', help: "fuse the rerankers' scores: rrf, or linear with fitted weights" },
    'rrf-k': { type: 'string', arg: 'K', default: '60', help: 'k of reciprocal rank fusion' },
    'early-exit': { type: 'boolean', default: false, help: 'skip the last stage for queries the stage before is sure about' },
    'early-exit-loss': { type: 'string', arg: 'L', default: '0.005', help: 'nDCG@10 loss the early exit may cost, relative' },
    folds: { type: 'string', arg: 'N', help: 'cross-validation folds over the tuning queries (default min(5, n/6);\nnone under 12 queries, and then no optional step is adopted)' },
    'min-gain': { type: 'string', arg: 'G', default: '0.001', help: 'nDCG@10 a dropped stage or fusion must gain under cross-validation to\nbe adopted' },
    level: { type: 'string', arg: 'L', default: '0.95', help: 'level of the paired-bootstrap intervals' },
    resamples: { type: 'string', arg: 'N', default: '1000', help: 'bootstrap resamples for the cut-off and gain intervals' },
    seed: { type: 'string', arg: 'N', default: '42', help: 'seed of the folds and the bootstrap' },
    out: { type: 'string', short: 'o', arg: 'FILE', help: 'write the tuned cascade spec (YAML); not written when the budget is not met' },
    json: { type: 'string', arg: 'FILE', help: 'write every number (curves, configurations, calibration) for winnow report' },
    ...CACHE_FLAGS,
    'cold-queries': { type: 'string', arg: 'N', default: '8', help: 'queries the cold cost of a cached-embedding stage is timed on' },
    collection: {
      type: 'string',
      arg: 'NAME',
      help: "a collection made by winnow index (name or path) holding the dataset's\ncorpus: its BM25 is the first pass, its store the documents, and a\nbi-encoder stage whose vectors it stores (--add-model) reads them",
    },
  },
  notes: `Evidence: an optional step (a dropped stage, fusion, early exit) is adopted only when it
holds under k-fold cross-validation over the tuning queries (each fold judged by a fit on the
other folds): a dropped stage or fusion must gain >= --min-gain nDCG@10 with a paired-bootstrap
interval above 0; an early exit must skip queries with the interval of its nDCG@10 change
within --early-exit-loss. Otherwise the simpler plan is kept and the output says why. Cut-offs
are also chosen per fold and reported with their spread; when folds disagree by more than 2x,
the largest fold cut-off that still meets the budget is taken. The held-out split is only
reported, never used for a choice.

Budget choice: the plan with the best nDCG@10 within the budget is partly the luck of the
tuning queries. Every plan within the budget whose paired-bootstrap interval of nDCG@10 minus
the best's reaches -(--min-gain) counts as good as the best, and of those the plan giving
the last stage the most candidates (then the stage before it; then the cheaper) is chosen:
the one closest to the heavy stage over the whole pool, whose quality the cascade keeps.
A plan whose middle stage keeps all it is given is no candidate (the plan without it hands
on the same candidates for less).

Costs: a reranker with a document-side cache (bi-encoder, late interaction) is costed cold:
a fresh scorer without the disk cache embeds 10 and then 64 documents it has never seen, per
sampled query, so a pair costs what a cascade pays to embed an unseen document and the query,
not the dot product a warm cache makes it. Cross-encoders are timed on the scoring pass. A
bi-encoder whose document vectors the --collection stores is timed on the scoring pass too:
there a pair is a dot product in the cascade as well (measured "stored"). An LLM last tier
is costed per call: a judge per pair from the scoring pass; a listwise or setwise stage is run
on each candidate list (repeated windows answered from memory) and a query costs its calls
times the median ms of a call; tokens and money per query are shown with every plan.

Exit status: 0 when a plan meets the budget; 1 when none does (the cheapest plan is shown
and written to --json, and no spec is written).`,
});

interface Split {
  name: string;
  queries: Query[];
  qrels: Qrels;
}

/** Deterministic halves of one split, by a stable hash of the query id. */
export function halveQueries(queries: readonly Query[]): { tune: Query[]; test: Query[] } {
  const tune: Query[] = [];
  const test: Query[] = [];
  for (const q of queries) (fnv1a(q.id) % 2 === 0 ? tune : test).push(q);
  return { tune, test };
}

async function loadSplits(dataset: string, tuneName: string | undefined, testName: string): Promise<{ tune: Split; test: Split; corpus: string; note?: string }> {
  const test = await loadBeir(dataset, testName);
  let tune: Awaited<ReturnType<typeof loadBeir>> | undefined;
  if (tuneName !== undefined && tuneName !== testName) tune = await loadBeir(dataset, tuneName);
  if (tuneName === undefined) {
    tune = await loadBeir(dataset, 'train').catch((e: unknown) => {
      if (e instanceof WinnowError && e.code === 'not_found') return undefined;
      throw e;
    });
  }
  if (tune) {
    return {
      tune: { name: tuneName ?? 'train', queries: tune.queries, qrels: tune.qrels },
      test: { name: testName, queries: test.queries, qrels: test.qrels },
      corpus: test.corpusFile,
    };
  }
  const halves = halveQueries(test.queries);
  if (halves.tune.length === 0 || halves.test.length === 0) {
    throw new WinnowError('bad_input', `split '${testName}' has too few queries (${test.queries.length}) to halve into tuning and held-out sets`);
  }
  return {
    tune: { name: `${testName} (even half)`, queries: halves.tune, qrels: test.qrels },
    test: { name: `${testName} (odd half)`, queries: halves.test, qrels: test.qrels },
    corpus: test.corpusFile,
    note:
      `one split (${testName}, ${test.queries.length} queries) halved deterministically: queries whose FNV-1a hash of the id is even ` +
      `tune (${halves.tune.length}), odd are held out (${halves.test.length})`,
  };
}

function oneOf<T extends string>(value: string, name: string, allowed: readonly T[]): T;
function oneOf<T extends string>(value: string | undefined, name: string, allowed: readonly T[]): T | undefined;
function oneOf<T extends string>(value: string | undefined, name: string, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(value)) throw new WinnowError('usage', `--${name} must be ${allowed.join(' or ')}, got "${value}"`);
  return value as T;
}

export async function tuneCommand(args: string[]): Promise<number> {
  const { values } = parseCommand(args, TUNE_COMMAND);
  if (values.help) return showHelp(TUNE_COMMAND);
  const usage = helpText(TUNE_COMMAND);
  if (!values.dataset) throw new WinnowError('usage', 'give --dataset DIR', usage);
  if (!values.spec) throw new WinnowError('usage', 'give --spec FILE: the cascade to tune', usage);
  const budgetShare = values['budget-share'] === undefined ? undefined : numFlag(values['budget-share'], 'budget-share');
  if (budgetShare !== undefined && !(budgetShare > 0)) throw new WinnowError('usage', `--budget-share must be a positive share, e.g. 0.25, got ${values['budget-share']}`);
  if (budgetShare !== undefined && values['budget-ms'] !== undefined) throw new WinnowError('usage', 'give --budget-ms or --budget-share, not both');
  const budgetMs = budgetShare !== undefined ? 0 : numFlag(values['budget-ms'], 'budget-ms');
  if (budgetShare === undefined && (budgetMs === undefined || !(budgetMs > 0))) {
    throw new WinnowError('usage', 'give --budget-ms MS, a positive latency budget per query (or --budget-share F)', usage);
  }
  const budgetStat = oneOf(values['budget-stat'], 'budget-stat', ['p50', 'p95'] as const);
  const epsilon = numFlag(values.epsilon, 'epsilon');
  if (epsilon < 0 || epsilon >= 1) throw new WinnowError('usage', `--epsilon must be in [0, 1), got ${epsilon}`);
  const loss = numFlag(values['early-exit-loss'], 'early-exit-loss');
  if (loss < 0 || loss >= 1) throw new WinnowError('usage', `--early-exit-loss must be in [0, 1), got ${loss}`);
  const folds = values.folds === undefined ? undefined : intArg(values.folds, 'folds', 2);
  const minGain = numFlag(values['min-gain'], 'min-gain');
  if (!(minGain >= 0 && minGain < 1)) throw new WinnowError('usage', `--min-gain must be an nDCG@10 difference in [0, 1), got ${values['min-gain']}`);
  const level = numFlag(values.level, 'level');
  if (!(level > 0 && level < 1)) throw new WinnowError('usage', `--level must be in (0, 1), e.g. 0.95, got ${values.level}`);
  await loadPlugins(values.plugin);
  const spec = loadSpecFile(values.spec);
  const splits = await loadSplits(values.dataset, values['tune-split'], values['test-split']);
  const env = await WinnowEnv.create({
    corpus: values.collection ? undefined : splits.corpus,
    collection: values.collection,
    indexCacheDir: values['index-cache'],
    embeddingCacheDir: embeddingCacheFlag(values['embedding-cache']),
    progress: true,
  });
  // Its scorers have no disk cache and embed nothing before the cold timing.
  const coldEnv = await WinnowEnv.create({});
  if (splits.note) process.stderr.write(`note: ${splits.note}\n`);
  try {
    const result = await runTune({
      spec,
      specFile: values.spec,
      env,
      docs: env.lookup,
      tune: splits.tune,
      test: splits.test,
      budgetMs: budgetMs ?? 0,
      budgetShare,
      budgetStat,
      epsilon,
      finalK: intArg(values['final-k'], 'final-k'),
      calibrate: oneOf(values.calibrate, 'calibrate', ['platt', 'isotonic'] as const),
      fuse: oneOf(values.fuse, 'fuse', ['rrf', 'linear'] as const),
      rrfK: numFlag(values['rrf-k'], 'rrf-k'),
      earlyExit: values['early-exit'],
      earlyExitLoss: loss,
      resamples: intArg(values.resamples, 'resamples'),
      folds,
      minGain,
      level,
      seed: intArg(values.seed, 'seed', 0),
      progress: true,
      coldEnv,
      coldSample: { queries: intArg(values['cold-queries'], 'cold-queries') },
      splitNote: splits.note,
    });
    console.log(formatTune(result));
    if (values.json) writeJson(values.json, result);
    if (!result.budget.met) {
      process.stderr.write(`winnow: ${result.budget.message}\n`);
      if (values.out) process.stderr.write(`no spec written to ${values.out}: raise the budget or drop a stage\n`);
      return 1;
    }
    if (values.out) writeFileSync(values.out, tunedSpecYaml(result));
    return 0;
  } finally {
    await env.close();
    await coldEnv.close();
  }
}

function measuredAs(c: StageCost, llm?: { made: number; replayed: number }): string {
  const calls = llm ? ` (${llm.made} LLM calls made, ${llm.replayed} repeats answered from memory)` : '';
  if (c.measured === 'calls') return `per call, ${ms(c.perCallMs ?? 0)} ms median${calls}`;
  if (calls) return `scoring pass${calls}`;
  if (c.measured === 'stored') return 'scoring pass, stored vectors';
  if (c.measured !== 'cold' || !c.cold) return 'scoring pass';
  return `cold, ${c.cold.queries} queries × ${c.cold.smallDocs}+${c.cold.largeDocs} docs`;
}

const f4 = (x: number) => (Number.isFinite(x) ? x.toFixed(4) : 'n/a');
const ms = (x: number) => (x < 10 ? x.toFixed(2) : x.toFixed(1));
const pct = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(1)}%` : 'n/a');

function planRow(what: string, p: PlanSummary, extra: (p: PlanSummary) => string[]): (string | number)[] {
  const pairs = Object.values(p.pairs).reduce((a, b) => a + b, 0);
  return [what, p.label, f4(p['nDCG@10']), f4(p['R@10']), pairs.toFixed(0), ...extra(p), ms(p.latencyMs.p50), ms(p.latencyMs.p95)];
}

function range(ks: readonly number[]): string {
  if (ks.length === 0) return '-';
  const lo = Math.min(...ks);
  const hi = Math.max(...ks);
  return lo === hi ? `${lo}` : `${lo}-${hi}`;
}

/** Per optional step: the gain where it was fitted, under cross-validation, held out; and the verdict. */
/**
 * The tuned spec as YAML. A fitted calibration is not a spec key of its own (a stage's scores
 * stay raw): it is listed in comments, ready for the `calibration` option of a `threshold` or
 * `earlyExit` stage.
 */
export function tunedSpecYaml(r: TuneResult): string {
  const lines = [`# written by winnow tune: ${r.budget.message}`, toYaml(r.spec).trimEnd()];
  if (r.calibration?.length) {
    lines.push('', '# calibrations fitted on the tuning split, for a threshold or earlyExit stage\'s calibration option:');
    for (const c of r.calibration) lines.push(`#   ${c.stage}: ${JSON.stringify(c.calibration)}`);
  }
  return lines.join('\n') + '\n';
}

export function formatEvidence(r: TuneResult): string[] {
  const e = r.evidence;
  if (e.steps.length === 0) return [];
  const out = [
    '',
    `optional steps (nDCG@10 with minus without; adopted when the cross-validated gain is >= ${e.minGain} with its ` +
      `${Math.round(100 * e.level)}% paired-bootstrap interval above 0 (${e.resamples} resamples); an early exit when it skips queries ` +
      'and the interval stays within the allowed loss; held-out: reported only):',
  ];
  out.push(
    textTable(
      ['step', 'fitted on tuning split', 'tuning gain', 'CV gain', `${Math.round(100 * e.level)}% interval`, 'folds', 'held-out gain', 'adopted'],
      e.steps.map((s) => [
        s.step,
        s.detail,
        signed(s.tuneGain),
        signed(s.cvGain),
        Number.isFinite(s.interval.lo) ? `[${signed(s.interval.lo)}, ${signed(s.interval.hi)}]` : 'n/a',
        s.foldGains.map(signed).join(' '),
        signed(s.testGain),
        s.adopted ? 'yes' : 'no',
      ]),
    ),
  );
  for (const s of e.steps) {
    const skip = s.skipped ? ` (skipped: ${pct(s.skipped.tune)} tuning, ${pct(s.skipped.cv)} out of fold, ${pct(s.skipped.test)} held-out)` : '';
    out.push(`${s.step}: ${s.adopted ? 'adopted' : 'not adopted, the simpler plan is kept'}: ${s.reason}${skip}`);
  }
  return out;
}

/** The tuning report as text: costs, plateau cut-offs, the plan against baselines, extras. */
export function formatTune(r: TuneResult): string {
  const out: string[] = [];
  out.push(`tuning on ${r.splits.tune} (${r.splits.tuneQueries} queries), reporting on ${r.splits.test} (${r.splits.testQueries} queries); pool depth ${r.depth}`);
  if (r.splits.note) out.push(`note: ${r.splits.note}`);
  out.push('', 'stage costs measured on this machine:');
  out.push(
    textTable(
      ['stage', 'score kind', 'measured', 'ms/pair', 'fixed ms/query', 'ms/query (whole pool)', 'doc embeddings: cached / embedded / stored'],
      r.stages.map((s) => [
        s.name,
        s.scoreKind,
        measuredAs(s.cost, s.llmCalls),
        s.role === 'retriever' || s.scoring === 'listwise' ? '-' : s.cost.perPairMs.toFixed(4),
        ms(s.cost.fixedMs),
        ms(s.cost.medianQueryMs),
        s.docEmbeddings ? `${s.docEmbeddings.fromCache} / ${s.docEmbeddings.embedded} / ${s.docEmbeddings.stored ?? 0}` : '-',
      ]),
    ),
  );
  if (r.stages.some((s) => s.cost.measured === 'cold')) {
    out.push(
      'cold: the stage caches document embeddings, so the scoring pass (above: from cache / embedded) says little about its cost;' +
        ' it was timed on a fresh scorer without a disk cache, on documents it had never embedded, and each query is charged' +
        " that per-pair cost scaled by its pool's mean document length.",
    );
  }
  for (const s of r.stages) {
    if (s.cost.cold && s.cost.cold.cacheHits > 0) out.push(`warning: the cold timing of ${s.name} hit its cache ${s.cost.cold.cacheHits} times: its cost is underestimated`);
    const load = s.cost.cold?.load;
    if (load && load.avg1 > load.cores) {
      out.push(
        `warning: ${s.name} was timed at load average ${load.avg1.toFixed(1)} on ${load.cores} cores: its ms are inflated by other work;` +
          ' a --budget-ms budget then buys less than on a quiet machine (a --budget-share budget is a ratio of costs measured in this run, so the load largely cancels out)',
      );
    }
  }
  out.push('', `plateau cut-offs (recall within ${r.epsilon} of the best; 95% bootstrap interval over ${r.resamples} resamples):`);
  out.push(
    textTable(
      ['stage', 'input', 'k', 'R@k', 'max R', 'k 95% CI'],
      r.curves.map((c) => [c.stage, c.inputK, c.plateau.k, f4(c.plateau.recall), f4(c.plateau.maxRecall), `${c.plateau.kLo}-${c.plateau.kHi}`]),
    ),
  );
  if (r.cutoffs.some((c) => c.plateau.folds.length > 0)) {
    out.push('', `cut-offs per cross-validation fold (${r.evidence.folds} folds of the tuning queries, seed ${r.evidence.seed}): whole tuning split, and min-max over the folds:`);
    out.push(
      textTable(
        ['stage', 'plateau k', 'folds', 'budget k', 'folds', 'note'],
        r.cutoffs.map((c) => [
          c.stage,
          c.plateau.k ?? '-',
          range(c.plateau.folds),
          c.budget.k ?? 'dropped',
          range(c.budget.folds),
          c.budget.widenedTo !== undefined ? `folds disagree > 2x: raised to ${c.budget.widenedTo} (still within budget)` : '',
        ]),
      ),
    );
  }
  out.push('', `held-out quality (${r.splits.test}); latency predicted per query from the measured costs:`);
  const plans: [string, PlanSummary][] = [
    ['budget plan', r.chosen.test],
    ['plateau plan', r.plateauPlan.test],
    ['heavy, whole pool', r.baselines.heavyFullPool],
  ];
  if (r.baselines.lightAlone) plans.push(['light alone', r.baselines.lightAlone]);
  plans.push(['first pass alone', r.baselines.firstPassAlone]);
  if (r.final.test.label !== r.chosen.test.label) plans.splice(1, 0, ['final plan', r.final.test]);
  const extra = costColumns(plans.map(([, p]) => p));
  out.push(textTable(['plan', 'stages', 'nDCG@10', 'R@10', 'pairs/q', ...extra.headers, 'p50 ms', 'p95 ms'], plans.map(([w, p]) => planRow(w, p, extra.cells))));
  if (r.stages.some((s) => s.scoring === 'listwise')) {
    out.push('a listwise tier is charged per call (calls per query × median ms per call); its pairs/q are the documents it was shown.');
  }
  out.push('', r.budget.message);
  for (const c of r.calibration ?? []) {
    const before = c.before ? `ECE ${f4(c.before.ece)} Brier ${f4(c.before.brier)}` : 'raw scores are not probabilities';
    out.push(
      `calibration ${c.stage} (${c.scoreKind} → ${c.method}, ${c.after.pairs} held-out pairs, ECE over 10 equal-width bins): ` +
        `before ${before}; after ECE ${f4(c.after.ece)} Brier ${f4(c.after.brier)}${c.note ? ` (${c.note})` : ''}`,
    );
  }
  if (r.fusion?.params && Object.keys(r.fusion.params).length === 0 && r.fusion.note) out.push(`fusion: ${r.fusion.note}`);
  if (r.earlyExit && r.earlyExit.margin === undefined && r.earlyExit.note) out.push(`early exit: ${r.earlyExit.note}`);
  out.push(...formatEvidence(r));
  out.push(
    `summary: the adopted plan (${r.final.test.label}) keeps ${pct(r.summary.qualityRetained)} of the heavy stage's held-out nDCG@10 (whole pool) ` +
      `and avoids ${pct(r.summary.heavyPairsAvoided)} of its pairs`,
  );
  return out.join('\n');
}
