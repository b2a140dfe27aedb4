import { createReadStream, existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { WinnowError } from '../core/errors.js';
import { readCorpus } from '../eval/io/beir.js';
import { Collection, checkFiles, collectionDir, DEFAULT_LOCK_TIMEOUT_MS, DEFAULT_SEGMENT_DOCS, readManifest, repairCollection, type WriteReport } from '../retrieve/collection/collection.js';
import { openCollection } from '../retrieve/collection/env.js';
import { DEFAULT_ANN_PARAMS, type AnnParams } from '../retrieve/dense/ann.js';
import { loadEmbedder } from '../retrieve/dense/load.js';
import { parseOpenSearchTarget, targetLabel } from '../retrieve/opensearch/connect.js';
import { loadOpenSearch } from '../retrieve/opensearch/load.js';
import { command, helpText, intArg, numFlag, parseCommand, showHelp } from './args.js';

export const INDEX_COMMAND = command({
  name: 'index',
  synopsis: [
    'NAME --corpus DIR|FILE|- [--model REF] [--m 16] [--ef-construction 200] [--ef-search 128]',
    '     [--quantization f16|f32|i8] [--exact-below 20000] [--segment-docs 50000] [--skip-empty]',
    'NAME --add FILE|- [--upsert] [--skip-empty]',
    'NAME --update FILE|-',
    'NAME --delete ID [ID...]',
    'NAME --add-model REF',
    'NAME --info',
    'NAME --verify',
    'NAME --repair',
    '--to opensearch://HOST:PORT/INDEX --corpus DIR|FILE|- [--model REF] [--shards 1] [--replicas 0]',
    '     [--bm25-k1 0.9] [--bm25-b 0.4] [--m 16] [--ef-construction 128] [--batch-docs 500] [--limit N] [--skip-empty]',
  ],
  about: `NAME is a collection under $WINNOW_HOME/collections/ (default ~/.cache/winnow), or a path.
Documents are BEIR corpus lines: {"_id", "title"?, "text"}; "-" reads them from stdin.
Every add, update or delete is one atomic commit: a reader never sees half of it.
A collection owns its folder: it is created only in a new or empty folder, and it only ever
deletes files it wrote. Every open checks each file's sha256 (cached by size, mtime, ctime and
inode). --add-model REF embeds every document with another bi-encoder and stores the vectors per
segment (later writes embed with it too): a \`rerank: REF\` stage over the collection then
reads them instead of embedding candidates, so it costs one query embedding and a dot product
per candidate.
--to loads the corpus into an OpenSearch index instead (created with Winnow's analyzer, BM25
k1/b, shard and replica counts, and with --model a Lucene HNSW knn_vector field "embedding";
there --m and --ef-construction default to 16 and 128). Ids already in the index are skipped,
so an interrupted load resumes when run again. Search it with
\`retrieve: opensearch://HOST:PORT/INDEX\` or \`winnow eval --first-pass opensearch://...\`
(docs/scale-out.md).`,
  flags: {
    corpus: { type: 'string', arg: 'DIR|FILE|-', help: 'create the collection from these documents' },
    add: { type: 'string', arg: 'FILE|-', help: 'add documents (an id already there is an error unless --upsert)' },
    update: { type: 'string', arg: 'FILE|-', help: 'replace documents by id' },
    delete: { type: 'boolean', help: 'delete the documents whose ids follow NAME' },
    info: { type: 'boolean', help: 'print the generation, size, BM25 and vector settings' },
    verify: { type: 'boolean', help: 'hash every file again (ignoring the cache) and list each one' },
    repair: { type: 'boolean', help: 'rebuild a lost or damaged manifest from the intact segments' },
    'add-model': { type: 'string', arg: 'REF', help: "embed every document with this bi-encoder too and store the vectors (see above)" },
    'lock-timeout': { type: 'string', arg: 'SECONDS', default: String(DEFAULT_LOCK_TIMEOUT_MS / 1000), help: 'how long a write waits for another writer (0 fails at once)' },
    model: {
      type: 'string',
      arg: 'REF',
      help: 'with --corpus: add document embeddings and an HNSW graph (a model folder,\na cached model reference, or hash:DIM for the test embedder)',
    },
    m: { type: 'string', arg: 'N', default: String(DEFAULT_ANN_PARAMS.m), help: 'HNSW links per node' },
    'ef-construction': { type: 'string', arg: 'N', default: String(DEFAULT_ANN_PARAMS.efConstruction), help: 'HNSW candidate list while building' },
    'ef-search': { type: 'string', arg: 'N', default: String(DEFAULT_ANN_PARAMS.efSearch), help: 'HNSW candidate list while searching' },
    quantization: { type: 'string', arg: 'f16|f32|i8', default: DEFAULT_ANN_PARAMS.quantization, help: 'how vectors are stored in the graph' },
    'exact-below': { type: 'string', arg: 'N', default: String(DEFAULT_ANN_PARAMS.exactBelow), help: 'below this many vectors, search scans them all (no graph)' },
    'segment-docs': { type: 'string', arg: 'N', default: String(DEFAULT_SEGMENT_DOCS), help: 'documents per segment file' },
    upsert: { type: 'boolean', help: 'with --add: replace documents whose id is already there' },
    'skip-empty': { type: 'boolean', help: 'skip documents with no text instead of failing' },
    to: { type: 'string', arg: 'opensearch://HOST:PORT/INDEX', help: 'load --corpus into this OpenSearch index instead of a collection' },
    shards: { type: 'string', arg: 'N', help: 'with --to: primary shards of a new index (default 1)' },
    replicas: { type: 'string', arg: 'N', help: 'with --to: replicas of each shard (default 0)' },
    'bm25-k1': { type: 'string', arg: 'K1', help: "with --to: the index's BM25 k1 (default 0.9, Winnow's; OpenSearch's own is 1.2)" },
    'bm25-b': { type: 'string', arg: 'B', help: "with --to: the index's BM25 b (default 0.4; OpenSearch's own is 0.75)" },
    'batch-docs': { type: 'string', arg: 'N', help: 'with --to: documents per _bulk request (default 500)' },
    limit: { type: 'string', arg: 'N', help: 'with --to: stop after reading N documents (a later run resumes)' },
  },
});

/** `winnow index`: create a collection or change one; returns the exit code. */
export async function indexCommand(args: string[]): Promise<number> {
  const { values: v, positionals, given } = parseCommand(args, INDEX_COMMAND);
  if (v.help) return showHelp(INDEX_COMMAND);
  const USAGE = helpText(INDEX_COMMAND);
  if (v.to !== undefined) return openSearchIndexCommand(v, given, positionals, USAGE);
  const [name, ...ids] = positionals;
  if (!name) throw new WinnowError('usage', 'missing collection NAME', USAGE);
  const actions = (['corpus', 'add', 'update', 'delete', 'info', 'verify', 'repair', 'add-model'] as const).filter((a) => v[a] !== undefined && v[a] !== false);
  if (actions.length !== 1) throw new WinnowError('usage', 'give exactly one of --corpus, --add, --update, --delete, --add-model, --info, --verify, --repair', USAGE);
  const action = actions[0];
  if (ids.length > 0 && action !== 'delete') throw new WinnowError('usage', `unexpected arguments: ${ids.join(' ')}`, USAGE);
  const dir = collectionDir(name);
  const lockTimeoutMs = seconds(v['lock-timeout'], 'lock-timeout') * 1000;

  if (action === 'info') {
    const c = Collection.open(dir);
    printInfo(c);
    c.close();
    return 0;
  }
  if (action === 'verify') return verifyCommand(dir);
  if (action === 'repair') {
    const r = repairCollection(dir, { timeoutMs: lockTimeoutMs });
    for (const s of r.recovered) console.log(`recovered segment ${s.segment}: ${s.live} of ${s.docs} documents live (checked by ${s.how === 'seal' ? "its seal's sha256 and its structure" : 'its structure only: it has no seal'})`);
    for (const s of r.skipped) console.log(`skipped ${s.file}: ${s.reason} (left in place)`);
    if (r.duplicates) console.log(`${r.duplicates} older copies of ids found in more than one segment were left out (the newest copy is kept)`);
    console.log(`${path.basename(dir)}: manifest rebuilt → generation ${r.generation}, ${r.documents} documents in ${r.recovered.length} segments`);
    return 0;
  }
  if (action === 'corpus') {
    const embedder = v.model ? await loadEmbedder(v.model) : undefined;
    if (v.quantization !== 'f32' && v.quantization !== 'f16' && v.quantization !== 'i8') throw new WinnowError('usage', '--quantization is f32, f16 or i8');
    const ann: AnnParams = {
      m: intArg(v.m, 'm', 2),
      efConstruction: intArg(v['ef-construction'], 'ef-construction'),
      efSearch: intArg(v['ef-search'], 'ef-search'),
      exactBelow: intArg(v['exact-below'], 'exact-below', 0),
      quantization: v.quantization,
    };
    const c = Collection.create(dir, {
      name: path.basename(dir),
      lockTimeoutMs,
      embedder,
      // A folder path is recorded absolute so the collection finds its model from any directory.
      modelRef: v.model && existsSync(v.model) ? path.resolve(v.model) : v.model,
      ann,
      segmentDocs: intArg(v['segment-docs'], 'segment-docs'),
    });
    const t0 = Date.now();
    let report: WriteReport;
    try {
      report = await c.add(readDocs(v.corpus!), { skipEmpty: v['skip-empty'], upsert: v.upsert, progress: true });
    } catch (e) {
      // A failed first build leaves no half-made collection behind to trip the next attempt;
      // only the collection's own files go (create refused any folder with others in it).
      c.close();
      Collection.remove(dir);
      throw e;
    }
    printReport(c, report, Date.now() - t0);
    c.close();
    return 0;
  }
  if (!existsSync(path.join(dir, 'manifest.json'))) {
    throw new WinnowError('not_found', `no collection "${name}" (${dir})`, 'create it first with `winnow index NAME --corpus FILE`');
  }
  readManifest(dir);
  const c = await openCollection(dir, { lockTimeoutMs, forWrite: true });
  const t0 = Date.now();
  if (action === 'add-model') {
    const ref = v['add-model']!;
    const embedder = await loadEmbedder(ref);
    // A folder path is recorded absolute so later writes find the model from any directory.
    const r = await c.addModel(embedder, existsSync(ref) ? path.resolve(ref) : ref, { progress: true });
    console.log(`${c.name}: stored vectors of ${embedder.id} (dim ${embedder.dim}) for ${r.documents} documents in ${r.segments} segments in ${((Date.now() - t0) / 1000).toFixed(1)}s → generation ${r.generation}`);
    c.close();
    return 0;
  }
  let report: WriteReport;
  if (action === 'add') report = await c.add(readDocs(v.add!), { upsert: v.upsert, skipEmpty: v['skip-empty'], progress: true });
  else if (action === 'update') report = await c.update(readDocs(v.update!), { progress: true });
  else {
    if (ids.length === 0) throw new WinnowError('usage', '--delete needs at least one document id', USAGE);
    report = await c.delete(ids);
  }
  printReport(c, report, Date.now() - t0);
  c.close();
  return 0;
}

type IndexFlags = ReturnType<typeof parseCommand<(typeof INDEX_COMMAND)['flags']>>['values'];

/** `winnow index --to opensearch://...`: bulk-loads a corpus into an OpenSearch index. */
async function openSearchIndexCommand(v: IndexFlags, given: Set<string>, positionals: string[], usage: string): Promise<number> {
  if (positionals.length) throw new WinnowError('usage', `--to takes no collection NAME (got ${positionals.join(' ')})`, usage);
  if (!v.corpus) throw new WinnowError('usage', '--to needs --corpus FILE', usage);
  for (const flag of ['add', 'update', 'delete', 'add-model', 'info', 'verify', 'repair', 'quantization', 'exact-below', 'segment-docs', 'ef-search', 'upsert', 'lock-timeout']) {
    if (given.has(flag)) throw new WinnowError('usage', `--${flag} is for collections, not with --to`, usage);
  }
  const target = parseOpenSearchTarget(v.to!, '--to');
  const embedder = v.model ? await loadEmbedder(v.model) : undefined;
  const corpus = v.corpus === '-' ? undefined : corpusPath(v.corpus);
  const report = await loadOpenSearch({
    to: target,
    docs: readDocs(v.corpus),
    expectedCount: corpus ? await countLines(corpus) : 0,
    embedder,
    bm25: { k1: numFlag(v['bm25-k1'], 'bm25-k1'), b: numFlag(v['bm25-b'], 'bm25-b') },
    shards: v.shards === undefined ? undefined : intArg(v.shards, 'shards', 1),
    replicas: v.replicas === undefined ? undefined : intArg(v.replicas, 'replicas', 0),
    hnsw: { m: given.has('m') ? intArg(v.m, 'm', 2) : undefined, efConstruction: given.has('ef-construction') ? intArg(v['ef-construction'], 'ef-construction') : undefined },
    batchDocs: v['batch-docs'] === undefined ? undefined : intArg(v['batch-docs'], 'batch-docs'),
    limit: v.limit === undefined ? undefined : intArg(v.limit, 'limit'),
    skipEmpty: v['skip-empty'],
    progress: true,
  });
  const parts = [`indexed ${report.indexed}`];
  if (report.skippedExisting) parts.push(`skipped ${report.skippedExisting} already present`);
  if (report.skippedEmpty) parts.push(`skipped ${report.skippedEmpty} empty`);
  console.log(`${targetLabel(target)}: ${report.created ? 'created, ' : ''}${parts.join(', ')} in ${(report.ms / 1000).toFixed(1)}s → ${report.count} documents`);
  return 0;
}

function corpusPath(source: string): string {
  if (!existsSync(source)) throw new WinnowError('not_found', `corpus not found: ${source}`);
  return statSync(source).isDirectory() ? path.join(source, 'corpus.jsonl') : source;
}

/** Lines in a file, for the progress bar's total (one document per line). */
async function countLines(file: string): Promise<number> {
  let n = 0;
  for await (const chunk of createReadStream(file)) for (const byte of chunk as Buffer) if (byte === 10) n++;
  return n;
}

function seconds(value: string, flag: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new WinnowError('usage', `--${flag} needs a number of seconds >= 0, got "${value}"`);
  return n;
}

/** Hashes every file of the current generation, ignoring the cache; non-zero exit on damage. */
function verifyCommand(dir: string): number {
  const m = readManifest(dir);
  const checks = checkFiles(dir, m.files, false);
  const bad = checks.filter((c) => c.status !== 'ok');
  for (const c of checks) {
    const status = c.status === 'ok' ? 'ok' : c.status === 'missing' ? 'MISSING' : c.status === 'size' ? `DAMAGED (${c.bytes} bytes, manifest says ${m.files[c.name].bytes})` : 'DAMAGED (sha256 differs from the manifest)';
    console.log(`${c.name}: ${status}${c.status === 'ok' ? ` (${c.bytes} bytes)` : ''}`);
  }
  if (bad.length === 0) {
    console.log(`${m.name}: generation ${m.generation}, all ${checks.length} files verified`);
    return 0;
  }
  throw new WinnowError(
    'corrupt_index',
    `collection ${dir}: ${bad.length} of ${checks.length} files damaged or missing: ${bad.map((c) => c.name).join(', ')}`,
    `\`winnow index ${dir} --repair\` rebuilds the manifest from the intact segments (damaged ones are left out); else restore the folder from a backup`,
  );
}

function readDocs(source: string): AsyncIterable<import('../core/types.js').Doc> {
  if (source === '-') return readCorpus('/dev/stdin');
  if (!existsSync(source)) throw new WinnowError('not_found', `corpus not found: ${source}`);
  return readCorpus(statSync(source).isDirectory() ? path.join(source, 'corpus.jsonl') : source);
}

function printReport(c: Collection, r: WriteReport, ms: number): void {
  const parts = [`added ${r.added}`];
  if (r.replaced) parts.push(`replaced ${r.replaced}`);
  if (r.deleted) parts.push(`deleted ${r.deleted}`);
  if (r.skippedEmpty) parts.push(`skipped ${r.skippedEmpty} empty`);
  if (r.merged) parts.push(`merged ${r.merged} segments`);
  console.log(`${c.name}: ${parts.join(', ')} in ${(ms / 1000).toFixed(1)}s → generation ${r.generation}, ${c.size} documents`);
  if (r.missing.length) console.log(`not in the collection: ${r.missing.slice(0, 20).join(', ')}${r.missing.length > 20 ? ` (+${r.missing.length - 20} more)` : ''}`);
}

function printInfo(c: Collection): void {
  const cfg = c.config;
  console.log(`collection ${c.name} (${c.dir})`);
  console.log(`  generation ${c.generation}, ${c.size} live documents in ${c.segmentCount} segments`);
  console.log(`  bm25 k1=${cfg.bm25.k1} b=${cfg.bm25.b} stem=${cfg.stem} stopWords=${cfg.stopWords}`);
  if (cfg.model) {
    console.log(`  model ${cfg.model.id} (dim ${cfg.model.dim}, ref ${cfg.model.ref})`);
    const a = cfg.ann;
    console.log(`  dense: ${c.usesAnn ? `HNSW m=${a.m} efConstruction=${a.efConstruction} efSearch=${a.efSearch} ${a.quantization}` : `exact scan (below ${a.exactBelow} vectors)`}`);
  } else {
    console.log('  no vectors (BM25 only)');
  }
  for (const m of c.storedModels.slice(cfg.model ? 1 : 0)) console.log(`  stored vectors of ${m.id} (dim ${m.dim}, ref ${m.ref}, added with --add-model)`);
}
