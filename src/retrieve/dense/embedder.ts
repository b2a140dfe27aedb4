import { createHash } from 'node:crypto';
import { intAtLeast } from '../../core/values.js';
import { WinnowError } from '../../core/errors.js';
import { docText, type Doc } from '../../core/types.js';
import { Analyzer } from '../../text/analyzer.js';

/**
 * What the dense first pass needs from a bi-encoder. Kept this small so the collection does
 * not depend on how a model is run (ONNX, a remote API, a test double). `id` names the model
 * and every setting that changes its vectors; a collection refuses an embedder whose id differs
 * from the one it was built with.
 */
export interface Embedder {
  readonly id: string;
  readonly dim: number;
  /** One vector per document, as a list or one row-major matrix (docs.length x dim). */
  embedDocs(docs: Doc[]): Promise<Float32Array[] | Float32Array>;
  embedQuery(text: string): Promise<Float32Array>;
}

/** Normalises `embedDocs` output to one row-major matrix and checks its shape. */
export function toMatrix(out: Float32Array[] | Float32Array, n: number, dim: number, who: string): Float32Array {
  if (out instanceof Float32Array) {
    if (out.length !== n * dim) {
      throw new WinnowError(
        'model_error',
        `${who} returned ${out.length} numbers for ${n} documents; expected ${n} x ${dim} = ${n * dim}`,
        'the embedder dimension does not match the collection',
      );
    }
    return out;
  }
  if (out.length !== n) throw new WinnowError('model_error', `${who} returned ${out.length} vectors for ${n} documents`);
  const m = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) {
    checkDim(out[i], dim, `${who}: vector ${i}`);
    m.set(out[i], i * dim);
  }
  return m;
}

export function checkDim(v: Float32Array, dim: number, where: string): void {
  if (v.length !== dim) {
    throw new WinnowError(
      'bad_input',
      `${where} has dimension ${v.length}, the collection stores vectors of dimension ${dim}`,
      'embed with the model the collection was built with',
    );
  }
}

/** Scales each row of a row-major matrix to unit length in place (zero rows stay zero). */
export function normalizeRows(m: Float32Array, dim: number): Float32Array {
  for (let off = 0; off < m.length; off += dim) {
    let ss = 0;
    for (let j = 0; j < dim; j++) ss += m[off + j] * m[off + j];
    if (ss === 0) continue;
    const inv = 1 / Math.sqrt(ss);
    for (let j = 0; j < dim; j++) m[off + j] *= inv;
  }
  return m;
}

/**
 * A deterministic bag-of-words embedder: each analysed term is hashed to a few signed
 * dimensions (feature hashing), the vector is L2-normalised. It has no model file, so tests of
 * the collection (updates, crash safety, fusion) do not depend on a model being present; two
 * texts sharing terms get a positive cosine, like a (weak) real bi-encoder.
 */
export class HashEmbedder implements Embedder {
  readonly id: string;
  private readonly analyzer = new Analyzer();

  constructor(
    readonly dim = 64,
    private readonly seed = 0,
  ) {
    intAtLeast(dim, 'hash embedder dimension', { min: 2, code: 'bad_input' });
    this.id = `hash-bow(dim=${dim},seed=${seed})`;
  }

  private embed(text: string, out: Float32Array, off: number): void {
    this.analyzer.forEachTerm(text, (term) => {
      const h = createHash('md5').update(`${this.seed}:${term}`).digest();
      for (let r = 0; r < 2; r++) {
        const slot = h.readUInt32LE(r * 4) % this.dim;
        out[off + slot] += h[8 + r] & 1 ? 1 : -1;
      }
    });
  }

  async embedDocs(docs: Doc[]): Promise<Float32Array> {
    const m = new Float32Array(docs.length * this.dim);
    for (let i = 0; i < docs.length; i++) this.embed(docText(docs[i]), m, i * this.dim);
    return normalizeRows(m, this.dim);
  }

  async embedQuery(text: string): Promise<Float32Array> {
    const v = new Float32Array(this.dim);
    this.embed(text, v, 0);
    return normalizeRows(v, this.dim);
  }
}
