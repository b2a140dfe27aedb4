/**
 * Lucene's BM25Similarity (Lucene 8+ form), kept apart from postings iteration so the index,
 * the top-k search and the candidate rescoring in `scoreDocs` all share one formula.
 *
 * Every value is rounded to float32 (`Math.fround`) at the same points on every path, so a
 * document scored through the postings and the same document scored from its text give
 * bit-identical numbers.
 */

export interface Bm25Params {
  k1: number;
  b: number;
}

/** Anserini's BEIR defaults (and Lucene's, after its k1 moved from 1.2). */
export const DEFAULT_BM25_PARAMS: Readonly<Bm25Params> = { k1: 0.9, b: 0.4 };

/** idf = ln(1 + (N - df + 0.5) / (df + 0.5)); never negative, unlike the original Robertson form. */
export function idf(docCount: number, df: number): number {
  return Math.fround(Math.log(1 + (docCount - df + 0.5) / (df + 0.5)));
}

/**
 * The weight one query clause multiplies into each matching document: `count` clauses of the
 * same term in a Lucene BooleanQuery add up, so a repeated term counts `count` times.
 */
export function termWeight(docCount: number, df: number, count: number): number {
  return Math.fround(count * idf(docCount, df));
}

/** The document-length part of the tf saturation: k1 * (1 - b + b * dl / avgdl). */
export function lengthNorm(params: Bm25Params, dl: number, avgdl: number): number {
  return Math.fround(params.k1 * (1 - params.b + (params.b * dl) / avgdl));
}

/** tf / (tf + k1 * (1 - b + b * dl / avgdl)), with no (k1 + 1) factor (Lucene 8+). */
export function tfNorm(tf: number, norm: number): number {
  return Math.fround(tf / (tf + norm));
}

/** Adds one clause's contribution to a running document score, rounding like a Float32Array slot. */
export function accumulate(score: number, weight: number, tfn: number): number {
  return Math.fround(score + weight * tfn);
}

/*
 * Lucene stores each document's length in one byte (SmallFloat.intToByte4): exact up to 39,
 * then 4 significant bits of n - 24. Anserini's published runs therefore score with quantised lengths;
 * `quantizeLength` reproduces that for parity runs (see `lossyNorms` in the index options).
 */
const NUM_FREE_VALUES = 24; // 255 - longToInt4(Integer.MAX_VALUE)

function longToInt4(i: number): number {
  const numBits = 32 - Math.clz32(i);
  if (numBits < 4) return i;
  const shift = numBits - 4;
  return ((i >>> shift) & 0x07) | ((shift + 1) << 3);
}

function int4ToLong(i: number): number {
  const bits = i & 0x07;
  const shift = (i >>> 3) - 1;
  return shift === -1 ? bits : (bits | 0x08) * 2 ** shift;
}

/** The length Lucene's BM25 sees for a document of `dl` terms: byte4ToInt(intToByte4(dl)). */
export function quantizeLength(dl: number): number {
  if (dl < NUM_FREE_VALUES) return dl;
  return NUM_FREE_VALUES + int4ToLong(longToInt4(dl - NUM_FREE_VALUES));
}
