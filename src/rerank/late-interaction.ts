import { WinnowError } from '../core/errors.js';
import { type Costs, TRUNCATED } from '../core/costs.js';
import { docText, type Doc } from '../core/types.js';
import { openModel, type ColbertSettings, type FolderOptions, type ModelFolder } from '../models/folder.js';
import { floatData, lengthSortedBatches, type ModelSession, pickOutput, type RunCounters, type SessionOptions } from '../models/onnx.js';
import type { EncodedBatch, Encoding } from '../models/tokenizer.js';
import { normalizeInPlace } from './bi-encoder.js';
import type { SharedTier } from '../cache/shared-tier.js';
import { EmbeddingCache } from './embedding-cache.js';
import type { Scorer } from './scorer.js';

export interface LateInteractionOptions extends FolderOptions, SessionOptions {
  /** query tokens incl. specials and [MASK] padding; default the model's (32) */
  queryLength?: number;
  /** document tokens incl. specials; default the model's (180) */
  docLength?: number;
  batchSize?: number;
  cacheDir?: string;
  cacheBytes?: number;
  /** document matrices shared with other processes (Redis) */
  sharedCache?: SharedTier;
}

const PUNCTUATION = '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~';

/**
 * ColBERT-style late interaction. The ONNX graph must output projected token embeddings
 * [batch, tokens, dim] (the projection `linear` inside the graph, as the common ONNX exports
 * of colbert-ir/colbertv2.0 and answerai-colbert-small-v1 have it). Queries get a marker
 * after [CLS] and are padded with [MASK] to the query length (query augmentation; the mask
 * embeddings count in MaxSim); documents get their marker and lose punctuation embeddings
 * when the model says so. Score = sum over query tokens of the best cosine in the document.
 */
export class LateInteraction implements Scorer {
  readonly id: string;
  readonly kind = 'similarity' as const;
  readonly dim: number;
  readonly cache: EmbeddingCache;
  private readonly settings: ColbertSettings;
  private readonly queryMarker?: number;
  private readonly docMarker?: number;
  private readonly skip: Set<number>;
  private readonly batchSize: number;
  private readonly output: string;

  private constructor(
    readonly folder: ModelFolder,
    private readonly session: ModelSession,
    options: LateInteractionOptions,
  ) {
    const { name, dims } = pickOutput(session, folder.dir, {
      rank: 3,
      what: 'a late-interaction model',
      needs: 'ColBERT needs token embeddings [batch, tokens, dim]',
    });
    this.output = name;
    this.dim = dims[2];
    const base = folder.colbert ?? { queryLength: 32, docLength: 180, skipPunctuation: true, attendToMaskTokens: false };
    const cap = folder.maxLength;
    this.settings = {
      ...base,
      queryLength: Math.min(options.queryLength ?? base.queryLength, cap),
      docLength: Math.min(options.docLength ?? base.docLength, cap),
    };
    const tok = folder.tokenizer;
    const marker = (t: string | undefined): number | undefined => {
      if (t === undefined) return undefined;
      const id = tok.tokenId(t);
      if (id === undefined) throw new WinnowError('model_error', `${folder.dir}: ColBERT marker token ${t} is not in tokenizer.json`);
      return id;
    };
    this.queryMarker = marker(this.settings.queryMarker);
    this.docMarker = marker(this.settings.docMarker);
    if (tok.maskId === undefined) {
      throw new WinnowError('model_error', `${folder.dir}: the tokenizer has no mask token for ColBERT query augmentation`);
    }
    this.skip = new Set();
    // colbert-ai skips the first token id of each ASCII punctuation character
    if (this.settings.skipPunctuation) for (const c of PUNCTUATION) this.skip.add(tok.ids(c)[0]);
    this.batchSize = options.batchSize ?? 32;
    const s = this.settings;
    const model = [
      folder.id,
      folder.revision ? `rev=${folder.revision}` : '',
      `onnx=${folder.onnxPath.slice(folder.dir.length + 1)}`,
      `dlen=${s.docLength}`,
      `skip=${s.skipPunctuation}`,
    ]
      .filter(Boolean)
      .join('|');
    this.id = `late-interaction:${model}|qlen=${s.queryLength}|attendMask=${s.attendToMaskTokens}`;
    this.cache = new EmbeddingCache({ namespace: `colbert-docs:${model}`, dir: options.cacheDir, maxBytes: options.cacheBytes, shared: options.sharedCache });
  }

  static load(folder: string | ModelFolder, options: LateInteractionOptions = {}): Promise<LateInteraction> {
    return openModel(folder, options, (f, session) => new LateInteraction(f, session, options));
  }

  get counters(): RunCounters {
    return this.session.counters;
  }

