/**
 * Top-k selection over score accumulators (Lucene's "collector", kept apart from the postings
 * iteration in index.ts). Order: score descending, then smaller internal doc number first.
 *
 * Two strategies, picked by how large k is next to the number of candidates n:
 * - small k: a bounded min-heap whose root score is a floor that rejects almost every
 *   candidate with one well-predicted comparison;
 * - large k (top-1000 of a few thousand matches): a heap would re-sift on most offers and a
 *   comparison sort mispredicts half its branches. A log-scale histogram of the float32 bit
 *   patterns cuts the candidates to about k survivors, and a stable LSD radix sort on those
 *   bits orders them; stability keeps equal scores in doc order.
 *
 * All buffers are reused across queries: allocating them per query made a top-1000 selection
 * on SciFact about 1.6x slower.
 */

/*
 * Heap entries are one float64 key: the float32 score widened to float64 leaves the low 29
 * mantissa bits zero, and they get (DOC_MASK - doc), so keys order by score and, for equal
 * scores, put the smaller doc number higher: one comparison instead of two.
 */
const DOC_BITS = 29;
const DOC_MASK = 2 ** DOC_BITS - 1;
const SCORE_MASK = ~DOC_MASK;
/** Every internal doc number must fit the key's spare bits. */
export const MAX_DOCS = DOC_MASK + 1;

const MAX_RADIX_BITS = 11;
/** 256 threshold buckets per octave, 8 octaves below the best score. */
const BUCKET_SHIFT = 15;
const BUCKETS = 2048;

export class TopKCollector {
  /** Results of the last selection, best first, valid for `count` entries. */
  scores = new Float32Array(16);
  docs = new Int32Array(16);

  private heap = new Float64Array(16);
  private heapWords = new Uint32Array(this.heap.buffer);
  private heapSize = 0;
  private heapK = 0;
  private floor = 0;
  private readonly counts = new Int32Array(Math.max(1 << MAX_RADIX_BITS, BUCKETS));
  private inBits: Uint32Array = new Uint32Array(0);
  private candBits: Int32Array = new Int32Array(0);
  private survScores = new Float32Array(16);
  private survDocs = new Int32Array(16);
  private keys = new Uint32Array(16);
  private keys2 = new Uint32Array(16);
  private vals = new Int32Array(16);
  private vals2 = new Int32Array(16);
  private readonly pack = new Float64Array(1);
  private readonly packWords = new Uint32Array(this.pack.buffer);

  /**
   * Best `k` of the positive slots of a dense accumulator (slot = doc number; `accBits` is an
   * Int32Array view of the same memory). Returns the count, which is below k when fewer slots
   * are positive.
   */
  fromDense(acc: Float32Array, accBits: Int32Array, k: number): number {
    const n = acc.length;
    if (k * 16 <= n) {
      this.startHeap(k);
      for (let d = 0; d < n; d++) if (acc[d] >= this.floor) this.offer(acc[d], d);
      return this.drainHeap();
    }
    const thr = this.threshold(accBits, n, k);
    if (thr === 0) return 0;
    this.ensureSurvivors(n);
    const survScores = this.survScores;
    const survDocs = this.survDocs;
    // Branch-free compaction (survival is a coin flip the CPU cannot predict): always write,
    // advance when the bits reach the threshold.
    let m = 0;
    for (let d = 0; d < n; d++) {
      const x = accBits[d];
      survScores[m] = acc[d];
      survDocs[m] = d;
      m += (thr - 1 - x) >>> 31;
    }
    return this.radix(survDocs, survScores, m, Math.min(k, m));
  }

  /**
   * Whether `fromCandidates` needs its candidates in doc order for this k and n: the radix
   * path keeps ties in input order, the heap path compares doc numbers itself.
   */
  static needsDocOrder(k: number, n: number): boolean {
    return Math.min(k, n) * 8 > n;
  }

  /**
   * Best `k` of `n` candidates given as parallel arrays, scores positive, docs ascending when
   * `needsDocOrder(k, n)`. Returns the count.
   */
  fromCandidates(docs: Int32Array, scores: Float32Array, n: number, k: number): number {
    if (!TopKCollector.needsDocOrder(k, n)) {
      k = Math.min(k, n);
      this.startHeap(k);
      for (let i = 0; i < n; i++) if (scores[i] >= this.floor) this.offer(scores[i], docs[i]);
      return this.drainHeap();
    }
    return this.histogram(docs, scores, n, Math.min(k, n));
  }

