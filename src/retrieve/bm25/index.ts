import { WinnowError } from '../../core/errors.js';
import { Progress } from '../../core/progress.js';
import { docText, type Doc, type Hit } from '../../core/types.js';
import { Analyzer } from '../../text/analyzer.js';
import { readIndexFile, writeIndexFile, type Bm25Data } from './format.js';
import { MAX_DOCS, TopKCollector } from './topk.js';
import {
  DEFAULT_BM25_PARAMS,
  accumulate,
  lengthNorm,
  quantizeLength,
  termWeight,
  tfNorm,
  type Bm25Params,
} from './similarity.js';

export type { Bm25Params } from './similarity.js';
export { DEFAULT_BM25_PARAMS } from './similarity.js';

export interface Bm25BuildOptions {
  params?: Partial<Bm25Params>;
  /** Number of documents expected, for the progress bar's total and ETA. */
  expectedCount?: number;
  /** Draw a progress bar on stderr (only when it is a terminal). Default true. */
  progress?: boolean;
  /** Porter stemming, default true (Lucene EnglishAnalyzer). */
  stem?: boolean;
  /** Drop Lucene's English stop words, default true. */
  stopWords?: boolean;
  /**
   * Score with document lengths quantised to one byte like Lucene's norms (SmallFloat
   * intToByte4). Default true: on SciFact it reproduces Anserini's flat BM25 nDCG@10 (0.6789)
   * to four digits, where exact lengths give 0.6777; it costs nothing at query time.
   */
  lossyNorms?: boolean;
}

/** Grows like a vector; the build pass appends millions of ints without per-item objects. */
export class IntVec {
  data: Int32Array;
  length = 0;
  constructor(capacity = 1024) {
    this.data = new Int32Array(capacity);
  }
  push(v: number): void {
    if (this.length === this.data.length) {
      const bigger = new Int32Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length++] = v;
  }
  toArray(): Int32Array {
    return this.data.slice(0, this.length);
  }
}

/** A query after analysis: distinct terms in first-occurrence order with their clause weights. */
interface QueryTerms {
  terms: string[];
  termIds: Int32Array; // -1 when the term is not in the index
  weights: Float64Array;
}

/**
 * An in-memory BM25 index over `title + text` as one field (Anserini's "flat" BEIR setting).
 * Postings are one CSR layout of typed arrays; each posting's tf saturation is precomputed when
 * the index is built or loaded, so a query is a weighted sum of a few rows of that matrix (the
 * bm25s idea) into a dense accumulator, followed by top-k selection (topk.ts).
 */
export class Bm25Index {
  readonly params: Bm25Params;
  readonly size: number;
  readonly emptyDocs: number;
  /** Documents with at least one term: Lucene's `docCount`, the N of idf and avgdl. */
  readonly docCount: number;
  readonly avgdl: number;
  readonly lossyNorms: boolean;

  private readonly data: Bm25Data;
  private readonly analyzer: Analyzer;
  private readonly termIds: Map<string, number>;
  private docNumbers: Map<string, number> | undefined;
  /** tf / (tf + k1 * (1 - b + b * dl / avgdl)) per posting, in posting order. */
  private readonly impacts: Float32Array;
  private readonly acc: Float32Array;
  /** The accumulator's bits: a positive float is non-zero exactly when its bits are. */
  private readonly accBits: Int32Array;
  private readonly touched: Int32Array;
  private readonly collector = new TopKCollector();
  private readonly candScores: Float32Array;

  private constructor(data: Bm25Data, termIds?: Map<string, number>, docNumbers?: Map<string, number>) {
    this.data = data;
    this.params = { ...data.params };
    this.size = data.docIds.length;
    this.emptyDocs = data.emptyDocs;
    this.lossyNorms = data.lossyNorms;
    this.docCount = this.size - this.emptyDocs;
    this.avgdl = this.docCount > 0 ? data.sumDocLen / this.docCount : 1;
    this.analyzer = new Analyzer({ stem: data.stem, stopWords: data.stopWords ? undefined : false });
    this.docNumbers = docNumbers;

    if (termIds === undefined) {
      termIds = new Map();
      for (let t = 0; t < data.terms.length; t++) termIds.set(data.terms[t], t);
    }
    this.termIds = termIds;

    const norms = new Float32Array(this.size);
    for (let d = 0; d < this.size; d++) norms[d] = this.normOf(data.docLens[d]);
    const { postingDocs, postingTfs } = data;
    this.impacts = new Float32Array(postingDocs.length);
    for (let p = 0; p < postingDocs.length; p++) this.impacts[p] = tfNorm(postingTfs[p], norms[postingDocs[p]]);

    this.acc = new Float32Array(this.size);
    this.accBits = new Int32Array(this.acc.buffer);
    this.touched = new Int32Array(this.size);
    this.candScores = new Float32Array(this.size);
  }

