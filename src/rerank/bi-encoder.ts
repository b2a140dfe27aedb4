import { type Costs, TRUNCATED } from '../core/costs.js';
import { docText, type Doc } from '../core/types.js';
import { openModel, type FolderOptions, type ModelFolder } from '../models/folder.js';
import { floatData, lengthSortedBatches, type ModelSession, pickOutput, type RunCounters, type SessionOptions } from '../models/onnx.js';
import { EmbeddingCache } from './embedding-cache.js';
import type { Scorer } from './scorer.js';

export interface BiEncoderOptions extends FolderOptions, SessionOptions {
  /** tokens per text; default the model's limit (sentence_bert_config max_seq_length, ...) */
  maxLength?: number;
  batchSize?: number;
  /** default: the model's pooling config (1_Pooling or manifest), else mean */
  pooling?: 'mean' | 'cls';
  /** L2-normalise embeddings; default: whether the model has a Normalize module (or manifest) */
  normalize?: boolean;
  /** text put before queries / documents (e5: `query: ` / `passage: `; bge: its instruction) */
  queryPrefix?: string;
  docPrefix?: string;
  /** `cosine` (default) or raw `dot` product */
  similarity?: 'cosine' | 'dot';
  /** directory of the on-disk document embedding store; memory only if absent */
  cacheDir?: string;
  /** memory budget of the document embedding LRU, bytes */
  cacheBytes?: number;
}

/**
 * A bi-encoder: queries and documents are embedded separately (pooled token embeddings) and
 * compared by cosine or dot product. Document embeddings are cached by content, so a document
 * is embedded once across queries and, with `cacheDir`, across runs.
 */
export class BiEncoder implements Scorer {
  readonly id: string;
  readonly kind = 'similarity' as const;
  readonly dim: number;
  readonly maxLength: number;
  readonly cache: EmbeddingCache;
  private readonly pooling: 'mean' | 'cls';
  private readonly normalize: boolean;
  private readonly queryPrefix: string;
  private readonly docPrefix: string;
  readonly similarity: 'cosine' | 'dot';
  private readonly batchSize: number;
  private readonly output: string;

  private constructor(
    readonly folder: ModelFolder,
    private readonly session: ModelSession,
    options: BiEncoderOptions,
  ) {
    const { name, dims } = pickOutput(session, folder.dir, {
      preferred: 'last_hidden_state',
      rank: 3,
      what: 'an embedding model',
      needs: 'a bi-encoder needs token embeddings [batch, tokens, hidden]',
      hint: 'a [batch, labels] output means a cross-encoder: load it as one (task "cross-encoder")',
    });
    this.output = name;
    this.dim = dims[2];
    this.maxLength = Math.min(options.maxLength ?? folder.maxLength, folder.maxLength);
    this.pooling = options.pooling ?? folder.pooling ?? 'mean';
    this.normalize = options.normalize ?? folder.normalize ?? false;
    this.queryPrefix = options.queryPrefix ?? folder.queryPrefix ?? '';
    this.docPrefix = options.docPrefix ?? folder.docPrefix ?? '';
    this.similarity = options.similarity ?? 'cosine';
    this.batchSize = options.batchSize ?? 32;
    const model = [
      `${folder.id}`,
      folder.revision ? `rev=${folder.revision}` : '',
      `onnx=${folder.onnxPath.slice(folder.dir.length + 1)}`,
      `max=${this.maxLength}`,
      `pool=${this.pooling}`,
      `norm=${this.normalize}`,
    ]
      .filter(Boolean)
      .join('|');
    this.id = `bi-encoder:${model}|qp=${JSON.stringify(this.queryPrefix)}|dp=${JSON.stringify(this.docPrefix)}|sim=${this.similarity}`;
    this.cache = new EmbeddingCache({
      namespace: `embedding:${model}|dp=${JSON.stringify(this.docPrefix)}`,
      dir: options.cacheDir,
      maxBytes: options.cacheBytes,
    });
  }

  static load(folder: string | ModelFolder, options: BiEncoderOptions = {}): Promise<BiEncoder> {
    return openModel(folder, options, (f, session) => new BiEncoder(f, session, options));
  }

  get counters(): RunCounters {
    return this.session.counters;
  }

