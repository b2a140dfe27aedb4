import { AsyncLocalStorage } from 'node:async_hooks';
import { WinnowError } from '../core/errors.js';
import { Costs } from '../core/costs.js';
import type { Doc, ScoreKind } from '../core/types.js';
import type { WinnowEnv } from '../cascade/env.js';
import { checkScoreCount, type Scorer } from '../rerank/scorer.js';
import type { Cancellation } from './cancel.js';

/**
 * A scorer that can score several queries' documents in one model call (a cross-encoder
 * batches (query, doc) pairs regardless of query). The batcher uses it when present so
 * concurrent requests with different queries share one inference batch; otherwise it merges
 * only calls with the same query and runs the rest one after another.
 */
export interface MultiQueryScorer extends Scorer {
  scoreMany(requests: readonly { query: string; docs: readonly Doc[] }[], costs?: Costs): Promise<Float32Array[]>;
  /**
   * Tokens each (query, doc) pair will be padded from. When the scorer says, a backlog is cut
   * into batches of similar lengths (see `BatcherOptions.lengthBuckets`).
   */
  tokenLengths?(query: string, docs: readonly Doc[]): ArrayLike<number>;
}

export function isMultiQueryScorer(s: Scorer): s is MultiQueryScorer {
  return typeof (s as Partial<MultiQueryScorer>).scoreMany === 'function';
}

/**
 * The request a scoring call belongs to. The server runs each request's cascade inside
 * `requestScope.run(...)`; the batcher reads it to drop queued pairs of a request whose
 * deadline passed or whose client left (the Scorer interface has no place for a cancellation,
 * and should not need one).
 */
export const requestScope = new AsyncLocalStorage<{ cancel: Cancellation }>();

export interface BatcherOptions {
  /** most (query, doc) pairs in one model call */
  maxBatch?: number;
  /** how long the first queued pair waits for company before its batch is sent */
  maxWaitMs?: number;
  /** most pairs waiting (not yet sent to the model); beyond it calls fail with `BackpressureError` */
  maxQueue?: number;
  /** model calls in flight at once; 1 serialises access to a single ONNX session */
  concurrency?: number;
  /**
   * Milliseconds, for timing model calls (default `performance.now`). A test hands in a clock its
   * stub scorer advances, so the measured rate, and what admission control predicts from it, is
   * exact however busy the machine is.
   */
  clock?: () => number;
  /**
   * Default true. When more pairs wait than fit in one batch and the scorer reports token
   * lengths, a batch takes the oldest waiting pair and the pairs (of any request) closest to it
   * in length, instead of the next pairs in arrival order, so a batch pads less. The oldest
   * pair always goes in the next batch, so no pair waits behind pairs that came after it forever.
   */
  lengthBuckets?: boolean;
}

/** The queue is full: the caller should retry later (HTTP 429 + Retry-After). */
export class BackpressureError extends WinnowError {
  constructor(
    readonly scorer: string,
    readonly queued: number,
    readonly maxQueue: number,
    readonly retryAfterSeconds: number,
  ) {
    super('unavailable', `${scorer}: scoring queue is full (${queued} pairs waiting, limit ${maxQueue})`, 'retry after the Retry-After delay');
    this.name = 'BackpressureError';
  }
}

/** A request's deadline passed while its pairs were still waiting. */
export class AbortedError extends WinnowError {
  constructor(scorer: string) {
    super('unavailable', `${scorer}: request aborted before scoring`);
    this.name = 'AbortedError';
  }
}

export interface BatchEvent {
  scorer: string;
  pairs: number;
  requests: number;
  ms: number;
}

interface Pending {
  query: string;
  docs: readonly Doc[];
  scores: Float32Array;
  /** token length of each (query, doc) pair, when the scorer reports them */
  lengths?: ArrayLike<number>;
  /** docs already put into a batch (with length buckets they are taken out of order) */
  taken: Uint8Array;
  /** no doc before this one is still waiting */
  next: number;
  /** docs not yet put into a batch */
  left: number;
  /** docs whose scores came back */
  done: number;
  costs?: Costs;
  /** unsubscribes from the request's cancellation once every pair is in a batch */
  stopListening?: () => void;
  resolve(s: Float32Array): void;
  reject(e: unknown): void;
}

