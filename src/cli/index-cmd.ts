import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { WinnowError } from '../core/errors.js';
import { readCorpus } from '../eval/io/beir.js';
import { Collection, checkFiles, collectionDir, readManifest, repairCollection, type WriteReport } from '../retrieve/collection/collection.js';
import { openCollection } from '../retrieve/collection/env.js';
import type { AnnParams } from '../retrieve/dense/ann.js';
import { loadEmbedder } from '../retrieve/dense/load.js';
import { intFlag, parseFlags } from './args.js';

const USAGE = `usage:
  winnow index NAME --corpus DIR|FILE|- [--model REF] [--m 16] [--ef-construction 200] [--ef-search 128]
                    [--quantization f16|f32|i8] [--exact-below 20000] [--segment-docs 50000] [--skip-empty]
  winnow index NAME --add FILE|- [--upsert] [--skip-empty]
  winnow index NAME --update FILE|-
  winnow index NAME --delete ID [ID...]
  winnow index NAME --add-model REF
  winnow index NAME --info
  winnow index NAME --verify
  winnow index NAME --repair
Writes wait for another writer up to --lock-timeout SECONDS (default 30; 0 fails at once).

NAME is a collection under $WINNOW_HOME/collections/ (default ~/.cache/winnow), or a path.
Documents are BEIR corpus lines: {"_id", "title"?, "text"}; "-" reads them from stdin.
--corpus creates the collection; --model REF adds document embeddings and an HNSW graph
(REF: a model folder, a cached model reference, or hash:DIM for the test embedder).
Every add, update or delete is one atomic commit: a reader never sees half of it.
A collection owns its folder: it is created only in a new or empty folder, and it only ever
deletes files it wrote. Every open checks each file's sha256 (cached by size, mtime, ctime and
inode); --verify hashes everything again and lists each file; --repair rebuilds a lost or
damaged manifest from the intact segments.
--add-model REF embeds every document with another bi-encoder and stores the vectors per
segment (later writes embed with it too): a \`rerank: REF\` stage over the collection then
reads them instead of embedding candidates, so it costs one query embedding and a dot product
per candidate.`;

const FLAGS = {
  corpus: { type: 'string' },
  add: { type: 'string' },
  update: { type: 'string' },
  delete: { type: 'boolean' },
  info: { type: 'boolean' },
  verify: { type: 'boolean' },
  repair: { type: 'boolean' },
  'add-model': { type: 'string' },
  'lock-timeout': { type: 'string' },
  model: { type: 'string' },
  m: { type: 'string' },
  'ef-construction': { type: 'string' },
  'ef-search': { type: 'string' },
  quantization: { type: 'string' },
  'exact-below': { type: 'string' },
  'segment-docs': { type: 'string' },
  upsert: { type: 'boolean' },
  'skip-empty': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** `winnow index`: create a collection or change one; returns the exit code. */
export async function indexCommand(args: string[]): Promise<number> {
  const { values: v, positionals } = parseFlags(args, FLAGS, USAGE);
  if (v.help) {
    console.log(USAGE);
    return 0;
  }
  const [name, ...ids] = positionals;
  if (!name) throw new WinnowError('usage', 'missing collection NAME', USAGE);
  const actions = (['corpus', 'add', 'update', 'delete', 'info', 'verify', 'repair', 'add-model'] as const).filter((a) => v[a] !== undefined && v[a] !== false);
  if (actions.length !== 1) throw new WinnowError('usage', 'give exactly one of --corpus, --add, --update, --delete, --add-model, --info, --verify, --repair', USAGE);
  const action = actions[0];
  if (ids.length > 0 && action !== 'delete') throw new WinnowError('usage', `unexpected arguments: ${ids.join(' ')}`, USAGE);
  const dir = collectionDir(name);
  const lockTimeoutMs = v['lock-timeout'] === undefined ? undefined : seconds(v['lock-timeout'], 'lock-timeout') * 1000;

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
    const ann: Partial<AnnParams> = {};
    if (v.m !== undefined) ann.m = intFlag(v.m, 'm', 16, 2);
    if (v['ef-construction'] !== undefined) ann.efConstruction = intFlag(v['ef-construction'], 'ef-construction', 200);
    if (v['ef-search'] !== undefined) ann.efSearch = intFlag(v['ef-search'], 'ef-search', 128);
    if (v['exact-below'] !== undefined) ann.exactBelow = intFlag(v['exact-below'], 'exact-below', 20000, 0);
    if (v.quantization !== undefined) {
      if (v.quantization !== 'f32' && v.quantization !== 'f16' && v.quantization !== 'i8') throw new WinnowError('usage', '--quantization is f32, f16 or i8');
      ann.quantization = v.quantization;
    }
    const c = Collection.create(dir, {
      name: path.basename(dir),
      lockTimeoutMs,
      embedder,
      // A folder path is recorded absolute so the collection finds its model from any directory.
      modelRef: v.model && existsSync(v.model) ? path.resolve(v.model) : v.model,
      ann,
      segmentDocs: v['segment-docs'] === undefined ? undefined : intFlag(v['segment-docs'], 'segment-docs', 50000),
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
