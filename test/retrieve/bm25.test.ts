import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import type { Doc } from '../../src/core/types.js';
import { Bm25Index } from '../../src/retrieve/bm25/index.js';

const SCIFACT = path.resolve('../shared/datasets/scifact');

async function* readCorpus(file: string): AsyncGenerator<Doc> {
  const lines = readline.createInterface({ input: fs.createReadStream(file), crlfDelay: Infinity });
  for await (const line of lines) {
    if (line.trim() === '') continue;
    const o = JSON.parse(line) as { _id: string; title?: string; text: string };
    yield { id: o._id, title: o.title, text: o.text };
  }
}

/** Binary-relevance nDCG@10: DCG = sum 1/log2(rank + 1), ideal over the judged relevant docs. */
function ndcgAt10(ranked: string[], relevant: Set<string>): number {
  let dcg = 0;
  for (let i = 0; i < Math.min(10, ranked.length); i++) if (relevant.has(ranked[i])) dcg += 1 / Math.log2(i + 2);
  let ideal = 0;
  for (let i = 0; i < Math.min(10, relevant.size); i++) ideal += 1 / Math.log2(i + 2);
  return ideal > 0 ? dcg / ideal : 0;
}

test('SciFact test nDCG@10 >= 0.675 (Anserini flat BM25: 0.6789)', async (t) => {
  assert.ok(fs.existsSync(SCIFACT), `SciFact not found at ${SCIFACT} (run tests from the repo root)`);
  const index = await Bm25Index.build(readCorpus(path.join(SCIFACT, 'corpus.jsonl')), { expectedCount: 5183 });
  assert.equal(index.size, 5183);
  assert.equal(index.emptyDocs, 0);

  const qrels = new Map<string, Set<string>>();
  const qrelLines = fs.readFileSync(path.join(SCIFACT, 'qrels/test.tsv'), 'utf8').split('\n').slice(1);
  for (const line of qrelLines) {
    if (line.trim() === '') continue;
    const [qid, docId, score] = line.split('\t');
    if (Number(score) <= 0) continue;
    if (!qrels.has(qid)) qrels.set(qid, new Set());
    qrels.get(qid)!.add(docId);
  }
  const queries = fs
    .readFileSync(path.join(SCIFACT, 'queries.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as { _id: string; text: string })
    .filter((q) => qrels.has(q._id));
  assert.equal(queries.length, 300);

  let sum = 0;
  for (const q of queries) sum += ndcgAt10(index.search(q.text, 10).map((h) => h.docId), qrels.get(q._id)!);
  const ndcg = sum / queries.length;
  t.diagnostic(`nDCG@10 = ${ndcg.toFixed(4)}`);
  assert.ok(ndcg >= 0.675, `nDCG@10 ${ndcg.toFixed(4)} < 0.675`);
  // Above Anserini would mean a scoring change worth a look, not a free win.
  assert.ok(ndcg <= 0.685, `nDCG@10 ${ndcg.toFixed(4)} unexpectedly far above Anserini's 0.6789`);
});
