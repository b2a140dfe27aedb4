import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ScoreCache } from '../cascade/cache.js';
import { WinnowEnv } from '../cascade/env.js';
import { Pipeline } from '../cascade/pipeline.js';
import { compileSpec, compileStage, loadSpecFile } from '../cascade/spec.js';
import { WinnowError } from '../core/errors.js';
import type { Stage } from '../core/stage.js';
import type { Doc, Query } from '../core/types.js';
import { runExperiment, type ExperimentResult } from '../eval/experiment.js';
import { checkQrels, loadBeir, readQrelsTsv } from '../eval/io/beir.js';
import { readTestQueries } from '../eval/io/testQueries.js';
import { readQrels, writeRun } from '../eval/io/trec.js';
import { readLines } from '../eval/io/lines.js';
import type { Qrels } from '../eval/metrics.js';
import { formatExperiment } from '../eval/table.js';
import { winnowHome } from '../models/cache.js';
import { command, intArg, CACHE_FLAGS, loadPlugins, parseCommand, PLUGIN_FLAG, showHelp, helpText } from './args.js';

export const EVAL_COMMAND = command({
  name: 'eval',
  synopsis: [
    '(--dataset DIR [--split test] | --queries FILE [--qrels FILE] [--corpus FILE])',
    '[--collection NAME] [--first-pass bm25|dense|hybrid|none|opensearch://HOST:PORT/INDEX] [--first-k 1000]',
    '[--stage1-model REF] [--stage2-model REF] [--pool-size 100] [--final-k 10]',
    '[--spec FILE] [--plugin FILE] [--json FILE] [--run FILE] [--cache-entries N]',
    '[--index FILE] [--index-cache DIR] [--embedding-cache DIR|none]',
  ],
  flags: {
    dataset: { type: 'string', arg: 'DIR', help: 'BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)' },
    split: { type: 'string', arg: 'NAME', default: 'test', help: 'the qrels split of --dataset' },
    queries: { type: 'string', arg: 'FILE', help: 'queries.jsonl or test_queries.jsonl (queries with candidates and labels)' },
    qrels: { type: 'string', arg: 'FILE', help: 'TREC qrels or BEIR qrels .tsv (else the labels in --queries)' },
    corpus: { type: 'string', arg: 'FILE', help: 'corpus.jsonl for the first pass and for document text' },
    collection: {
      type: 'string',
      arg: 'NAME',
      help: 'a collection made by winnow index (name or path): first pass and text\ncome from it instead of the corpus',
    },
    ...PLUGIN_FLAG,
    'first-pass': {
      type: 'string',
      arg: 'NAME',
      help: 'bm25 (default with a corpus), dense or hybrid (BM25 + dense, RRF k=60;\nneed a collection with a model), none (rerank the given candidates), or an\nOpenSearch index: opensearch://HOST:PORT/INDEX (docs/scale-out.md)',
    },
    'first-k': { type: 'string', arg: 'K', default: '1000', help: 'candidates the first pass retrieves' },
    'stage1-model': { type: 'string', arg: 'REF', help: 'first rerank stage: a scorer name (bm25) or a model folder' },
    'stage2-model': { type: 'string', arg: 'REF', help: 'second rerank stage; stage 1 then keeps --pool-size candidates for it' },
    'pool-size': { type: 'string', arg: 'N', default: '100', help: 'candidates passed from stage 1 to stage 2' },
    'final-k': { type: 'string', arg: 'K', default: '10', help: 'cut after the last rerank stage, and the k of the final R@k' },
    spec: { type: 'string', arg: 'FILE', help: 'a full cascade spec (JSON/YAML) instead of the stage flags' },
    json: { type: 'string', arg: 'FILE', help: 'write every number of the evaluation as JSON' },
    run: { type: 'string', arg: 'FILE', help: 'write the final rankings as a TREC run file' },
    'cache-entries': { type: 'string', arg: 'N', default: '1000000', help: 'score-cache capacity (0 disables)' },
    index: { type: 'string', arg: 'FILE', help: 'BM25 index file: loaded if present, else built and saved there' },
    ...CACHE_FLAGS,
  },
});

/** What an evaluation runs on, however it was given. */
export interface EvalInputs {
  queries: Query[];
  qrels: Qrels;
  corpus?: string;
  collection?: string;
  docs?: Map<string, Doc>;
  candidates?: Map<string, string[]>;
  warnings: string[];
}

/** The cascade the stage flags describe: first pass, stage 1 (cut to the pool), stage 2, final cut. */
export interface CascadeFlags {
  /** a registered retriever (`bm25`, `dense`, `hybrid`, a plugin's), or `none` */
  firstPass: string;
  firstK: number;
  stage1?: string;
  stage2?: string;
  poolSize: number;
  finalK: number;
  /** stage names in tables and hit scores (default stage1, stage2) */
  names?: [string, string];
}

