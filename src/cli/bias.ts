import { ScoreCache } from '../cascade/cache.js';
import { WinnowEnv } from '../cascade/env.js';
import { compileSpec, loadSpecFile, type CascadeSpec } from '../cascade/spec.js';
import { WinnowError } from '../core/errors.js';
import type { Ranking } from '../core/types.js';
import { runExperiment } from '../eval/experiment.js';
import { loadBeir } from '../eval/io/beir.js';
import { textTable } from '../eval/table.js';
import { CACHE_FLAGS, command, helpText, intArg, loadPlugins, parseCommand, PLUGIN_FLAG, showHelp } from './args.js';
import { writeJson } from './eval.js';

export const BIAS_COMMAND = command({
  name: 'bias',
  synopsis: ['--spec FILE --dataset DIR [--split test] [--shuffles 3] [--json FILE]', '[--index-cache DIR] [--plugin FILE]'],
  about: `Measures position bias of a cascade's LLM stages (listwise, setwise, judge): runs the
cascade with each LLM stage seeing its input as given, reversed, and shuffled with seeds
1..N, and reports how much the final nDCG@10 and the top-1 document move. It runs the
cascade 2 + N times, so it pays for 2 + N evaluations' LLM calls.`,
  flags: {
    spec: { type: 'string', arg: 'FILE', help: "the cascade (its LLM stages' own order/seed are overridden)" },
    dataset: { type: 'string', arg: 'DIR', help: 'BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)' },
    split: { type: 'string', arg: 'NAME', default: 'test', help: 'the qrels split of --dataset' },
    shuffles: { type: 'string', arg: 'N', default: '3', help: 'shuffled orders to try' },
    json: { type: 'string', arg: 'FILE', help: 'write the numbers as JSON' },
    'index-cache': CACHE_FLAGS['index-cache'],
    ...PLUGIN_FLAG,
  },
});

/** Spec keys whose stages take `order` and `seed`. */
const LLM_KEYS = ['listwise', 'setwise', 'judge'];

export interface OrderResult {
  order: string;
  'nDCG@10': number;
  /** change from the order as given */
  'ΔnDCG@10': number;
  /** share of queries whose top document differs from the one under the order as given */
  top1Changed: number;
  /** mean over queries of the mean |rank change| of the as-given top 10 */
  meanRankShift: number;
}

export async function biasCommand(args: string[]): Promise<number> {
  const { values } = parseCommand(args, BIAS_COMMAND);
  if (values.help) return showHelp(BIAS_COMMAND);
  if (!values.spec || !values.dataset) throw new WinnowError('usage', 'winnow bias needs --spec and --dataset', helpText(BIAS_COMMAND));
  const shuffles = intArg(values.shuffles, 'shuffles', 0);
  await loadPlugins(values.plugin);
  const spec = loadSpecFile(values.spec);
  const varied = llmStages(spec);
  if (varied.length === 0) throw new WinnowError('usage', `${values.spec}: no listwise, setwise or judge stage at the top level of "stages"`, 'winnow bias varies the input order of LLM stages');
  const ds = await loadBeir(values.dataset, values.split);
  const env = await WinnowEnv.create({ corpus: ds.corpusFile, indexCacheDir: values['index-cache'], progress: true });
  const orders: [string, 'keep' | 'reverse' | 'shuffle', number][] = [
    ['keep', 'keep', 0],
    ['reverse', 'reverse', 0],
    ...Array.from({ length: shuffles }, (_, i): [string, 'shuffle', number] => [`shuffle(seed ${i + 1})`, 'shuffle', i + 1]),
  ];
  const results: OrderResult[] = [];
  let base: { ndcg: number; rankings: Ranking[] } | undefined;
  try {
    for (const [label, order, seed] of orders) {
      const pipeline = await compileSpec(withOrder(spec, order, seed), env, values.spec);
      const r = await runExperiment({ pipeline, queries: ds.queries, qrels: ds.qrels, docs: env.lookup, cache: new ScoreCache(), finalK: 10, progress: true });
      const ndcg = r.final['nDCG@10'];
      base ??= { ndcg, rankings: r.rankings };
      results.push({ order: label, 'nDCG@10': ndcg, 'ΔnDCG@10': ndcg - base.ndcg, ...moves(base.rankings, r.rankings) });
      await pipeline.close();
    }
  } finally {
    await env.close();
  }
  const f = (x: number): string => x.toFixed(4);
  console.log(`position bias of ${varied.join(', ')} over ${ds.queries.length} queries`);
  console.log(textTable(['order', 'nDCG@10', 'ΔnDCG@10', 'top-1 changed', 'mean rank shift (top 10)'], results.map((o) => [o.order, f(o['nDCG@10']), f(o['ΔnDCG@10']), `${(100 * o.top1Changed).toFixed(1)}%`, o.meanRankShift.toFixed(2)])));
  const worst = Math.max(...results.map((o) => Math.abs(o['ΔnDCG@10'])));
  console.log(`largest |ΔnDCG@10|: ${f(worst)}`);
  if (values.json) writeJson(values.json, { spec: values.spec, stages: varied, queries: ds.queries.length, orders: results });
  return 0;
}

function llmStages(spec: CascadeSpec): string[] {
  const out: string[] = [];
  spec.stages.forEach((s, i) => {
    const key = s && typeof s === 'object' ? Object.keys(s).find((k) => LLM_KEYS.includes(k)) : undefined;
    if (key) out.push(`stages[${i}].${key}`);
  });
  return out;
}

/** The spec with every top-level LLM stage told to see its input in `order`. */
function withOrder(spec: CascadeSpec, order: string, seed: number): CascadeSpec {
  const stages = spec.stages.map((s) => {
    if (!s || typeof s !== 'object') return s;
    const o = s as Record<string, unknown>;
    const key = Object.keys(o).find((k) => LLM_KEYS.includes(k));
    if (!key) return s;
    const value = o[key];
    // The order goes where the options are: inside the key's object, or next to a bare model reference.
    if (value && typeof value === 'object' && !Array.isArray(value)) return { ...o, [key]: { ...(value as Record<string, unknown>), order, seed } };
    return { ...o, order, seed };
  });
  return { ...spec, stages };
}

function moves(base: readonly Ranking[], other: readonly Ranking[]): { top1Changed: number; meanRankShift: number } {
  const byQuery = new Map(other.map((r) => [r.query.id, r]));
  let changed = 0;
  let shift = 0;
  for (const b of base) {
    const o = byQuery.get(b.query.id);
    const ranks = new Map(o?.hits.map((h, i) => [h.docId, i]) ?? []);
    if (b.hits[0]?.docId !== o?.hits[0]?.docId) changed++;
    const head = b.hits.slice(0, 10);
    // A document that left the list counts as moved to just past its end.
    const s = head.reduce((sum, h, i) => sum + Math.abs((ranks.get(h.docId) ?? (o?.hits.length ?? 0)) - i), 0);
    shift += head.length ? s / head.length : 0;
  }
  return { top1Changed: base.length ? changed / base.length : 0, meanRankShift: base.length ? shift / base.length : 0 };
}