  /** The query's embedding (query prefix applied), `dim` floats. */
  async embedQuery(text: string): Promise<Float32Array> {
    return (await this.embed([this.queryPrefix + text])).subarray(0, this.dim);
  }

  /**
   * Document embeddings, row-major [docs.length, dim], served from the cache when possible.
   * `stats.truncated` counts documents cut to the max length (embedded ones only).
   */
  async embedDocs(docs: readonly (Doc | string)[], costs?: Costs): Promise<Float32Array> {
    const out = new Float32Array(docs.length * this.dim);
    const texts = docs.map((d) => this.docPrefix + (typeof d === 'string' ? d : docText(d)));
    const missing: number[] = [];
    texts.forEach((t, i) => {
      const v = this.cache.get(t);
      if (v) out.set(v, i * this.dim);
      else missing.push(i);
    });
    if (missing.length === 0) return out;
    const unique = [...new Set(missing.map((i) => texts[i]))];
    const fresh = await this.embed(unique, costs);
    const byText = new Map<string, Float32Array>();
    unique.forEach((t, j) => byText.set(t, fresh.slice(j * this.dim, (j + 1) * this.dim)));
    for (const i of missing) out.set(byText.get(texts[i]) as Float32Array, i * this.dim);
    this.cache.setMany([...byText]);
    return out;
  }

  async score(query: string, docs: readonly Doc[], costs?: Costs): Promise<Float32Array> {
    const q = await this.embedQuery(query);
    const d = await this.embedDocs(docs, costs);
    const out = new Float32Array(docs.length);
    const qq = sqNorm(q, 0, this.dim);
    for (let i = 0; i < docs.length; i++) out[i] = this.pairScore(q, qq, d, i * this.dim, sqNorm(d, i * this.dim, this.dim));
    return out;
  }

  /**
   * The score of query vector `q` (squared norm `qq`) against the document row at `offset`
   * of `m` (squared norm `dd`): one formula for embedded and stored document vectors.
   */
  pairScore(q: Float32Array, qq: number, m: Float32Array, offset: number, dd: number): number {
    let dot = 0;
    for (let k = 0; k < this.dim; k++) dot += q[k] * m[offset + k];
    return this.similarity === 'dot' ? dot : dot / (Math.sqrt(qq * dd) || 1);
  }

  async close(): Promise<void> {
    await this.session.release();
  }

  /** pooled (and maybe normalised) embeddings of texts as given, [texts.length, dim] */
  private async embed(texts: readonly string[], costs?: Costs): Promise<Float32Array> {
    const tok = this.folder.tokenizer;
    const seqs = texts.map((t) => tok.encode(t, this.maxLength));
    if (costs) for (const s of seqs) if (s.cut > 0) costs.add(TRUNCATED);
    const out = new Float32Array(texts.length * this.dim);
    const h = this.dim;
    for (const idx of lengthSortedBatches(seqs.map((s) => s.ids.length), this.batchSize)) {
      const batch = tok.pad(Array.from(idx, (i) => seqs[i]));
      const hidden = floatData((await this.session.run(batch))[this.output]);
      for (let r = 0; r < idx.length; r++) {
        const o = idx[r] * h;
        const rows = this.pooling === 'cls' ? 1 : batch.lengths[r];
        const base = r * batch.length * h;
        // padding is at the end of each row, so the first `lengths[r]` rows are the real tokens
        for (let t = 0; t < rows; t++) for (let k = 0; k < h; k++) out[o + k] += hidden[base + t * h + k];
        if (rows > 1) for (let k = 0; k < h; k++) out[o + k] /= rows;
        if (this.normalize) normalizeInPlace(out, o, h);
      }
    }
    return out;
  }
}

export function sqNorm(v: Float32Array, offset: number, length: number): number {
  let n = 0;
  for (let k = offset, end = offset + length; k < end; k++) n += v[k] * v[k];
  return n;
}

export function normalizeInPlace(v: Float32Array, offset: number, length: number): void {
  let n = 0;
  for (let k = 0; k < length; k++) n += v[offset + k] * v[offset + k];
  // sentence-transformers' Normalize clamps the norm at 1e-12 the same way
  const s = 1 / Math.max(Math.sqrt(n), 1e-12);
  for (let k = 0; k < length; k++) v[offset + k] *= s;
}