export async function evalCommand(args: string[]): Promise<number> {
  const { values } = parseCommand(args, EVAL_COMMAND);
  if (values.help) return showHelp(EVAL_COMMAND);
  const inputs = await loadEvalInputs(values);
  const finalK = intArg(values['final-k'], 'final-k');
  const env = await WinnowEnv.create({
    corpus: inputs.corpus,
    collection: inputs.collection,
    docs: inputs.docs,
    indexCacheDir: values['index-cache'],
    indexFile: values.index,
    embeddingCacheDir: embeddingCacheFlag(values['embedding-cache']),
    progress: true,
  });
  inputs.warnings.push(...env.warnings);
  if (inputs.corpus || inputs.collection) inputs.warnings.push(...checkQrels(inputs.qrels, new Set(inputs.qrels.keys()), { has: (id) => env.lookup.get(id) !== undefined }));
  for (const w of inputs.warnings) process.stderr.write(`warning: ${w}\n`);

  await loadPlugins(values.plugin);
  const pipeline = values.spec
    ? await compileSpec(loadSpecFile(values.spec), env, values.spec)
    : await cascadeFromFlags(
        {
          firstPass: firstPassFlag(values['first-pass'], inputs),
          firstK: intArg(values['first-k'], 'first-k'),
          stage1: values['stage1-model'],
          stage2: values['stage2-model'],
          poolSize: intArg(values['pool-size'], 'pool-size'),
          finalK,
        },
        env,
      );
  const cacheEntries = intArg(values['cache-entries'], 'cache-entries', 0);
  const result = await runExperiment({
    pipeline,
    queries: inputs.queries,
    qrels: inputs.qrels,
    docs: env.lookup,
    candidates: inputs.candidates,
    cache: cacheEntries > 0 ? new ScoreCache({ maxEntries: cacheEntries }) : undefined,
    finalK,
    progress: true,
  });
  console.log(formatExperiment(result, finalK));
  if (values.json) writeJson(values.json, { spec: pipeline.describe(), ...withoutRankings(result) });
  if (values.run) await writeRun(values.run, result.rankings);
  return 0;
}

/**
 * The cascade the stage flags describe, as the spec entries they stand for: each flag's value
 * resolves through the registry exactly as the same name in a spec file would.
 */
export async function cascadeFromFlags(flags: CascadeFlags, env: WinnowEnv): Promise<Pipeline> {
  if (flags.stage2 && !flags.stage1) throw new WinnowError('usage', '--stage2-model needs --stage1-model', 'use --stage1-model for a single rerank stage');
  const [name1, name2] = flags.names ?? ['stage1', 'stage2'];
  const entries: [Record<string, unknown>, string][] = [];
  if (flags.firstPass !== 'none') entries.push([{ retrieve: flags.firstPass, k: flags.firstK }, '--first-pass']);
  if (flags.stage1) entries.push([{ rerank: flags.stage1, name: name1 }, '--stage1-model']);
  if (flags.stage2) entries.push([{ top: flags.poolSize }, '--pool-size'], [{ rerank: flags.stage2, name: name2 }, '--stage2-model']);
  // With rerank stages, or with nothing to run (evaluate the given candidate order), cut to final-k.
  if (flags.stage1 || entries.length === 0) entries.push([{ top: flags.finalK }, '--final-k']);
  const stages: Stage[] = [];
  for (const [entry, where] of entries) stages.push(await compileStage(entry, env, where));
  return new Pipeline(stages);
}

export function embeddingCacheFlag(value: string | undefined): string | undefined {
  if (value === 'none') return undefined;
  return value ?? path.join(winnowHome(), 'embeddings');
}

function firstPassFlag(value: string | undefined, inputs: EvalInputs): string {
  const v = value ?? (inputs.candidates ? 'none' : 'bm25');
  if (v === 'bm25' && !inputs.corpus && !inputs.collection && !inputs.docs?.size) {
    throw new WinnowError('usage', 'a BM25 first pass needs a corpus', 'give --dataset, --corpus or --collection, or --first-pass none with candidates');
  }
  return v;
}

type EvalFlagValues = { dataset?: string; split?: string; queries?: string; qrels?: string; corpus?: string; collection?: string };

export async function loadEvalInputs(values: EvalFlagValues): Promise<EvalInputs> {
  if (values.dataset) {
    if (values.queries || values.qrels || values.corpus) {
      throw new WinnowError('usage', '--dataset cannot be combined with --queries/--qrels/--corpus', 'use --collection to take documents from a collection instead');
    }
    const ds = await loadBeir(values.dataset, values.split ?? 'test');
    // With a collection the documents come from it; the dataset gives queries and qrels.
    const source = values.collection ? { collection: values.collection } : { corpus: ds.corpusFile };
    return { queries: ds.queries, qrels: ds.qrels, ...source, warnings: ds.warnings };
  }
  if (!values.queries) throw new WinnowError('usage', 'give --dataset DIR or --queries FILE', helpText(EVAL_COMMAND));
  const tq = await readTestQueries(values.queries);
  const qrels = values.qrels ? await readAnyQrels(values.qrels) : tq.qrels;
  const warnings = checkQrels(qrels, new Set(tq.queries.map((q) => q.id)));
  const judged = tq.queries.filter((q) => qrels.has(q.id));
  if (judged.length < tq.queries.length) {
    warnings.push(`${tq.queries.length - judged.length} of ${tq.queries.length} queries have no relevance labels and are not evaluated`);
  }
  if (judged.length === 0) {
    throw new WinnowError('bad_input', `no query in ${values.queries} has relevance labels`, 'give --qrels, or labels on the candidates');
  }
  const hasCandidates = [...tq.candidates.values()].some((c) => c.length > 0);
  return {
    queries: judged,
    qrels,
    corpus: values.corpus,
    collection: values.collection,
    docs: tq.docs,
    candidates: hasCandidates ? tq.candidates : undefined,
    warnings,
  };
}

/** BEIR qrels are tab-separated with a header; TREC qrels have four columns and none. */
async function readAnyQrels(file: string): Promise<Qrels> {
  for await (const { text } of readLines(file, 'qrels file')) {
    return text.startsWith('query-id') || text.split(/\s+/).length === 3 ? readQrelsTsv(file) : readQrels(file);
  }
  throw new WinnowError('bad_input', `qrels file is empty: ${file}`);
}

function withoutRankings(r: ExperimentResult): Omit<ExperimentResult, 'rankings'> {
  const { rankings: _omit, ...rest } = r;
  return rest;
}

export function writeJson(file: string, value: unknown): void {
  mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`);
}
