/**
 * BEIR dataset folders: `corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`.
 * The corpus is streamed (`readCorpus`) so an index build never holds the raw file and the
 * parsed documents at once; queries and qrels are small and read whole.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { WinnowError, atLine } from '../../core/errors.js';
import type { Doc, Query } from '../../core/types.js';
import type { Qrels } from '../metrics.js';
import { asObject, idField, readJsonl, textField } from './jsonl.js';
import { readLines } from './lines.js';
import { addQrel, parseRelevance } from './trec.js';

/** Anything that answers membership: a Set, or the keys of a Map via a thin wrapper. */
export interface IdSet {
  has(id: string): boolean;
}

export interface CorpusStats {
  docs: number;
  /** Documents whose text is empty or whitespace (they are still returned). */
  emptyText: number;
  /** Documents without a title or with an empty one (normal for many datasets). */
  emptyTitle: number;
  /** Documents with neither text nor title: nothing can ever match them. */
  emptyBoth: number;
}

/**
 * A streaming corpus read. Iterate it once; afterwards `stats` holds the counts and `ids`
 * the document ids seen (used for duplicate checks and for `checkQrels`).
 */
export class CorpusReader implements AsyncIterable<Doc> {
  readonly stats: CorpusStats = { docs: 0, emptyText: 0, emptyTitle: 0, emptyBoth: 0 };
  /** doc id -> line it was read from; the line lets a duplicate error point at both places. */
  private readonly seen = new Map<string, number>();
  private started = false;

  constructor(readonly file: string) {}

