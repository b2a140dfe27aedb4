import { WinnowError } from '../core/errors.js';
import { type Costs, TRUNCATED, WINDOWED } from '../core/costs.js';
import { docText, type Doc, type ScoreKind } from '../core/types.js';
import { openModel, type FolderOptions, type ModelFolder } from '../models/folder.js';
import { floatData, lengthSortedBatches, type ModelSession, pickOutput, type RunCounters, type SessionOptions } from '../models/onnx.js';
import type { Encoding, PairTruncation } from '../models/tokenizer.js';
import { windowStarts } from '../text/windows.js';
import type { Scorer } from './scorer.js';

export type CrossEncoderActivation = 'none' | 'sigmoid' | 'softmax';

export interface PassageWindows {
  /** document tokens per window; default: what the query leaves of the max length */
  size?: number;
  /** tokens between window starts; default half the size */
  stride?: number;
  /** `max` scores every window and keeps the best; `first` keeps only the first window */
  aggregate?: 'max' | 'first';
}

export interface CrossEncoderOptions extends FolderOptions, SessionOptions {
  /** tokens per (query, document) pair; default the model's (tokenizer/config) limit */
  maxLength?: number;
  /** pairs per model call; default 32 */
  batchSize?: number;
  /** default `keep_query`: cut the document, never the query unless it alone overflows */
  truncation?: PairTruncation;
  /**
   * `none` (default) gives logits: the single logit, or logit(1) - logit(0) for 2-label
   * models, which is the log-odds of the positive class. `sigmoid` (1 label) and `softmax`
   * (2 labels, positive class = label 1) give probabilities.
   */
  activation?: CrossEncoderActivation;
  /** split long documents into passage windows instead of cutting them */
  windows?: PassageWindows;
}

/**
 * A cross-encoder over ONNX Runtime: each (query, document) pair goes through the model
 * together. Pairs are sorted by token length and padded per batch only to the longest row.
 */
export class CrossEncoder implements Scorer {
  readonly id: string;
  readonly kind: ScoreKind;
  readonly maxLength: number;
  private readonly batchSize: number;
  private readonly truncation: PairTruncation;
  private readonly activation: CrossEncoderActivation;
  private readonly labels: number;
  private readonly output: string;

  private constructor(
    readonly folder: ModelFolder,
    private readonly session: ModelSession,
    private readonly options: CrossEncoderOptions,
  ) {
    const { name, dims } = pickOutput(session, folder.dir, {
      preferred: 'logits',
      rank: 2,
      what: 'a cross-encoder',
      needs: 'a cross-encoder outputs logits [batch, labels]',
      hint: 'token embeddings ([batch, tokens, hidden]) mean an embedding model: use it as a bi-encoder (task "embedding")',
    });
    this.output = name;
    this.labels = dims[1];
    this.maxLength = Math.min(options.maxLength ?? folder.maxLength, folder.maxLength);
    this.batchSize = options.batchSize ?? 32;
    this.truncation = options.truncation ?? 'keep_query';
    this.activation = options.activation ?? 'none';
    if (this.labels > 2) {
      throw new WinnowError('model_error', `${folder.dir}: ${this.labels} labels; a relevance cross-encoder has 1 or 2`);
    }
    const wanted = this.labels === 1 ? 'sigmoid' : 'softmax';
    if (this.activation !== 'none' && this.activation !== wanted) {
      throw new WinnowError(
        'usage',
        `activation ${this.activation} does not fit a ${this.labels}-label cross-encoder (${folder.dir})`,
        `use activation "${wanted}" or "none"`,
      );
    }
    const manifestKind = folder.manifest?.scoreKind;
    this.kind = this.activation !== 'none' ? 'probability' : manifestKind === 'probability' ? 'probability' : 'logit';
    const w = options.windows;
    this.id = [
      `cross-encoder:${folder.id}`,
      folder.revision ? `rev=${folder.revision}` : '',
      `onnx=${folder.onnxPath.slice(folder.dir.length + 1)}`,
      `max=${this.maxLength}`,
      `trunc=${this.truncation}`,
      w ? `windows=${w.size ?? 'auto'}/${w.stride ?? 'auto'}/${w.aggregate ?? 'max'}` : '',
      `act=${this.activation}`,
    ]
      .filter(Boolean)
      .join('|');
  }

  static load(folder: string | ModelFolder, options: CrossEncoderOptions = {}): Promise<CrossEncoder> {
    return openModel(folder, options, (f, session) => new CrossEncoder(f, session, options));
  }

  /** model calls and sequences so far (shared by every user of the session) */
  get counters(): RunCounters {
    return this.session.counters;
  }

