import { compileSpec, loadSpecFile } from '../cascade/spec.js';
import { Pipeline } from '../cascade/pipeline.js';
import { WinnowError } from '../core/errors.js';
import { Costs } from '../core/costs.js';
import type { Stage, TraceRow } from '../core/stage.js';
import type { Ranking } from '../core/types.js';
import type { Collection } from '../retrieve/collection/collection.js';
import { collectionRetriever, openCollection } from '../retrieve/collection/env.js';
import { HybridRetriever } from '../retrieve/collection/stages.js';
import type { Retriever } from '../retrieve/retriever.js';
import { command, helpText, intArg, intFlag, loadPlugins, numFlag, parseCommand, PLUGIN_FLAG, showHelp } from './args.js';
import { WinnowEnv } from '../cascade/env.js';

export const SEARCH_COMMAND = command({
  name: 'search',
  synopsis: ['NAME "query" [--first-pass bm25|dense|hybrid] [--k 10]', '[--fusion rrf|union] [--rrf-k 60] [--depth 100] [--ef-search N] [--spec FILE] [--plugin FILE] [--json]'],
  about: 'Searches a collection made by `winnow index`.',
  flags: {
    'first-pass': { type: 'string', arg: 'NAME', help: 'bm25, dense or hybrid (default hybrid when the collection has vectors, else bm25)' },
    k: { type: 'string', arg: 'K', default: '10', help: 'hits to print' },
    fusion: { type: 'string', arg: 'rrf|union', help: 'how hybrid combines BM25 and dense hits (default rrf)' },
    'rrf-k': { type: 'string', arg: 'K', help: 'k of reciprocal rank fusion (default 60)' },
    depth: { type: 'string', arg: 'N', help: 'how deep each first pass goes before fusion (default the larger of --k and 100)' },
    'ef-search': { type: 'string', arg: 'N', help: "HNSW candidate list for this search (default the collection's)" },
    spec: {
      type: 'string',
      arg: 'FILE',
      help: 'a cascade spec whose `retrieve:` stages (bm25, dense, hybrid) use the collection;\nrerank stages take model folders, model references and remote APIs, as in winnow eval',
    },
    ...PLUGIN_FLAG,
    json: { type: 'boolean', help: 'print the hits and the per-stage trace as JSON' },
  },
});

/** `winnow search`: top hits of a collection with each stage's score, for a person to read. */
export async function searchCommand(args: string[]): Promise<number> {
  const { values: v, positionals } = parseCommand(args, SEARCH_COMMAND);
  if (v.help) return showHelp(SEARCH_COMMAND);
  const [name, ...words] = positionals;
  if (!name || words.length === 0) throw new WinnowError('usage', 'give a collection NAME and a query', helpText(SEARCH_COMMAND));
  const text = words.join(' ');
  const k = intArg(v.k, 'k');
  const efSearch = v['ef-search'] === undefined ? undefined : intFlag(v['ef-search'], 'ef-search', 100);
  const c = await openCollection(name, { verify: 'size', efSearch });
  try {
    let stage: Stage;
    if (v.spec) {
      // The spec's names resolve through the registry, with this collection as the documents.
      const env = await WinnowEnv.create({});
      env.collection = c;
      await loadPlugins(v.plugin);
      stage = (await compileSpec(loadSpecFile(v.spec), env, v.spec)).top(k);
    } else {
      stage = Pipeline.of(firstPass(c, v['first-pass'], v.fusion, v['rrf-k'], v.depth === undefined ? Math.max(k, 100) : intFlag(v.depth, 'depth', 100), k)).top(k);
    }
    const t0 = performance.now();
    const {
      rankings: [ranking],
      trace,
    } = await new Pipeline([stage]).execute([{ query: { id: 'q', text }, hits: [] }], { docs: c, costs: new Costs() });
    const ms = performance.now() - t0;
    if (v.json) console.log(JSON.stringify({ query: text, hits: ranking.hits, trace }, null, 2));
    else printHits(c, ranking, trace, ms);
    return 0;
  } finally {
    c.close();
  }
}

function firstPass(c: Collection, which: string | undefined, fusion: string | undefined, rrfK: string | undefined, depth: number, k: number): Retriever {
  const kind = which ?? (c.hasVectors ? 'hybrid' : 'bm25');
  if (kind === 'hybrid') {
    if (fusion !== undefined && fusion !== 'rrf' && fusion !== 'union') throw new WinnowError('usage', '--fusion is rrf or union');
    if (!c.hasVectors) throw new WinnowError('usage', `collection "${c.name}" has no vectors: use --first-pass bm25`, 're-index it with --model for dense and hybrid');
    return new HybridRetriever(c, Math.max(k, depth), { method: fusion as 'rrf' | 'union' | undefined, rrfK: numFlag(rrfK, 'rrf-k'), bm25K: depth, denseK: depth });
  }
  const r = collectionRetriever(c, kind, {}, '--first-pass');
  if (!r) throw new WinnowError('usage', `--first-pass is bm25, dense or hybrid, got "${kind}"`);
  return r.withK(depth);
}

function printHits(c: Collection, ranking: Ranking, trace: TraceRow[], ms: number): void {
  const stageNames = [...new Set(ranking.hits.flatMap((h) => Object.keys(h.scores)))];
  console.log(`${c.name}: ${ranking.hits.length} hits for "${ranking.query.text}" in ${ms.toFixed(1)} ms (${trace.map((t) => `${t.stage}: ${t.out}`).join(', ')})`);
  ranking.hits.forEach((h, i) => {
    const doc = h.doc ?? c.get(h.docId);
    const scores = stageNames.map((s) => `${s}=${h.scores[s] === undefined ? '—' : h.scores[s].toFixed(4)}`).join('  ');
    const title = doc?.title ? `${doc.title} — ` : '';
    const snippet = `${title}${doc?.text ?? ''}`.replace(/\s+/g, ' ');
    console.log(`${String(i + 1).padStart(3)}. ${h.docId}  score=${h.score.toFixed(4)}  ${scores}`);
    console.log(`     ${snippet.length > 110 ? `${snippet.slice(0, 110)}…` : snippet}`);
  });
}