  private startHeap(k: number): void {
    if (this.heap.length < k) {
      this.heap = new Float64Array(k);
      this.heapWords = new Uint32Array(this.heap.buffer);
    }
    this.heapSize = 0;
    this.heapK = k;
    // Until the heap is full any positive score enters; zero slots never do.
    this.floor = Number.MIN_VALUE;
  }

  private offer(score: number, doc: number): void {
    const h = this.heap;
    this.pack[0] = score;
    this.packWords[0] = (this.packWords[0] & SCORE_MASK) | (DOC_MASK - doc);
    const key = this.pack[0];
    if (this.heapSize < this.heapK) {
      let i = this.heapSize++;
      while (i > 0) {
        const parent = (i - 1) >> 1;
        if (h[parent] <= key) break;
        h[i] = h[parent];
        i = parent;
      }
      h[i] = key;
      if (this.heapSize === this.heapK) this.floor = this.scoreOf(h[0]);
      return;
    }
    if (key <= h[0]) return;
    const n = this.heapSize;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && h[r] < h[l] ? r : l;
      if (h[c] >= key) break;
      h[i] = h[c];
      i = c;
    }
    h[i] = key;
    this.floor = this.scoreOf(h[0]);
  }

  private scoreOf(key: number): number {
    this.pack[0] = key;
    this.packWords[0] &= SCORE_MASK;
    return this.pack[0];
  }

  private drainHeap(): number {
    const m = this.heapSize;
    const h = this.heap;
    sortAscending(h, 0, m - 1);
    this.ensureOut(m);
    const words = this.heapWords;
    for (let i = 0; i < m; i++) {
      const j = m - 1 - i;
      const lo = words[2 * j];
      this.docs[i] = DOC_MASK - (lo & DOC_MASK);
      words[2 * j] = lo & SCORE_MASK;
      this.scores[i] = h[j];
    }
    return m;
  }

  /** Large k over candidate arrays: the same threshold and compaction as `fromDense`. */
  private histogram(docs: Int32Array, scores: Float32Array, n: number, k: number): number {
    if (this.candBits.buffer !== scores.buffer || this.candBits.byteOffset !== scores.byteOffset) {
      this.candBits = new Int32Array(scores.buffer, scores.byteOffset, scores.length);
    }
    const bits = this.candBits;
    const thr = this.threshold(bits, n, k);
    if (thr === 0) return 0;
    this.ensureSurvivors(n);
    const survScores = this.survScores;
    const survDocs = this.survDocs;
    let m = 0;
    for (let i = 0; i < n; i++) {
      const x = bits[i];
      survScores[m] = scores[i];
      survDocs[m] = docs[i];
      m += (thr - 1 - x) >>> 31;
    }
    return this.radix(survDocs, survScores, m, k);
  }

  /**
   * The smallest float32 bit pattern to keep so that at least the best k of `bits[0..n)`
   * survive (0 when nothing is positive). Positive float bit patterns order like the values,
   * so a log-scale histogram (2^(23 - BUCKET_SHIFT) buckets per octave below the maximum)
   * needs integer ops only (bucketing score * (buckets / max) measured 3x slower per pass).
   */
  private threshold(bits: Int32Array, n: number, k: number): number {
    let maxBits = 0;
    for (let i = 0; i < n; i++) if (bits[i] > maxBits) maxBits = bits[i];
    if (maxBits === 0) return 0;
    const top = maxBits >>> BUCKET_SHIFT;
    const last = BUCKETS - 1;
    const counts = this.counts;
    counts.fill(0, 0, BUCKETS);
    for (let i = 0; i < n; i++) counts[Math.min(top - (bits[i] >>> BUCKET_SHIFT), last)]++;
    let cut = 0;
    for (let seen = counts[0]; seen < k && cut < last; seen += counts[++cut]);
    // The last bucket also holds everything far below the maximum: keep every positive score.
    // A bucket at or below the cut means bits >= (top - cut) << BUCKET_SHIFT; never keep zeros.
    return cut === last ? 1 : Math.max(1, (top - cut) << BUCKET_SHIFT);
  }

  private ensureSurvivors(n: number): void {
    if (this.survScores.length < n) {
      this.survScores = new Float32Array(n);
      this.survDocs = new Int32Array(n);
    }
  }

  private radix(docs: Int32Array, scores: Float32Array, n: number, k: number): number {
    if (this.keys.length < n) {
      this.keys = new Uint32Array(n);
      this.keys2 = new Uint32Array(n);
      this.vals = new Int32Array(n);
      this.vals2 = new Int32Array(n);
    }
    // Positive float32 bit patterns order like the values, so best - bits sorts best first.
    if (this.inBits.buffer !== scores.buffer || this.inBits.byteOffset !== scores.byteOffset || this.inBits.length < n) {
      this.inBits = new Uint32Array(scores.buffer, scores.byteOffset, scores.length);
    }
    const bits = this.inBits;
    let keys = this.keys;
    let vals = this.vals;
    let keys2 = this.keys2;
    let vals2 = this.vals2;
    // Keys relative to the best score: survivors of the histogram cut span a narrow range of
    // bit patterns, which may need fewer passes.
    let best = 0;
    for (let i = 0; i < n; i++) if (bits[i] > best) best = bits[i];
    let range = 0;
    for (let i = 0; i < n; i++) {
      const key = best - bits[i];
      keys[i] = key;
      range |= key;
      vals[i] = docs[i];
    }
    // As few passes as the range needs, with digits as narrow as that allows: for n around a
    // thousand, clearing and summing 2^11 counters costs as much as moving the keys.
    const keyBits = 32 - Math.clz32(range);
    const passes = Math.ceil(keyBits / MAX_RADIX_BITS);
    const digitBits = Math.ceil(keyBits / Math.max(passes, 1));
    const radix = 1 << digitBits;
    const mask = radix - 1;
    const counts = this.counts;
    for (let shift = 0; shift < keyBits; shift += digitBits) {
      counts.fill(0, 0, radix);
      for (let i = 0; i < n; i++) counts[(keys[i] >>> shift) & mask]++;
      if (counts[(keys[0] >>> shift) & mask] === n) continue; // one bucket: nothing moves
      let sum = 0;
      for (let b = 0; b < radix; b++) {
        const c = counts[b];
        counts[b] = sum;
        sum += c;
      }
      for (let i = 0; i < n; i++) {
        const key = keys[i];
        const at = counts[(key >>> shift) & mask]++;
        keys2[at] = key;
        vals2[at] = vals[i];
      }
      const tk = keys;
      keys = keys2;
      keys2 = tk;
      const tv = vals;
      vals = vals2;
      vals2 = tv;
    }
    this.ensureOut(k);
    const outBits = new Uint32Array(this.scores.buffer, 0, k);
    for (let i = 0; i < k; i++) {
      outBits[i] = best - keys[i];
      this.docs[i] = vals[i];
    }
    return k;
  }

  private ensureOut(k: number): void {
    if (this.scores.length < k) {
      this.scores = new Float32Array(k);
      this.docs = new Int32Array(k);
    }
  }
}

/** In-place quicksort of the slice [lo, hi]; beat the native typed-array sort on heap contents. */
function sortAscending(a: Float64Array, lo: number, hi: number): void {
  while (hi - lo > 16) {
    const x = a[lo];
    const y = a[(lo + hi) >> 1];
    const z = a[hi];
    const pivot = x < y ? (y < z ? y : x < z ? z : x) : x < z ? x : y < z ? z : y;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        const t = a[i];
        a[i++] = a[j];
        a[j--] = t;
      }
    }
    // Recurse into the smaller side so the stack stays O(log n).
    if (j - lo < hi - i) {
      sortAscending(a, lo, j);
      lo = i;
    } else {
      sortAscending(a, i, hi);
      hi = j;
    }
  }
  for (let i = lo + 1; i <= hi; i++) {
    const v = a[i];
    let j = i - 1;
    while (j >= lo && a[j] > v) {
      a[j + 1] = a[j];
      j--;
    }
    a[j + 1] = v;
  }
}