  async score(query: string, docs: readonly Doc[], costs?: Costs): Promise<Float32Array> {
    const seqs: Encoding[] = [];
    const owner: number[] = [];
    this.encodeRequest(query, docs, 0, seqs, owner, costs);
    return this.reduce(await this.run(seqs), seqs.length, owner, docs.length);
  }

  /**
   * Scores several queries' documents in shared model calls: every (query, doc) pair of every
   * request goes into one length-sorted batch stream, so a server can merge concurrent
   * requests with different queries. Equal to calling `score` per request (up to float
   * rounding of different batch paddings).
   */
  async scoreMany(requests: readonly { query: string; docs: readonly Doc[] }[], costs?: Costs): Promise<Float32Array[]> {
    const seqs: Encoding[] = [];
    const owner: number[] = [];
    let total = 0;
    for (const r of requests) {
      this.encodeRequest(r.query, r.docs, total, seqs, owner, costs);
      total += r.docs.length;
    }
    const all = this.reduce(await this.run(seqs), seqs.length, owner, total);
    const out: Float32Array[] = [];
    let o = 0;
    for (const r of requests) {
      out.push(all.subarray(o, o + r.docs.length));
      o += r.docs.length;
    }
    return out;
  }

  /**
   * Tokens each (query, doc) pair will run as (special tokens included, cut to the max length;
   * a windowed document counts as one window). The server's batcher groups pairs by it; the
   * token ids are memoised, so the later `scoreMany` does not tokenise again.
   */
  tokenLengths(query: string, docs: readonly Doc[]): Int32Array {
    const tok = this.folder.tokenizer;
    const q = tok.ids(query).length + tok.pairSpecials;
    return Int32Array.from(docs, (d) => Math.min(this.maxLength, q + tok.ids(docText(d)).length));
  }

  /** appends the sequences of one request's pairs; `owner` maps each to doc `base + i` */
  private encodeRequest(query: string, docs: readonly Doc[], base: number, seqs: Encoding[], owner: number[], costs?: Costs): void {
    const tok = this.folder.tokenizer;
    const q = tok.ids(query);
    const budget = this.maxLength - tok.pairSpecials;
    const w = this.options.windows;
    for (let i = 0; i < docs.length; i++) {
      const d = tok.ids(docText(docs[i]));
      const room = Math.max(1, budget - q.length);
      if (!w || d.length <= room || q.length >= budget) {
        const e = tok.encodePairIds(q, d, this.maxLength, this.truncation);
        if (e.cut > 0 && costs) costs.add(TRUNCATED);
        seqs.push(e);
        owner.push(base + i);
        continue;
      }
      const size = Math.min(w.size ?? room, room);
      const starts = w.aggregate === 'first' ? new Int32Array([0]) : windowStarts(d.length, { size, stride: w.stride ?? Math.max(1, size >> 1) });
      if (costs) {
        if (starts.length > 1) costs.add(WINDOWED);
        else costs.add(TRUNCATED);
      }
      for (const s of starts) {
        seqs.push(tok.encodePairIds(q, d.subarray(s, s + size), this.maxLength, this.truncation));
        owner.push(base + i);
      }
    }
  }

  /** one score per document: the best of its sequences (windows) */
  private reduce(raw: Float32Array, n: number, owner: readonly number[], docs: number): Float32Array {
    const out = new Float32Array(docs).fill(-Infinity);
    for (let j = 0; j < n; j++) if (raw[j] > out[owner[j]]) out[owner[j]] = raw[j];
    return out;
  }

  async close(): Promise<void> {
    await this.session.release();
  }

  /** one score per sequence, in input order */
  private async run(seqs: Encoding[]): Promise<Float32Array> {
    const scores = new Float32Array(seqs.length);
    const lengths = seqs.map((s) => s.ids.length);
    for (const idx of lengthSortedBatches(lengths, this.batchSize)) {
      const batch = this.folder.tokenizer.pad(Array.from(idx, (i) => seqs[i]));
      const outputs = await this.session.run(batch);
      const logits = floatData(outputs[this.output]);
      for (let r = 0; r < idx.length; r++) scores[idx[r]] = this.activate(logits, r * this.labels);
    }
    return scores;
  }

  private activate(logits: Float32Array, o: number): number {
    if (this.labels === 1) {
      const x = logits[o];
      return this.activation === 'sigmoid' ? 1 / (1 + Math.exp(-x)) : x;
    }
    const diff = logits[o + 1] - logits[o];
    // softmax over two labels is the sigmoid of their difference
    return this.activation === 'softmax' ? 1 / (1 + Math.exp(-diff)) : diff;
  }
}