/** Docs of one call that go into a batch, by index (ascending). */
interface Slice {
  p: Pending;
  idx: number[];
}

/**
 * Wraps a scorer so concurrent `score()` calls are merged into batches of at most `maxBatch`
 * pairs; results are routed back to each caller. Batching is continuous: calls that arrive
 * while the model is busy wait for it and go together in the next batch, so merging costs no
 * latency. `maxWaitMs` (default 0) makes an idle model also wait that long for company, which
 * only pays when requests arrive in bursts faster than a batch runs.
 * A large call is split across batches, so no model call exceeds `maxBatch` pairs. The queue
 * is bounded in pairs: a call that would overflow it fails at once with `BackpressureError`
 * rather than waiting unboundedly (an idle queue always accepts one call, however large).
 */
export class BatchingScorer implements Scorer {
  readonly id: string;
  readonly kind: ScoreKind;
  readonly maxBatch: number;
  readonly maxWaitMs: number;
  readonly maxQueue: number;
  readonly concurrency: number;
  readonly lengthBuckets: boolean;
  /** model calls made, and pairs sent, since creation */
  batches = 0;
  pairs = 0;
  private readonly queue: Pending[] = [];
  private queuedPairs = 0;
  private inFlight = 0;
  /** pairs in the model calls under way */
  private inFlightPairs = 0;
  private readonly clock: () => number;
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners: ((e: BatchEvent) => void)[] = [];
  /** recent milliseconds per pair (EWMA over model calls), for Retry-After and admission */
  private msPerPair = 0;

  constructor(
    readonly inner: Scorer,
    opts: BatcherOptions = {},
  ) {
    this.id = inner.id;
    this.kind = inner.kind;
    this.maxBatch = opts.maxBatch ?? 64;
    this.maxWaitMs = opts.maxWaitMs ?? 0;
    this.maxQueue = opts.maxQueue ?? 1024;
    this.concurrency = opts.concurrency ?? 1;
    this.clock = opts.clock ?? (() => performance.now());
    this.lengthBuckets = opts.lengthBuckets ?? true;
    if (!(this.maxBatch >= 1) || !(this.maxWaitMs >= 0) || !(this.maxQueue >= 1) || !(this.concurrency >= 1)) {
      throw new WinnowError('usage', `batcher options out of range: maxBatch=${this.maxBatch}, maxWaitMs=${this.maxWaitMs}, maxQueue=${this.maxQueue}, concurrency=${this.concurrency}`);
    }
  }

  /** pairs waiting to be sent to the model */
  get queueDepth(): number {
    return this.queuedPairs;
  }

  /** measured model throughput (pairs/s, EWMA over recent calls); 0 until the first call */
  get pairsPerSecond(): number {
    return this.msPerPair > 0 ? (1000 * this.concurrency) / this.msPerPair : 0;
  }

  /**
   * How long a call of `pairs` pairs made now would take to come back, from the measured rate:
   * everything ahead of it in the queue, the calls under way (counted whole, since how far they
   * got is unknown) and its own pairs. 0 while nothing has been measured yet.
   */
  predictWaitMs(pairs: number): number {
    return ((this.queuedPairs + this.inFlightPairs + pairs) * this.msPerPair) / this.concurrency;
  }

  onBatch(fn: (e: BatchEvent) => void): void {
    this.listeners.push(fn);
  }

