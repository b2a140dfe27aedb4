/**
 * `test_queries.jsonl`: queries with their own candidate documents, the shape cascade
 * evaluation scripts take. Field names vary between the tools that write these files, so the
 * common spellings are accepted:
 *
 *   {"query_id"|"qid"|"id"|"_id", "query"|"text", "candidates"|"documents"|"docs"|"passages": [...]}
 *   {"query", "positive"|"positives": [...], "negative"|"negatives": [...]}   (labels 1 and 0)
 *
 * A candidate is a string (its text) or an object with an id (`doc_id`|`id`|`_id`|`docid`,
 * default `<qid>-<index>`), a text (`text`|`document`|`passage`|`content`), an optional
 * `title` and an optional label (`label`|`relevance`|`rel`|`score`). A query without an id
 * gets its line number as id.
 */
import { WinnowError, atLine } from '../../core/errors.js';
import type { Doc, Query } from '../../core/types.js';
import type { Qrels } from '../metrics.js';
import { asObject, idField, jsonType, readJsonl, textField } from './jsonl.js';
import { addQrel } from './trec.js';

const QUERY_ID = ['query_id', 'qid', 'id', '_id'] as const;
const QUERY_TEXT = ['query', 'text'] as const;
const CANDIDATES = ['candidates', 'documents', 'docs', 'passages'] as const;
const POSITIVES = ['positive', 'positives'] as const;
const NEGATIVES = ['negative', 'negatives'] as const;
const DOC_ID = ['doc_id', 'id', '_id', 'docid'] as const;
const DOC_TEXT = ['text', 'document', 'passage', 'content'] as const;
const LABEL = ['label', 'relevance', 'rel', 'score'] as const;

export interface TestQueries {
  queries: Query[];
  /** qid -> candidate doc ids in the order the file gives them. */
  candidates: Map<string, string[]>;
  docs: Map<string, Doc>;
  /** Labels of labelled candidates (positives 1, negatives 0 in the flat shape). */
  qrels: Qrels;
}

function firstArray(obj: Record<string, unknown>, fields: readonly string[], file: string, lineNo: number): unknown[] | undefined {
  for (const f of fields) {
    const v = obj[f];
    if (v === undefined || v === null) continue;
    if (!Array.isArray(v)) throw new WinnowError('bad_input', `${atLine(file, lineNo)}: "${f}" must be an array, got ${jsonType(v)}`);
    return v;
  }
  return undefined;
}

function labelField(obj: Record<string, unknown>, file: string, lineNo: number): number | undefined {
  for (const f of LABEL) {
    const v = obj[f];
    if (v === undefined || v === null) continue;
    if (typeof v === 'boolean') return v ? 1 : 0;
    if (typeof v === 'number' && Number.isFinite(v)) return v;
    throw new WinnowError('bad_input', `${atLine(file, lineNo)}: candidate "${f}" must be a number, got ${jsonType(v)}`);
  }
  return undefined;
}

export async function readTestQueries(file: string): Promise<TestQueries> {
  const queries: Query[] = [];
  const candidates = new Map<string, string[]>();
  const docs = new Map<string, Doc>();
  const docLine = new Map<string, number>();
  const queryLine = new Map<string, number>();
  const qrels: Qrels = new Map();

  for await (const { value, lineNo } of readJsonl(file, 'test queries file')) {
    const obj = asObject(value, file, lineNo);
    const qid = idField(obj, QUERY_ID, file, lineNo) ?? String(lineNo);
    const text = textField(obj, QUERY_TEXT, file, lineNo);
    if (text === undefined) throw new WinnowError('bad_input', `${atLine(file, lineNo)}: no query text (expected "query" or "text")`);
    if (text.trim().length === 0) throw new WinnowError('bad_input', `${atLine(file, lineNo)}: query '${qid}' is empty`);
    const firstLine = queryLine.get(qid);
    if (firstLine !== undefined) {
      throw new WinnowError('bad_input', `${atLine(file, lineNo)}: duplicate query id '${qid}' (first on line ${firstLine})`);
    }
    queryLine.set(qid, lineNo);
    queries.push({ id: qid, text });

    // Each group is (items, label forced by the shape or undefined to read it per candidate).
    const groups: [unknown[], number | undefined][] = [];
    const listed = firstArray(obj, CANDIDATES, file, lineNo);
    if (listed) groups.push([listed, undefined]);
    const pos = firstArray(obj, POSITIVES, file, lineNo);
    if (pos) groups.push([pos, 1]);
    const neg = firstArray(obj, NEGATIVES, file, lineNo);
    if (neg) groups.push([neg, 0]);
    if (groups.length === 0) continue;

    const ids: string[] = [];
    const inQuery = new Set<string>();
    let index = 0;
    for (const [items, forcedLabel] of groups) {
      for (const item of items) {
        let doc: Doc;
        let label = forcedLabel;
        if (typeof item === 'string') {
          doc = { id: `${qid}-${index}`, text: item };
        } else if (item !== null && typeof item === 'object' && !Array.isArray(item)) {
          const c = item as Record<string, unknown>;
          const id = idField(c, DOC_ID, file, lineNo) ?? `${qid}-${index}`;
          const docText = textField(c, DOC_TEXT, file, lineNo);
          if (docText === undefined) {
            throw new WinnowError('bad_input', `${atLine(file, lineNo)}: candidate ${index} of query '${qid}' has no text`);
          }
          const title = textField(c, ['title'], file, lineNo);
          doc = title ? { id, title, text: docText } : { id, text: docText };
          if (forcedLabel === undefined) label = labelField(c, file, lineNo);
        } else {
          throw new WinnowError(
            'bad_input',
            `${atLine(file, lineNo)}: candidate ${index} of query '${qid}' must be a string or an object, got ${jsonType(item)}`,
          );
        }
        index++;
        if (inQuery.has(doc.id)) {
          throw new WinnowError('bad_input', `${atLine(file, lineNo)}: document '${doc.id}' is listed twice for query '${qid}'`);
        }
        inQuery.add(doc.id);
        const known = docs.get(doc.id);
        if (known === undefined) {
          docs.set(doc.id, doc);
          docLine.set(doc.id, lineNo);
        } else if (known.text !== doc.text || (known.title ?? '') !== (doc.title ?? '')) {
          throw new WinnowError(
            'bad_input',
            `${atLine(file, lineNo)}: document '${doc.id}' has a different text than on line ${docLine.get(doc.id)}`,
            'a document id must name one text; give the candidates distinct ids',
          );
        }
        ids.push(doc.id);
        if (label !== undefined) addQrel(qrels, qid, doc.id, label);
      }
    }
    candidates.set(qid, ids);
  }
  return { queries, candidates, docs, qrels };
}