  get ids(): IdSet {
    return this.seen;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Doc> {
    if (this.started) throw new WinnowError('internal', `corpus ${this.file} is being read twice; open a new reader`);
    this.started = true;
    const file = this.file;
    for await (const { value, lineNo } of readJsonl(file, 'corpus file')) {
      const obj = asObject(value, file, lineNo);
      const id = idField(obj, ['_id'], file, lineNo);
      if (id === undefined) throw new WinnowError('bad_input', `${atLine(file, lineNo)}: document has no "_id"`);
      const text = textField(obj, ['text'], file, lineNo);
      if (text === undefined) throw new WinnowError('bad_input', `${atLine(file, lineNo)}: document '${id}' has no "text"`);
      const title = textField(obj, ['title'], file, lineNo);
      const first = this.seen.get(id);
      if (first !== undefined) {
        throw new WinnowError('bad_input', `${atLine(file, lineNo)}: duplicate document id '${id}' (first on line ${first})`);
      }
      this.seen.set(id, lineNo);
      const noText = text.trim().length === 0;
      const noTitle = title === undefined || title.trim().length === 0;
      this.stats.docs++;
      if (noText) this.stats.emptyText++;
      if (noTitle) this.stats.emptyTitle++;
      if (noText && noTitle) this.stats.emptyBoth++;
      yield noTitle ? { id, text } : { id, title, text };
    }
  }

  /** Counts worth telling a person about, as sentences; empty when the corpus looks clean. */
  warnings(): string[] {
    const w: string[] = [];
    const s = this.stats;
    if (s.emptyBoth > 0) w.push(`${this.file}: ${s.emptyBoth} of ${s.docs} documents have no text and no title`);
    if (s.emptyText > s.emptyBoth) {
      w.push(`${this.file}: ${s.emptyText - s.emptyBoth} of ${s.docs} documents have a title but empty text`);
    }
    return w;
  }
}

export function readCorpus(file: string): CorpusReader {
  return new CorpusReader(file);
}

/** Reads BEIR `queries.jsonl` (`{"_id", "text"}`): ids unique, text non-empty. */
export async function readQueries(file: string): Promise<Query[]> {
  const queries: Query[] = [];
  const seen = new Map<string, number>();
  for await (const { value, lineNo } of readJsonl(file, 'queries file')) {
    const obj = asObject(value, file, lineNo);
    const id = idField(obj, ['_id'], file, lineNo);
    if (id === undefined) throw new WinnowError('bad_input', `${atLine(file, lineNo)}: query has no "_id"`);
    const text = textField(obj, ['text'], file, lineNo);
    if (text === undefined) throw new WinnowError('bad_input', `${atLine(file, lineNo)}: query '${id}' has no "text"`);
    if (text.trim().length === 0) throw new WinnowError('bad_input', `${atLine(file, lineNo)}: query '${id}' is empty`);
    const first = seen.get(id);
    if (first !== undefined) {
      throw new WinnowError('bad_input', `${atLine(file, lineNo)}: duplicate query id '${id}' (first on line ${first})`);
    }
    seen.set(id, lineNo);
    queries.push({ id, text });
  }
  return queries;
}

/**
 * Reads BEIR qrels (`query-id<TAB>corpus-id<TAB>score`, with a header line). A repeated pair
 * keeps the last score, as BEIR's loader and ir_measures do.
 */
export async function readQrelsTsv(file: string): Promise<Qrels> {
  const qrels: Qrels = new Map();
  let firstLine = true;
  for await (const { text, lineNo } of readLines(file, 'qrels file')) {
    const f = text.split('\t');
    if (firstLine) {
      firstLine = false;
      if (f[0].trim() === 'query-id') continue;
    }
    if (f.length !== 3) {
      throw new WinnowError(
        'bad_input',
        `${atLine(file, lineNo)}: expected 'query-id<TAB>corpus-id<TAB>score', got ${f.length} tab-separated fields`,
      );
    }
    const qid = f[0].trim();
    const docId = f[1].trim();
    if (!qid || !docId) throw new WinnowError('bad_input', `${atLine(file, lineNo)}: empty query or document id`);
    addQrel(qrels, qid, docId, parseRelevance(f[2].trim(), file, lineNo));
  }
  return qrels;
}

function examples(ids: string[]): string {
  const shown = ids.slice(0, 3).map((id) => `'${id}'`).join(', ');
  return ids.length > 3 ? `${shown}, ...` : shown;
}

/**
 * Warnings, with counts, for qrels that name queries or documents the dataset does not have.
 * A query without text cannot be run, so `winnow eval` leaves such queries out of its means;
 * `evaluate` on a run file counts them as 0, as ir_measures does.
 * Pass `docIds` (e.g. `readCorpus(...).ids` after the read) to check documents too.
 */
export function checkQrels(qrels: Qrels, queryIds: IdSet, docIds?: IdSet): string[] {
  const warnings: string[] = [];
  const unknownQueries: string[] = [];
  let unknownQueryPairs = 0;
  const unknownDocs = new Set<string>();
  let unknownDocPairs = 0;
  let pairs = 0;
  for (const [qid, docs] of qrels) {
    pairs += docs.size;
    if (!queryIds.has(qid)) {
      unknownQueries.push(qid);
      unknownQueryPairs += docs.size;
    }
    if (docIds) {
      for (const docId of docs.keys()) {
        if (!docIds.has(docId)) {
          unknownDocs.add(docId);
          unknownDocPairs++;
        }
      }
    }
  }
  if (unknownQueries.length > 0) {
    warnings.push(
      `qrels name ${unknownQueries.length} of ${qrels.size} queries that are not in the queries file ` +
        `(${unknownQueryPairs} judgements, e.g. ${examples(unknownQueries)}); they are not evaluated`,
    );
  }
  if (unknownDocs.size > 0) {
    warnings.push(
      `qrels name ${unknownDocs.size} documents that are not in the corpus ` +
        `(${unknownDocPairs} of ${pairs} judgements, e.g. ${examples([...unknownDocs])})`,
    );
  }
  return warnings;
}

export interface BeirDataset {
  /** Queries of the split: those with qrels, in queries.jsonl order. */
  queries: Query[];
  qrels: Qrels;
  corpusFile: string;
  warnings: string[];
}

async function listSplits(qrelsDir: string): Promise<string[]> {
  try {
    const names = await fsp.readdir(qrelsDir);
    return names.filter((n) => n.endsWith('.tsv')).map((n) => n.slice(0, -4)).sort();
  } catch {
    return [];
  }
}

/**
 * Loads a BEIR folder's queries and qrels for one split. The corpus is not read (stream it
 * with `readCorpus(corpusFile)`) unless `checkDocs` asks for qrels doc ids to be checked
 * against it, which costs one pass over the corpus.
 */
export async function loadBeir(dir: string, split: string, options: { checkDocs?: boolean } = {}): Promise<BeirDataset> {
  const stat = await fsp.stat(dir).catch(() => undefined);
  if (!stat || !stat.isDirectory()) throw new WinnowError('not_found', `BEIR dataset folder not found: ${dir}`);
  const corpusFile = path.join(dir, 'corpus.jsonl');
  const qrelsDir = path.join(dir, 'qrels');
  const qrelsFile = path.join(qrelsDir, `${split}.tsv`);
  const qrelsStat = await fsp.stat(qrelsFile).catch(() => undefined);
  if (!qrelsStat) {
    const splits = await listSplits(qrelsDir);
    throw new WinnowError(
      'not_found',
      `split '${split}' not found: no ${qrelsFile}`,
      splits.length > 0 ? `splits in ${qrelsDir}: ${splits.join(', ')}` : `${qrelsDir} has no <split>.tsv files`,
    );
  }
  const qrels = await readQrelsTsv(qrelsFile);
  const allQueries = await readQueries(path.join(dir, 'queries.jsonl'));
  const queryIds = new Set(allQueries.map((q) => q.id));
  const queries = allQueries.filter((q) => qrels.has(q.id));
  let docIds: IdSet | undefined;
  const warnings: string[] = [];
  if (options.checkDocs) {
    const corpus = readCorpus(corpusFile);
    for await (const _doc of corpus) {
      // Only the ids are wanted; the reader records them.
    }
    docIds = corpus.ids;
    warnings.push(...corpus.warnings());
  }
  warnings.push(...checkQrels(qrels, queryIds, docIds).map((w) => `${qrelsFile}: ${w}`));
  return { queries, qrels, corpusFile, warnings };
}
