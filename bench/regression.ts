/**
 * Same-run regression check of the cascade's own overhead: this checkout against another
 * (the previous commit, built), alternating in child processes round by round, so machine load
 * hits both alike. Three workloads through `Pipeline` (what every command runs):
 * - bm25: BM25 k=1000 for every SciFact test query (retrieval + the interpreter);
 * - bm25-rerank: BM25 k=100 → BM25 as a reranker → top 10 (the Rerank stage's per-pair path);
 * - cross-encoder: the tiny BERT cross-encoder fixture over 100 candidates per query, in process
 *   (a tiny model, so interpreter and Rerank overhead are a large share of the time).
 *
 *   git worktree add /tmp/winnow-base HEAD~1 && (cd /tmp/winnow-base && npm ci && npx tsc -p tsconfig.json)
 *   npx tsc -p tsconfig.json && node dist/bench/regression.js --baseline /tmp/winnow-base [--rounds 5]
 *
 * Writes bench/results/regression.{json,md}.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { median, readJsonl } from './common.js';

type Timings = Record<string, number>;

/** The slice of the library both checkouts export; typed loosely because the two versions differ. */
interface Lib {
  Bm25Index: { build(docs: Iterable<{ id: string; title?: string; text: string }>): Promise<unknown> };
  Bm25Retriever: new (index: unknown) => unknown;
  Bm25Scorer: new (index: unknown) => unknown;
  Rerank: new (scorer: unknown, name?: string) => unknown;
  Pipeline: { of(...s: unknown[]): { top(k: number): PipelineLike; andThen(s: unknown): PipelineLike } };
  loadScorer(dir: string): Promise<unknown>;
  emptyStats?: () => unknown;
  Costs?: new () => unknown;
}
interface PipelineLike {
  top(k: number): PipelineLike;
  andThen(s: unknown): PipelineLike;
  run(batch: unknown[], ctx: Record<string, unknown>): Promise<{ hits: { docId: string }[] }[]>;
}

