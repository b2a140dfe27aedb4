/**
 * Exact inner-product search over a row-major Float32Array: the reference the ANN index is
 * measured against, and the search used for collections too small to need a graph (a scan of
 * 20k x 384 floats takes a few milliseconds). Vectors are unit length, so inner product is
 * cosine similarity.
 */
export interface VectorHits {
  /** row numbers, best first */
  rows: Int32Array;
  scores: Float32Array;
}

/**
 * The best `k` rows of `matrix` for `query`. `skip(row)` excludes rows (deleted documents)
 * without copying the matrix. Ties go to the lower row number.
 */
export function exactSearch(
  matrix: Float32Array,
  dim: number,
  query: Float32Array,
  k: number,
  skip?: (row: number) => boolean,
): VectorHits {
  const n = Math.floor(matrix.length / dim);
  const kk = Math.max(0, Math.min(k, n));
  const heapScores = new Float32Array(kk);
  const heapRows = new Int32Array(kk);
  let size = 0;
  for (let r = 0, off = 0; r < n; r++, off += dim) {
    if (skip && skip(r)) continue;
    // Four accumulators let the JIT overlap the multiply-adds.
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    let j = 0;
    for (; j + 3 < dim; j += 4) {
      s0 += matrix[off + j] * query[j];
      s1 += matrix[off + j + 1] * query[j + 1];
      s2 += matrix[off + j + 2] * query[j + 2];
      s3 += matrix[off + j + 3] * query[j + 3];
    }
    for (; j < dim; j++) s0 += matrix[off + j] * query[j];
    const s = Math.fround(s0 + s1 + s2 + s3);
    if (size < kk) {
      siftUp(heapScores, heapRows, size++, s, r);
    } else if (kk > 0 && s > heapScores[0]) {
      siftDown(heapScores, heapRows, kk, s, r);
    }
  }
  // Drain the min-heap from the back so the result is best first.
  const rows = new Int32Array(size);
  const scores = new Float32Array(size);
  for (let i = size - 1; i >= 0; i--) {
    rows[i] = heapRows[0];
    scores[i] = heapScores[0];
    const lastS = heapScores[i];
    const lastR = heapRows[i];
    if (i > 0) siftDown(heapScores, heapRows, i, lastS, lastR);
  }
  return { rows, scores };
}

/** Min-heap on (score, then larger row is worse) so equal scores keep the lower row. */
function worse(sa: number, ra: number, sb: number, rb: number): boolean {
  return sa < sb || (sa === sb && ra > rb);
}

function siftUp(hs: Float32Array, hr: Int32Array, i: number, s: number, r: number): void {
  while (i > 0) {
    const p = (i - 1) >> 1;
    if (!worse(s, r, hs[p], hr[p])) break;
    hs[i] = hs[p];
    hr[i] = hr[p];
    i = p;
  }
  hs[i] = s;
  hr[i] = r;
}

/** Replaces the root with (s, r) and restores the heap over the first `n` slots. */
function siftDown(hs: Float32Array, hr: Int32Array, n: number, s: number, r: number): void {
  let i = 0;
  for (;;) {
    const l = 2 * i + 1;
    if (l >= n) break;
    const rr = l + 1;
    const c = rr < n && worse(hs[rr], hr[rr], hs[l], hr[l]) ? rr : l;
    if (!worse(hs[c], hr[c], s, r)) break;
    hs[i] = hs[c];
    hr[i] = hr[c];
    i = c;
  }
  hs[i] = s;
  hr[i] = r;
}