  /**
   * Indexes a stream of documents without keeping their text: only ids, lengths and
   * (term, tf) pairs survive each document.
   */
  static async build(docs: Iterable<Doc> | AsyncIterable<Doc>, opts: Bm25BuildOptions = {}): Promise<Bm25Index> {
    const params: Bm25Params = { ...DEFAULT_BM25_PARAMS, ...opts.params };
    if (!(params.k1 >= 0) || !(params.b >= 0 && params.b <= 1)) {
      throw new WinnowError('bad_input', `BM25 parameters out of range: k1=${params.k1} (needs >= 0), b=${params.b} (needs 0..1)`);
    }
    const stem = opts.stem ?? true;
    const stopWords = opts.stopWords ?? true;
    const analyzer = new Analyzer({ stem, stopWords: stopWords ? undefined : false });

    const termIds = new Map<string, number>();
    const terms: string[] = [];
    const docIds: string[] = [];
    const docNumbers = new Map<string, number>();
    const docLens = new IntVec();
    const pairTerms = new IntVec(1 << 16);
    const pairTfs = new IntVec(1 << 16);
    const pairEnds = new IntVec();
    const df = new IntVec();
    let tfScratch = new Int32Array(1024);
    const docTerms = new IntVec();
    let dl = 0;
    let emptyDocs = 0;
    let sumDocLen = 0;

    const onTerm = (term: string): void => {
      let id = termIds.get(term);
      if (id === undefined) {
        id = terms.length;
        termIds.set(term, id);
        terms.push(term);
        df.push(0);
        if (id >= tfScratch.length) {
          const bigger = new Int32Array(tfScratch.length * 2);
          bigger.set(tfScratch);
          tfScratch = bigger;
        }
      }
      if (tfScratch[id]++ === 0) docTerms.push(id);
      dl++;
    };

    const progress = opts.progress === false ? undefined : new Progress('bm25 index', opts.expectedCount ?? 0, 'docs');
    const addDoc = (doc: Doc): void => {
      const n = docIds.length;
      if (doc === null || typeof doc !== 'object' || typeof doc.id !== 'string' || typeof doc.text !== 'string') {
        throw new WinnowError('bad_input', `document #${n + 1} has no string "id" and "text"`);
      }
      if (n >= MAX_DOCS) throw new WinnowError('bad_input', `corpus too large for one BM25 index (max ${MAX_DOCS} documents)`);
      const first = docNumbers.get(doc.id);
      if (first !== undefined) {
        throw new WinnowError(
          'bad_input',
          `duplicate document id "${doc.id}" (documents #${first + 1} and #${n + 1})`,
          'document ids must be unique within a corpus',
        );
      }
      docNumbers.set(doc.id, n);
      docIds.push(doc.id);
      dl = 0;
      docTerms.length = 0;
      analyzer.forEachTerm(docText(doc), onTerm);
      for (let i = 0; i < docTerms.length; i++) {
        const id = docTerms.data[i];
        pairTerms.push(id);
        pairTfs.push(tfScratch[id]);
        tfScratch[id] = 0;
        df.data[id]++;
      }
      pairEnds.push(pairTerms.length);
      docLens.push(dl);
      sumDocLen += dl;
      if (dl === 0) emptyDocs++;
      progress?.tick();
    };

    if (Symbol.asyncIterator in docs) {
      for await (const doc of docs as AsyncIterable<Doc>) addDoc(doc);
    } else {
      for (const doc of docs as Iterable<Doc>) addDoc(doc);
    }
    progress?.finish();

    const numPostings = pairTerms.length;
    if (numPostings > 0x7fffffff) {
      throw new WinnowError('bad_input', `corpus too large for one BM25 index: ${numPostings} postings (max 2^31 - 1)`);
    }
    // Counting sort of the (doc, term) pairs by term: documents arrive in order, so each
    // term's postings come out sorted by doc number without a comparison sort.
    const numTerms = terms.length;
    const postingStarts = new Uint32Array(numTerms + 1);
    for (let t = 0; t < numTerms; t++) postingStarts[t + 1] = postingStarts[t] + df.data[t];
    const fill = postingStarts.slice(0, numTerms);
    const postingDocs = new Int32Array(numPostings);
    const postingTfs = new Int32Array(numPostings);
    const lens = docLens.toArray();
    let p = 0;
    for (let d = 0; d < docIds.length; d++) {
      for (const end = pairEnds.data[d]; p < end; p++) {
        const t = pairTerms.data[p];
        const at = fill[t]++;
        postingDocs[at] = d;
        postingTfs[at] = pairTfs.data[p];
      }
    }

    return new Bm25Index(
      {
        params,
        stem,
        stopWords,
        lossyNorms: opts.lossyNorms ?? true,
        docIds,
        docLens: lens,
        terms,
        postingStarts,
        postingDocs,
        postingTfs,
        emptyDocs,
        sumDocLen,
      },
      termIds,
      docNumbers,
    );
  }

  static load(file: string): Bm25Index {
    return new Bm25Index(readIndexFile(file));
  }