async function child(root: string, dataset: string): Promise<Timings> {
  // Older checkouts export a function named `then`, which makes their module namespace a
  // thenable that `await import()` never resolves; a wrapper module hides it in a plain object.
  const wrapper = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'winnow-regress-')), 'lib.mjs');
  fs.writeFileSync(wrapper, `import * as m from ${JSON.stringify(pathToFileURL(path.join(root, 'dist/src/index.js')).href)};\nexport const lib = { ...m };\n`);
  const { lib } = (await import(pathToFileURL(wrapper).href)) as { lib: Lib };
  // The old API counted in `stats`, the new one in `costs`: give whichever the checkout reads.
  const ctx = (docs: Map<string, unknown>): Record<string, unknown> => ({ docs, stats: lib.emptyStats?.(), costs: lib.Costs ? new lib.Costs() : undefined });
  const corpus = readJsonl<{ _id: string; title?: string; text: string }>(path.join(dataset, 'corpus.jsonl')).map((d) => ({ id: d._id, title: d.title, text: d.text }));
  const docs = new Map(corpus.map((d) => [d.id, d]));
  const qids = new Set(fs.readFileSync(path.join(dataset, 'qrels/test.tsv'), 'utf8').split('\n').slice(1).map((l) => l.split('\t')[0]).filter(Boolean));
  const queries = readJsonl<{ _id: string; text: string }>(path.join(dataset, 'queries.jsonl')).filter((q) => qids.has(q._id)).map((q) => ({ id: q._id, text: q.text }));
  const index = await lib.Bm25Index.build(corpus);
  const time = async (p: PipelineLike, qs: typeof queries, hits: (q: { id: string }) => unknown[] = () => []): Promise<number> => {
    const t0 = performance.now();
    for (const q of qs) await p.run([{ query: q, hits: hits(q) }], ctx(docs));
    return (performance.now() - t0) / 1000;
  };
  const out: Timings = {};
  out.bm25 = await time(lib.Pipeline.of(new lib.Bm25Retriever(index)).top(1000), queries);
  out['bm25-rerank'] = await time(lib.Pipeline.of(new lib.Bm25Retriever(index)).top(100).andThen(new lib.Rerank(new lib.Bm25Scorer(index), 'light')).top(10), queries);
  // candidates from BM25 once, outside the timing, so only the cross-encoder cascade is timed
  const first = lib.Pipeline.of(new lib.Bm25Retriever(index)).top(100);
  const pools = new Map<string, unknown[]>();
  const sample = queries.slice(0, 40);
  for (const q of sample) {
    const [r] = await first.run([{ query: q, hits: [] }], ctx(docs));
    pools.set(q.id, r.hits);
  }
  const ce = await lib.loadScorer(path.resolve(root, 'test/fixtures/models/tiny-bert-ce'));
  const ceCascade = lib.Pipeline.of(new lib.Rerank(ce, 'ce')).top(10);
  await time(ceCascade, sample.slice(0, 3), (q) => pools.get(q.id) ?? []); // warm-up
  out['cross-encoder'] = await time(ceCascade, sample, (q) => pools.get(q.id) ?? []);
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      baseline: { type: 'string' },
      rounds: { type: 'string', default: '5' },
      dataset: { type: 'string', default: path.resolve('../shared/datasets/scifact') },
      child: { type: 'string' },
    },
  });
  if (values.child) {
    process.stdout.write(JSON.stringify(await child(values.child, values.dataset)) + '\n');
    return;
  }
  if (!values.baseline) throw new Error('give --baseline DIR: a built checkout of the commit to compare against');
  const roots = { current: path.resolve('.'), baseline: path.resolve(values.baseline) };
  const runs: Record<'current' | 'baseline', Timings[]> = { current: [], baseline: [] };
  const rounds = Number(values.rounds);
  for (let r = 0; r < rounds; r++) {
    const order = (r % 2 === 0 ? ['baseline', 'current'] : ['current', 'baseline']) as ('current' | 'baseline')[];
    for (const which of order) {
      const res = spawnSync(process.execPath, [process.argv[1], '--child', roots[which], '--dataset', values.dataset], { encoding: 'utf8' });
      if (res.status !== 0) throw new Error(`${which} run failed: ${res.stderr}`);
      runs[which].push(JSON.parse(res.stdout.trim().split('\n').at(-1) as string) as Timings);
      process.stderr.write(`round ${r + 1}/${rounds} ${which}: ${res.stdout.trim()}\n`);
    }
  }
  const names = Object.keys(runs.current[0]);
  const rows = names.map((name) => {
    const ratios = runs.current.map((c, i) => c[name] / runs.baseline[i][name]);
    return { name, baseline: median(runs.baseline.map((t) => t[name])), current: median(runs.current.map((t) => t[name])), ratio: median(ratios) };
  });
  const load = os.loadavg().map((x) => x.toFixed(1)).join(' / ');
  const baseCommit = spawnSync('git', ['-C', roots.baseline, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout.trim();
  const curCommit = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout.trim();
  fs.mkdirSync('bench/results', { recursive: true });
  fs.writeFileSync('bench/results/regression.json', JSON.stringify({ baseline: baseCommit, current: curCommit, rounds, load, runs, rows }, null, 2) + '\n');
  const md = [
    '# Cascade overhead: this commit against the one before',
    '',
    `Command: \`node dist/bench/regression.js --baseline ${values.baseline} --rounds ${rounds}\` (baseline ${baseCommit}, current ${curCommit}; see the file's header for building the baseline).`,
    '',
    `${os.availableParallelism()} cores, load average at the end ${load} (other jobs were running; the two checkouts alternate round by round, and the ratio is the median of per-round ratios).`,
    '',
    '| workload | baseline median s | current median s | current / baseline |',
    '| --- | ---: | ---: | ---: |',
    ...rows.map((r) => `| ${r.name} | ${r.baseline.toFixed(3)} | ${r.current.toFixed(3)} | ${r.ratio.toFixed(3)} |`),
    '',
  ].join('\n');
  fs.writeFileSync('bench/results/regression.md', md);
  process.stdout.write(md);
}

await main();
