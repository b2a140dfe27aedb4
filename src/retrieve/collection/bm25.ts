import { LRUCache } from 'lru-cache';
import type { Bm25Source } from '../bm25/paged.js';
import { lengthNorm, quantizeLength, termWeight, tfNorm, type Bm25Params } from '../bm25/similarity.js';
import { Analyzer } from '../../text/analyzer.js';

/** One immutable BM25 segment as a search sees it: its index file plus the collection's tombstones. */
export interface Bm25Segment {
  source: Bm25Source;
  /** 1 where the local document is deleted; undefined when none is */
  deleted?: Uint8Array;
}

/** A candidate: its score and where it lives (segment number, local document number). */
export interface SegmentHit {
  seg: number;
  doc: number;
  score: number;
}

/** A query term resolved in every segment: its number there (-1: absent) and its live df. */
interface ResolvedTerm {
  ids: Int32Array;
  df: number;
}

/** document lengths below this share a precomputed norm */
const NORM_TABLE_LENGTHS = 1 << 16;

/** query terms remembered with their per-segment numbers and df; a term costs a few hundred bytes */
const TERM_CACHE_ENTRIES = 50_000;

/**
 * BM25 over several segments with *collection-wide* statistics, so a document scores exactly
 * what a fresh index over the live documents would give it (Lucene gets the same by summing
 * per-segment statistics; here deletes are subtracted too, which Lucene only does at merge):
 * N = live documents with at least one term, avgdl over those, df = live postings of the term.
 * Per-document norms depend on avgdl, so they are computed when the view is opened; the
 * segment files store raw tfs and lengths only. Postings come from each segment's source,
 * which may read them from disk on demand (paged.ts).
 */
export class SegmentedBm25 {
  readonly docCount: number;
  readonly avgdl: number;
  private readonly analyzer: Analyzer;
  private readonly norms: Float32Array[];
  private readonly terms = new LRUCache<string, ResolvedTerm>({ max: TERM_CACHE_ENTRIES });
  private acc: Float32Array;

  constructor(
    readonly segments: readonly Bm25Segment[],
    readonly params: Bm25Params,
    opts: { stem: boolean; stopWords: boolean; lossyNorms: boolean },
  ) {
    this.analyzer = new Analyzer({ stem: opts.stem, stopWords: opts.stopWords ? undefined : false });
    let docCount = 0;
    let sumDocLen = 0;
    let maxDocs = 0;
    for (const s of segments) {
      const lens = s.source.docLens;
      maxDocs = Math.max(maxDocs, lens.length);
      for (let d = 0; d < lens.length; d++) {
        if (s.deleted?.[d] || lens[d] === 0) continue;
        docCount++;
        sumDocLen += lens[d];
      }
    }
    this.docCount = docCount;
    this.avgdl = docCount > 0 ? sumDocLen / docCount : 1;
    // One norm per distinct length, not per document: at ten million documents computing it
    // per document (Lucene's length quantisation included) was a third of opening a collection.
    const norm = (len: number): number => lengthNorm(params, opts.lossyNorms ? quantizeLength(len) : len, this.avgdl);
    const byLength = new Float32Array(NORM_TABLE_LENGTHS).fill(NaN);
    this.norms = segments.map((s) => {
      const lens = s.source.docLens;
      const out = new Float32Array(lens.length);
      for (let d = 0; d < lens.length; d++) {
        const len = lens[d];
        if (len >= NORM_TABLE_LENGTHS) out[d] = norm(len);
        else out[d] = byLength[len] === byLength[len] ? byLength[len] : (byLength[len] = norm(len));
      }
      return out;
    });
    this.acc = new Float32Array(maxDocs);
  }

  private resolve(term: string): ResolvedTerm {
    let r = this.terms.get(term);
    if (r) return r;
    const ids = new Int32Array(this.segments.length);
    let df = 0;
    for (let si = 0; si < this.segments.length; si++) {
      const { source, deleted } = this.segments[si];
      const t = (ids[si] = source.termId(term));
      if (t < 0) continue;
      if (!deleted) {
        df += source.postingCount(t);
        continue;
      }
      const docs = source.postings(t).docs;
      for (let p = 0; p < docs.length; p++) if (!deleted[docs[p]]) df++;
    }
    r = { ids, df };
    this.terms.set(term, r);
    return r;
  }

  /** Live documents containing `term` across every segment. */
  df(term: string): number {
    return this.resolve(term).df;
  }

  /** The `k` best live documents for `queryText`, best first (ties: earlier segment, lower doc). */
  search(queryText: string, k: number): SegmentHit[] {
    const counts = new Map<string, number>();
    this.analyzer.forEachTerm(queryText, (t) => counts.set(t, (counts.get(t) ?? 0) + 1));
    if (counts.size === 0 || k <= 0) return [];
    const terms = [...counts.keys()].map((t) => this.resolve(t));
    const weights = [...counts.entries()].map(([, n], i) => termWeight(this.docCount, terms[i].df, n));
    const top = new HitHeap(k);
    const acc = this.acc;
    for (let si = 0; si < this.segments.length; si++) {
      const { source, deleted } = this.segments[si];
      const norms = this.norms[si];
      const touched: number[] = [];
      for (let i = 0; i < terms.length; i++) {
        const t = terms[i].ids[si];
        if (t < 0) continue;
        const w = weights[i];
        const { docs, tfs } = source.postings(t);
        for (let p = 0; p < docs.length; p++) {
          const d = docs[p];
          if (acc[d] === 0) touched.push(d);
          // Same float32 rounding points as Bm25Index: impact as float32, sum in a float32 slot.
          acc[d] += w * tfNorm(tfs[p], norms[d]);
        }
      }
      for (const d of touched) {
        const s = acc[d];
        acc[d] = 0;
        if (deleted?.[d] || !(s > 0)) continue;
        top.offer(s, si, d);
      }
    }
    return top.drain();
  }
}

/** Bounded min-heap of (score, seg, doc); the root is the worst kept. */
export class HitHeap {
  private readonly hits: SegmentHit[] = [];
  constructor(private readonly k: number) {}

  private static worse(a: SegmentHit, b: SegmentHit): boolean {
    if (a.score !== b.score) return a.score < b.score;
    return a.seg !== b.seg ? a.seg > b.seg : a.doc > b.doc;
  }

  offer(score: number, seg: number, doc: number): void {
    const h = this.hits;
    if (h.length === this.k) {
      const root = h[0];
      if (score < root.score || (score === root.score && !HitHeap.worse(root, { score, seg, doc }))) return;
      let i = 0;
      const item = { score, seg, doc };
      for (;;) {
        const l = 2 * i + 1;
        if (l >= h.length) break;
        const r = l + 1;
        const c = r < h.length && HitHeap.worse(h[r], h[l]) ? r : l;
        if (!HitHeap.worse(h[c], item)) break;
        h[i] = h[c];
        i = c;
      }
      h[i] = item;
      return;
    }
    const item = { score, seg, doc };
    let i = h.length;
    h.push(item);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!HitHeap.worse(item, h[p])) break;
      h[i] = h[p];
      i = p;
    }
    h[i] = item;
  }

  drain(): SegmentHit[] {
    return this.hits.sort((a, b) => (HitHeap.worse(a, b) ? 1 : HitHeap.worse(b, a) ? -1 : 0));
  }
}