  /** Normalised query token embeddings, [queryLength, dim]. */
  async embedQuery(text: string): Promise<Float32Array> {
    const tok = this.folder.tokenizer;
    const n = this.settings.queryLength;
    const e = this.withMarker(text, this.queryMarker, n);
    const real = e.ids.length;
    const batch: EncodedBatch = {
      batch: 1,
      length: n,
      inputIds: new BigInt64Array(n).fill(BigInt(tok.maskId as number)),
      attentionMask: new BigInt64Array(n).fill(this.settings.attendToMaskTokens ? 1n : 0n),
      tokenTypeIds: new BigInt64Array(n),
      lengths: new Int32Array([n]),
    };
    for (let i = 0; i < real; i++) {
      batch.inputIds[i] = BigInt(e.ids[i]);
      batch.attentionMask[i] = 1n;
    }
    const out = floatData((await this.session.run(batch))[this.output]).slice(0, n * this.dim);
    for (let t = 0; t < n; t++) normalizeInPlace(out, t * this.dim, this.dim);
    return out;
  }

  /** Normalised token embeddings of each document without skipped tokens, [tokens, dim] each. */
  async embedDocs(docs: readonly (Doc | string)[], costs?: Costs): Promise<Float32Array[]> {
    const texts = docs.map((d) => (typeof d === 'string' ? d : docText(d)));
    const out: Float32Array[] = new Array(texts.length);
    const missing: number[] = [];
    (await this.cache.getMany(texts)).forEach((v, i) => {
      // whole token rows only: anything else was written by a model of another width
      if (v && v.length % this.dim === 0) out[i] = v;
      else missing.push(i);
    });
    if (missing.length === 0) return out;
    const unique = [...new Set(missing.map((i) => texts[i]))];
    const seqs = unique.map((t) => this.withMarker(t, this.docMarker, this.settings.docLength));
    if (costs) for (const s of seqs) if (s.cut > 0) costs.add(TRUNCATED);
    const fresh = new Map<string, Float32Array>();
    const h = this.dim;
    for (const idx of lengthSortedBatches(seqs.map((s) => s.ids.length), this.batchSize)) {
      const batch = this.folder.tokenizer.pad(Array.from(idx, (i) => seqs[i]));
      const hidden = floatData((await this.session.run(batch))[this.output]);
      for (let r = 0; r < idx.length; r++) {
        const ids = seqs[idx[r]].ids;
        let kept = 0;
        for (const id of ids) if (!this.skip.has(id)) kept++;
        const m = new Float32Array(kept * h);
        let row = 0;
        for (let t = 0; t < ids.length; t++) {
          if (this.skip.has(ids[t])) continue;
          m.set(hidden.subarray((r * batch.length + t) * h, (r * batch.length + t + 1) * h), row * h);
          normalizeInPlace(m, row * h, h);
          row++;
        }
        fresh.set(unique[idx[r]], m);
      }
    }
    for (const i of missing) out[i] = fresh.get(texts[i]) as Float32Array;
    this.cache.setMany([...fresh]);
    return out;
  }

  async score(query: string, docs: readonly Doc[], costs?: Costs): Promise<Float32Array> {
    const q = await this.embedQuery(query);
    const d = await this.embedDocs(docs, costs);
    const out = new Float32Array(docs.length);
    for (let i = 0; i < docs.length; i++) out[i] = maxSim(q, d[i], this.dim);
    return out;
  }

  async close(): Promise<void> {
    await this.session.release();
  }

  /** [CLS] marker text [SEP], text cut so the whole fits `length` */
  private withMarker(text: string, marker: number | undefined, length: number): Encoding {
    const tok = this.folder.tokenizer;
    const ids = tok.ids(text);
    const head = marker === undefined ? 0 : 1;
    const room = Math.max(0, length - tok.singleSpecials - head);
    const body = new Int32Array(head + Math.min(room, ids.length));
    if (marker !== undefined) body[0] = marker;
    body.set(ids.subarray(0, body.length - head), head);
    const e = tok.encodeIds(body);
    e.cut = ids.length - (body.length - head);
    return e;
  }
}

/** Sum over query rows of the largest dot product with any document row. */
export function maxSim(q: Float32Array, d: Float32Array, dim: number): number {
  const nq = q.length / dim;
  const nd = d.length / dim;
  let total = 0;
  for (let i = 0; i < nq; i++) {
    let best = -Infinity;
    const qo = i * dim;
    for (let j = 0; j < nd; j++) {
      let s = 0;
      const o = j * dim;
      for (let k = 0; k < dim; k++) s += q[qo + k] * d[o + k];
      if (s > best) best = s;
    }
    total += nd === 0 ? 0 : best;
  }
  return total;
}
