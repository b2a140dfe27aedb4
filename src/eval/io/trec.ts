import { promises as fsp } from 'node:fs';
import { WinnowError, atLine } from '../../core/errors.js';
import type { Ranking } from '../../core/types.js';
import type { Qrels, Run } from '../metrics.js';
import { readLines } from './lines.js';

const WS = /\s/;

/**
 * Splits a line on runs of spaces and tabs. A hand-written scan: `trim().split(/\s+/)` was
 * the larger part of reading a million-line run.
 */
function fields(text: string): string[] {
  const out: string[] = [];
  const n = text.length;
  let i = 0;
  while (i < n) {
    let c = text.charCodeAt(i);
    while (i < n && (c === 32 || c === 9 || c === 11 || c === 12 || c === 13)) c = text.charCodeAt(++i);
    if (i >= n) break;
    const start = i;
    while (i < n && c !== 32 && c !== 9 && c !== 11 && c !== 12 && c !== 13) c = text.charCodeAt(++i);
    out.push(text.slice(start, i));
  }
  return out;
}

/**
 * Reads a TREC run (`qid Q0 docid rank score [tag]`). The rank column is ignored, as trec_eval
 * ignores it: order comes from the scores (see `sortRunTrecEval`). A (qid, docid) pair that
 * appears twice keeps the last score, which is what ir_measures does.
 */
export async function readRun(file: string): Promise<Run> {
  const run: Run = new Map();
  for await (const { text, lineNo } of readLines(file, 'run file')) {
    const f = fields(text);
    if (f.length < 5 || f.length > 6) {
      throw new WinnowError(
        'bad_input',
        `${atLine(file, lineNo)}: expected 'qid Q0 docid rank score tag', got ${f.length} fields`,
      );
    }
    const score = Number(f[4]);
    if (Number.isNaN(score) || f[4].length === 0) {
      throw new WinnowError('bad_input', `${atLine(file, lineNo)}: score '${f[4]}' is not a number`);
    }
    let docs = run.get(f[0]);
    if (!docs) run.set(f[0], (docs = new Map()));
    docs.set(f[2], score);
  }
  return run;
}

/** Parses a judgement the way trec_eval and ir_measures require: an integer. */
export function parseRelevance(s: string, file: string, lineNo: number): number {
  const rel = Number(s);
  if (!Number.isInteger(rel) || s.length === 0) {
    throw new WinnowError('bad_input', `${atLine(file, lineNo)}: relevance '${s}' is not an integer`);
  }
  return rel;
}

/**
 * Reads TREC qrels (`qid iter docid rel`). A repeated (qid, docid) keeps the last value, as in
 * ir_measures. Judgements of 0 and below are kept: they make a document judged.
 */
export async function readQrels(file: string): Promise<Qrels> {
  const qrels: Qrels = new Map();
  for await (const { text, lineNo } of readLines(file, 'qrels file')) {
    const f = fields(text);
    if (f.length !== 4) {
      throw new WinnowError('bad_input', `${atLine(file, lineNo)}: expected 'qid iter docid rel', got ${f.length} fields`);
    }
    addQrel(qrels, f[0], f[2], parseRelevance(f[3], file, lineNo));
  }
  return qrels;
}

export function addQrel(qrels: Qrels, qid: string, docId: string, rel: number): void {
  let docs = qrels.get(qid);
  if (!docs) qrels.set(qid, (docs = new Map()));
  docs.set(docId, rel);
}

function checkToken(value: string, what: string): void {
  if (value.length === 0 || WS.test(value)) {
    throw new WinnowError(
      'bad_input',
      `cannot write a TREC run: ${what} '${value}' is empty or contains whitespace`,
      'TREC files are whitespace separated; rename the id',
    );
  }
}

/**
 * Writes rankings as a TREC run, ranks 1.. in the given hit order. Scores are written with
 * `String(score)`, the shortest text that reads back to the same double, so ties and near
 * ties survive (a fixed `%.6f` would merge 0.1234561 and 0.1234562). Note trec_eval re-sorts
 * by score and breaks ties by doc id descending, so a file whose tied hits are in another
 * order is evaluated in trec_eval's order, not in the written one.
 */
export async function writeRun(file: string, rankings: readonly Ranking[], tag = 'winnow'): Promise<void> {
  checkToken(tag, 'run tag');
  const handle = await fsp.open(file, 'w').catch((err: NodeJS.ErrnoException) => {
    throw new WinnowError('bad_input', `cannot write run file ${file}: ${err.message}`);
  });
  try {
    let buf = '';
    for (const ranking of rankings) {
      const qid = ranking.query.id;
      checkToken(qid, 'query id');
      const hits = ranking.hits;
      for (let i = 0; i < hits.length; i++) {
        const hit = hits[i];
        if (Number.isNaN(hit.score)) {
          throw new WinnowError('bad_input', `cannot write a TREC run: query '${qid}' doc '${hit.docId}' has score NaN`);
        }
        checkToken(hit.docId, 'doc id');
        buf += `${qid} Q0 ${hit.docId} ${i + 1} ${String(hit.score)} ${tag}\n`;
        if (buf.length >= 1 << 20) {
          await handle.write(buf);
          buf = '';
        }
      }
    }
    if (buf.length > 0) await handle.write(buf);
  } finally {
    await handle.close();
  }
}
