import * as fs from 'node:fs';
import { Index, MetricKind, ScalarKind } from 'usearch';
import { intAtLeast } from '../../core/values.js';
import { WinnowError } from '../../core/errors.js';

/**
 * HNSW parameters, as stored in a collection's config. Defaults follow the usual
 * recall/speed point for 384-dimensional sentence embeddings (bench/results/ann.md).
 */
export interface AnnParams {
  /** graph degree (HNSW M; usearch "connectivity") */
  m: number;
  /** candidate list size while inserting */
  efConstruction: number;
  /** candidate list size while searching; at least the k asked for */
  efSearch: number;
  /** how vectors are kept inside the graph: f32, f16 (half the memory) or i8 (a quarter) */
  quantization: 'f32' | 'f16' | 'i8';
  /** below this many live vectors the collection scans exactly instead of building a graph */
  exactBelow: number;
}

export const DEFAULT_ANN_PARAMS: Readonly<AnnParams> = {
  m: 16,
  efConstruction: 200,
  // bench/results/ann.md: efSearch 128 gives recall@10 0.99 at 200k vectors (64 gives 0.97).
  efSearch: 128,
  quantization: 'f16',
  exactBelow: 20_000,
};

const SCALARS: Record<AnnParams['quantization'], ScalarKind> = {
  f32: ScalarKind.F32,
  f16: ScalarKind.F16,
  i8: ScalarKind.I8,
};

export function checkAnnParams(p: AnnParams, where: string): AnnParams {
  const int = (v: number, name: string, min: number): number => intAtLeast(v, `${where}: ${name}`, { min, code: 'bad_input' });
  int(p.m, 'm', 2);
  int(p.efConstruction, 'efConstruction', 1);
  int(p.efSearch, 'efSearch', 1);
  int(p.exactBelow, 'exactBelow', 0);
  if (!(p.quantization in SCALARS)) throw new WinnowError('bad_input', `${where}: quantization must be f32, f16 or i8, got ${p.quantization}`);
  return p;
}

/**
 * An HNSW graph over unit vectors (inner product), keyed by the collection's numeric document
 * keys. usearch was chosen over hnswlib-node by bench/ann.ts: it takes typed arrays without a
 * per-vector JS array copy, inserts on several threads, and stores f16/i8.
 */
export class AnnIndex {
  private constructor(
    private readonly index: Index,
    readonly dim: number,
    readonly params: AnnParams,
  ) {}

  static create(dim: number, params: AnnParams): AnnIndex {
    return new AnnIndex(AnnIndex.make(dim, params), dim, params);
  }

  private static make(dim: number, params: AnnParams): Index {
    return new Index({
      dimensions: dim,
      metric: MetricKind.IP,
      quantization: SCALARS[params.quantization],
      connectivity: params.m,
      expansion_add: params.efConstruction,
      expansion_search: params.efSearch,
      multi: false,
    });
  }

  /** Reads a graph written by `save`; the caller has already checked the file's checksum. */
  static load(file: string, dim: number, params: AnnParams): AnnIndex {
    checkGraphFile(file);
    const index = AnnIndex.make(dim, params);
    try {
      index.load(file);
    } catch (e) {
      throw new WinnowError('corrupt_index', `ANN graph ${file} cannot be read: ${(e as Error).message}`, 'rebuild the collection');
    }
    if (index.dimensions() !== dim) {
      throw new WinnowError('corrupt_index', `ANN graph ${file} has dimension ${index.dimensions()}, the collection says ${dim}`);
    }
    return new AnnIndex(index, dim, params);
  }

  get size(): number {
    return this.index.size();
  }

  /** Adds `keys.length` vectors (row-major). Uses every core: insertion is the slow part. */
  add(keys: BigUint64Array, vectors: Float32Array): void {
    if (keys.length === 0) return;
    if (vectors.length !== keys.length * this.dim) {
      throw new WinnowError('bad_input', `ANN add: ${keys.length} keys but ${vectors.length / this.dim} vectors of dimension ${this.dim}`);
    }
    this.index.add(keys, vectors, 0);
  }

  remove(keys: BigUint64Array): void {
    if (keys.length > 0) this.index.remove(keys);
  }

  /** The best `k` keys for a unit query vector, with inner-product similarity (higher is better). */
  search(query: Float32Array, k: number): { keys: BigUint64Array; scores: Float32Array } {
    const size = this.index.size();
    const kk = Math.min(k, size);
    if (kk <= 0) return { keys: new BigUint64Array(0), scores: new Float32Array(0) };
    const m = this.index.search(query, kk, 1);
    // usearch pads missing results with key 2^64-1 and reports IP as a distance 1 - dot.
    let n = 0;
    while (n < m.keys.length && m.keys[n] !== 0xffffffffffffffffn && Number.isFinite(m.distances[n])) n++;
    const scores = new Float32Array(n);
    for (let i = 0; i < n; i++) scores[i] = 1 - m.distances[i];
    return { keys: m.keys.slice(0, n), scores };
  }

  save(file: string): void {
    this.index.save(file);
  }
}

/**
 * usearch crashes the process (SIGSEGV) on a file that is not one of its graphs, so the layout
 * is checked first: u32 rows, u32 bytes per row, the vector block, then the "usearch" magic.
 * A collection has also checked the file's sha256 by then; this guards direct loads.
 */
function checkGraphFile(file: string): void {
  const bad = (why: string): WinnowError => new WinnowError('corrupt_index', `ANN graph ${file} is not a usearch graph: ${why}`, 'rebuild the collection');
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    throw new WinnowError('not_found', `ANN graph ${file} not found`);
  }
  try {
    const size = fs.fstatSync(fd).size;
    const head = Buffer.alloc(8);
    if (size < 8 || fs.readSync(fd, head, 0, 8, 0) !== 8) throw bad('too short');
    const at = 8 + head.readUInt32LE(0) * head.readUInt32LE(4);
    const magic = Buffer.alloc(7);
    if (at + 7 > size || fs.readSync(fd, magic, 0, 7, at) !== 7 || magic.toString('latin1') !== 'usearch') throw bad('no graph header after the vectors');
  } finally {
    fs.closeSync(fd);
  }
}