  score(query: string, docs: readonly Doc[], costs?: Costs): Promise<Float32Array> {
    if (docs.length === 0) return Promise.resolve(new Float32Array(0));
    const cancel = requestScope.getStore()?.cancel;
    if (cancel?.cancelled) return Promise.reject(new AbortedError(this.id));
    if (this.queuedPairs > 0 && this.queuedPairs + docs.length > this.maxQueue) {
      const wait = Math.max(1, Math.ceil(((this.queuedPairs * this.msPerPair) / 1000) / this.concurrency));
      return Promise.reject(new BackpressureError(this.id, this.queuedPairs, this.maxQueue, wait));
    }
    const inner = this.inner;
    const lengths = this.lengthBuckets && isMultiQueryScorer(inner) ? inner.tokenLengths?.(query, docs) : undefined;
    return new Promise<Float32Array>((resolve, reject) => {
      const p: Pending = {
        query, docs, scores: new Float32Array(docs.length), lengths, taken: new Uint8Array(docs.length),
        next: 0, left: docs.length, done: 0, costs, resolve, reject,
      };
      p.stopListening = cancel?.onCancel(() => this.abort(p));
      this.queue.push(p);
      this.queuedPairs += docs.length;
      this.schedule();
    });
  }

  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    await this.inner.close?.();
  }

  /** Drops the not-yet-sent part of an aborted call; pairs already in a batch finish unseen. */
  private abort(p: Pending): void {
    const i = this.queue.indexOf(p);
    if (i < 0) return;
    this.queue.splice(i, 1);
    this.queuedPairs -= p.left;
    p.reject(new AbortedError(this.id));
  }

  private schedule(): void {
    if (this.inFlight >= this.concurrency || this.queue.length === 0) return;
    if (this.queuedPairs >= this.maxBatch || this.maxWaitMs === 0) {
      this.flush();
    } else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.flush();
      }, this.maxWaitMs);
    }
  }

  private flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    while (this.inFlight < this.concurrency && this.queue.length > 0) {
      const slices = this.queuedPairs > this.maxBatch && this.queue.every((p) => p.lengths) ? this.takeByLength() : this.takeInOrder();
      let n = 0;
      for (const s of slices) {
        for (const i of s.idx) s.p.taken[i] = 1;
        s.p.left -= s.idx.length;
        while (s.p.next < s.p.docs.length && s.p.taken[s.p.next]) s.p.next++;
        if (s.p.left === 0) s.p.stopListening?.();
        n += s.idx.length;
      }
      for (let i = this.queue.length - 1; i >= 0; i--) if (this.queue[i].left === 0) this.queue.splice(i, 1);
      this.queuedPairs -= n;
      this.inFlight++;
      this.inFlightPairs += n;
      void this.runBatch(slices, n);
    }
  }

  /** The next `maxBatch` waiting pairs in arrival order. */
  private takeInOrder(): Slice[] {
    const slices: Slice[] = [];
    let room = this.maxBatch;
    for (const p of this.queue) {
      if (room === 0) break;
      const idx: number[] = [];
      for (let i = p.next; i < p.docs.length && idx.length < room; i++) if (!p.taken[i]) idx.push(i);
      room -= idx.length;
      slices.push({ p, idx });
    }
    return slices;
  }

  /**
   * `maxBatch` waiting pairs of similar token length: all waiting pairs sorted by (length,
   * arrival), and of the runs of `maxBatch` consecutive ones that hold the oldest pair, the one
   * spanning the fewest lengths. The scorer pads each of its batches to its longest row, so a
   * narrow span is what saves padded tokens.
   */
  private takeByLength(): Slice[] {
    const owner: number[] = [];
    const doc: number[] = [];
    const len: number[] = [];
    this.queue.forEach((p, q) => {
      for (let i = p.next; i < p.docs.length; i++) {
        if (p.taken[i]) continue;
        owner.push(q);
        doc.push(i);
        len.push((p.lengths as ArrayLike<number>)[i]);
      }
    });
    // arrival order is the candidate index, so the sort is by length, then age
    const order = Array.from(len.keys()).sort((a, b) => len[a] - len[b] || a - b);
    const m = this.maxBatch;
    const head = order.indexOf(0);
    let best = Math.max(0, head - m + 1);
    for (let s = best + 1; s <= Math.min(head, order.length - m); s++) {
      if (len[order[s + m - 1]] - len[order[s]] < len[order[best + m - 1]] - len[order[best]]) best = s;
    }
    const chosen = order.slice(best, best + m).sort((a, b) => a - b);
    const slices: Slice[] = [];
    for (const c of chosen) {
      const p = this.queue[owner[c]];
      if (slices.at(-1)?.p === p) slices[slices.length - 1].idx.push(doc[c]);
      else slices.push({ p, idx: [doc[c]] });
    }
    return slices;
  }

  private async runBatch(slices: Slice[], n: number): Promise<void> {
    const t0 = this.clock();
    try {
      const results = await this.scoreSlices(slices);
      slices.forEach((s, i) => checkScoreCount(this.id, results[i].length, s.idx.length));
      slices.forEach((s, i) => {
        s.idx.forEach((d, k) => (s.p.scores[d] = results[i][k]));
        s.p.done += s.idx.length;
        if (s.p.done === s.p.docs.length) s.p.resolve(s.p.scores);
      });
    } catch (e) {
      // One failed batch fails every call with pairs in it; their other slices are dropped.
      for (const s of slices) this.fail(s.p, e);
    } finally {
      const ms = this.clock() - t0;
      this.msPerPair = this.msPerPair === 0 ? ms / n : 0.8 * this.msPerPair + 0.2 * (ms / n);
      this.batches++;
      this.pairs += n;
      const event: BatchEvent = { scorer: this.id, pairs: n, requests: new Set(slices.map((s) => s.p)).size, ms };
      for (const fn of this.listeners) fn(event);
      this.inFlight--;
      this.inFlightPairs -= n;
      this.schedule();
    }
  }

  private fail(p: Pending, e: unknown): void {
    const i = this.queue.indexOf(p);
    if (i >= 0) {
      this.queue.splice(i, 1);
      this.queuedPairs -= p.left;
    }
    p.reject(e); // a later slice's resolve() is then a no-op
  }

  /** One model call for all slices: `scoreMany` if the scorer has it, else one call per distinct query. */
  private async scoreSlices(slices: readonly Slice[]): Promise<Float32Array[]> {
    // Truncation counters are per model call; hand each caller's costs its own share.
    const costs = new Costs();
    let results: Float32Array[];
    if (isMultiQueryScorer(this.inner)) {
      results = await this.inner.scoreMany(slices.map((s) => ({ query: s.p.query, docs: s.idx.map((i) => s.p.docs[i]) })), costs);
    } else {
      results = new Array<Float32Array>(slices.length);
      const byQuery = new Map<string, number[]>();
      slices.forEach((s, i) => {
        const group = byQuery.get(s.p.query);
        if (group) group.push(i);
        else byQuery.set(s.p.query, [i]);
      });
      for (const [query, idx] of byQuery) {
        const docs = idx.flatMap((i) => slices[i].idx.map((d) => slices[i].p.docs[d]));
        const scores = await this.inner.score(query, docs, costs);
        checkScoreCount(this.id, scores.length, docs.length);
        let off = 0;
        for (const i of idx) {
          const len = slices[i].idx.length;
          results[i] = scores.subarray(off, off + len);
          off += len;
        }
      }
    }
    if (results.length !== slices.length) {
      throw new WinnowError('model_error', `${this.id}: scoreMany returned ${results.length} results for ${slices.length} requests`);
    }
    // Costs can't be split exactly per caller; give them to the first caller that counts them.
    const owner = slices.find((s) => s.p.costs)?.p.costs;
    if (owner) {
      owner.addAll(costs);
    }
    return results;
  }
}

/**
 * Wraps the environment's scorers in batchers, one per distinct scorer id, so a model used by
 * several served cascades shares one queue and one batch stream.
 */
export function withBatching(env: WinnowEnv, opts: BatcherOptions): { env: WinnowEnv; batchers: Map<string, BatchingScorer> } {
  const batchers = new Map<string, BatchingScorer>();
  env.wrapScorers((s) => {
    let b = batchers.get(s.id);
    if (!b) {
      b = new BatchingScorer(s, opts);
      batchers.set(s.id, b);
    }
    return b;
  });
  return { env, batchers };
}