  save(file: string): void {
    writeIndexFile(file, this.data);
  }

  has(docId: string): boolean {
    if (this.docNumbers === undefined) {
      // Built on first use: a loaded index that only serves searches never pays for it.
      this.docNumbers = new Map();
      for (let d = 0; d < this.size; d++) this.docNumbers.set(this.data.docIds[d], d);
    }
    return this.docNumbers.has(docId);
  }

  /** The top `k` documents for `queryText`, best first; equal scores go to the earlier-indexed doc. */
  search(queryText: string, k: number, name = 'bm25'): Hit[] {
    const q = this.queryTerms(queryText);
    const kk = Math.min(Math.floor(k), this.size);
    if (!(kk > 0) || q.terms.length === 0) return [];
    const { postingStarts, postingDocs } = this.data;
    const impacts = this.impacts;
    const acc = this.acc;

    let matched = 0;
    for (let i = 0; i < q.termIds.length; i++) {
      const t = q.termIds[i];
      if (t >= 0) matched += postingStarts[t + 1] - postingStarts[t];
    }
    // Few postings: remember which slots were touched instead of scanning all N afterwards.
    const sparse = matched < this.size >>> 3;
    const touched = this.touched;
    let numTouched = 0;

    for (let i = 0; i < q.termIds.length; i++) {
      const t = q.termIds[i];
      if (t < 0) continue;
      const w = q.weights[i];
      // Postings fit int32 (checked at build), so `| 0` lets the JIT keep the counter an int.
      const start = postingStarts[t] | 0;
      const end = postingStarts[t + 1] | 0;
      if (sparse) {
        for (let p = start; p < end; p++) {
          const d = postingDocs[p];
          if (acc[d] === 0) touched[numTouched++] = d;
          acc[d] += w * impacts[p];
        }
      } else {
        for (let p = start; p < end; p++) acc[postingDocs[p]] += w * impacts[p];
      }
    }

    // Select, and leave the accumulator zeroed for the next query.
    const top = this.collector;
    let count: number;
    if (sparse) {
      const candScores = this.candScores;
      if (TopKCollector.needsDocOrder(kk, numTouched)) touched.subarray(0, numTouched).sort();
      for (let i = 0; i < numTouched; i++) {
        const d = touched[i];
        candScores[i] = acc[d];
        acc[d] = 0;
      }
      count = top.fromCandidates(touched, candScores, numTouched, kk);
    } else {
      count = top.fromDense(acc, this.accBits, kk);
      acc.fill(0);
    }
    const { scores, docs } = top;
    const docIds = this.data.docIds;
    const hits: Hit[] = new Array(count);
    for (let i = 0; i < count; i++) {
      const score = scores[i];
      hits[i] = { docId: docIds[docs[i]], score, scores: { [name]: score } };
    }
    return hits;
  }

  /**
   * Scores arbitrary documents against `queryText` with this index's statistics (N, avgdl,
   * df), for BM25 as a reranker over supplied candidates. A query term the index has never
   * seen gets df = 0, the largest idf. For an indexed document it returns its `search` score.
   */
  scoreDocs(queryText: string, docs: Doc[]): Float32Array {
    const q = this.queryTerms(queryText);
    const out = new Float32Array(docs.length);
    if (q.terms.length === 0) return out;
    const slot = new Map<string, number>();
    for (let i = 0; i < q.terms.length; i++) slot.set(q.terms[i], i);
    const tf = new Int32Array(q.terms.length);
    let dl = 0;
    const onTerm = (term: string): void => {
      dl++;
      const i = slot.get(term);
      if (i !== undefined) tf[i]++;
    };
    for (let j = 0; j < docs.length; j++) {
      tf.fill(0);
      dl = 0;
      this.analyzer.forEachTerm(docText(docs[j]), onTerm);
      const norm = this.normOf(dl);
      let score = 0;
      for (let i = 0; i < tf.length; i++) {
        if (tf[i] > 0) score = accumulate(score, q.weights[i], tfNorm(tf[i], norm));
      }
      out[j] = score;
    }
    return out;
  }

  private normOf(dl: number): number {
    return lengthNorm(this.params, this.lossyNorms ? quantizeLength(dl) : dl, this.avgdl);
  }

  private queryTerms(queryText: string): QueryTerms {
    const counts = new Map<string, number>();
    this.analyzer.forEachTerm(queryText, (t) => counts.set(t, (counts.get(t) ?? 0) + 1));
    const terms = [...counts.keys()];
    const termIds = new Int32Array(terms.length);
    const weights = new Float64Array(terms.length);
    const starts = this.data.postingStarts;
    for (let i = 0; i < terms.length; i++) {
      const t = this.termIds.get(terms[i]) ?? -1;
      termIds[i] = t;
      const df = t >= 0 ? starts[t + 1] - starts[t] : 0;
      weights[i] = termWeight(this.docCount, df, counts.get(terms[i])!);
    }
    return { terms, termIds, weights };
  }
}
