import { availableParallelism } from 'node:os';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { WinnowError } from '../core/errors.js';
import type { EncodedBatch } from './tokenizer.js';

/**
 * ONNX Runtime sessions for transformer encoders. One session per (model file, options) is
 * shared by every stage that uses it, so a cascade that names a model twice loads it once;
 * scorers `release()` their handle and the last one out closes the session.
 */

export interface SessionOptions {
  /** intra-op threads; default: every core */
  threads?: number;
  /** ORT graph optimisation level; default `all` */
  graphOptimization?: 'disabled' | 'basic' | 'extended' | 'all';
}

/** Batch, sequence and token counts, bumped on every run (tests, traces and benchmarks read them). */
export interface RunCounters {
  runs: number;
  sequences: number;
  /** real (unpadded) tokens, and tokens including each batch's padding: their ratio is the waste */
  tokens: number;
  paddedTokens: number;
}

export interface ModelSession {
  /** resolved path of the .onnx file */
  readonly file: string;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  /** whether the graph takes `token_type_ids` (BERT does; XLM-R and ModernBERT do not) */
  readonly usesTokenTypes: boolean;
  /** the dimensions of each output in the warm-up run (batch 1, 2 tokens) */
  readonly warmupDims: Readonly<Record<string, readonly number[]>>;
  readonly counters: RunCounters;
  /** runs the encoder on a padded batch; returns every output */
  run(batch: EncodedBatch): Promise<Record<string, ort.Tensor>>;
  /** drops this handle; the session closes when no handle is left */
  release(): Promise<void>;
}

const INPUTS = new Set(['input_ids', 'attention_mask', 'token_type_ids']);

interface Entry {
  refs: number;
  session: Promise<SharedSession>;
}

const registry = new Map<string, Entry>();

/**
 * Opens (or shares) the session for `file`. `warmupIds` are two valid token ids (e.g.
 * [CLS], [SEP]) for the warm-up run, which also reveals the output shapes.
 */
export async function openSession(file: string, warmupIds: [number, number], options: SessionOptions = {}): Promise<ModelSession> {
  const resolved = path.resolve(file);
  const threads = options.threads ?? availableParallelism();
  const graphOptimization = options.graphOptimization ?? 'all';
  const key = JSON.stringify([resolved, threads, graphOptimization]);
  let entry = registry.get(key);
  if (!entry) {
    entry = { refs: 0, session: SharedSession.create(resolved, threads, graphOptimization, warmupIds) };
    registry.set(key, entry);
    entry.session.catch(() => registry.delete(key));
  }
  entry.refs++;
  const shared = await entry.session;
  const e = entry;
  let released = false;
  return {
    file: resolved,
    inputNames: shared.inputNames,
    outputNames: shared.outputNames,
    usesTokenTypes: shared.inputNames.includes('token_type_ids'),
    warmupDims: shared.warmupDims,
    counters: shared.counters,
    run: (batch) => shared.run(batch),
    release: async () => {
      if (released) return;
      released = true;
      if (--e.refs === 0) {
        registry.delete(key);
        await shared.session.release();
      }
    },
  };
}

/** How many distinct sessions are open (for tests of the sharing). */
export function openSessionCount(): number {
  return registry.size;
}

class SharedSession {
  readonly counters: RunCounters = { runs: 0, sequences: 0, tokens: 0, paddedTokens: 0 };
  warmupDims: Record<string, readonly number[]> = {};

  private constructor(
    readonly session: ort.InferenceSession,
    readonly file: string,
    readonly inputNames: readonly string[],
    readonly outputNames: readonly string[],
  ) {}

  static async create(
    file: string,
    threads: number,
    graphOptimization: NonNullable<SessionOptions['graphOptimization']>,
    warmupIds: [number, number],
  ): Promise<SharedSession> {
    const dir = path.dirname(path.dirname(file));
    let bytes: Uint8Array;
    try {
      if (!(await stat(file)).isFile()) throw Object.assign(new Error('not a file'), { code: 'ENOENT' });
      bytes = await readFile(file);
    } catch (e) {
      throw new WinnowError(
        'model_error',
        `${dir}: model file ${path.relative(dir, file) || file} is missing (${(e as NodeJS.ErrnoException).code ?? 'unreadable'})`,
        'pull the model again (winnow models pull) or pick the ONNX file with onnxFile / quantized',
      );
    }
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(bytes, {
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        graphOptimizationLevel: graphOptimization,
        executionProviders: ['cpu'],
      });
    } catch (e) {
      throw new WinnowError(
        'model_error',
        `${file}: not a loadable ONNX model (${firstLine(e)})`,
        'the file is corrupt or truncated; delete the model folder and pull it again',
      );
    }
    const inputs = session.inputNames;
    const unknown = inputs.filter((n) => !INPUTS.has(n));
    if (!inputs.includes('input_ids') || unknown.length > 0) {
      await session.release();
      throw new WinnowError(
        'model_error',
        `${file}: expected a text encoder with inputs input_ids, attention_mask[, token_type_ids]; it takes ${inputs.join(', ')}`,
        'export the model with optimum (feature-extraction or text-classification task) without past key values',
      );
    }
    const shared = new SharedSession(session, file, inputs, session.outputNames);
    const warm = await shared.run({
      batch: 1,
      length: 2,
      inputIds: BigInt64Array.from(warmupIds.map(BigInt)),
      attentionMask: new BigInt64Array([1n, 1n]),
      tokenTypeIds: new BigInt64Array(2),
      lengths: new Int32Array([2]),
    });
    Object.assign(shared.counters, { runs: 0, sequences: 0, tokens: 0, paddedTokens: 0 });
    for (const [name, t] of Object.entries(warm)) shared.warmupDims[name] = t.dims;
    return shared;
  }

  async run(batch: EncodedBatch): Promise<Record<string, ort.Tensor>> {
    const dims = [batch.batch, batch.length];
    const feeds: Record<string, ort.Tensor> = {};
    for (const name of this.inputNames) {
      const data = name === 'input_ids' ? batch.inputIds : name === 'attention_mask' ? batch.attentionMask : batch.tokenTypeIds;
      feeds[name] = new ort.Tensor('int64', data, dims);
    }
    this.counters.runs++;
    this.counters.sequences += batch.batch;
    for (const n of batch.lengths) this.counters.tokens += n;
    this.counters.paddedTokens += batch.batch * batch.length;
    try {
      return await this.session.run(feeds);
    } catch (e) {
      throw new WinnowError('model_error', `${this.file}: inference failed (${firstLine(e)})`);
    }
  }
}

/**
 * The output a scorer reads: `preferred` if the graph has it, else the first output, which must
 * have `rank` dimensions. Otherwise the error lists every output with its shape, says what the
 * scorer `needs`, and `hint` says what such a model probably is.
 */
export function pickOutput(
  session: ModelSession,
  dir: string,
  want: { preferred?: string; rank: number; what: string; needs: string; hint?: string },
): { name: string; dims: readonly number[] } {
  const name = want.preferred && session.outputNames.includes(want.preferred) ? want.preferred : session.outputNames[0];
  const dims = session.warmupDims[name];
  if (!dims || dims.length !== want.rank) {
    const seen = session.outputNames.map((n) => `${n} [${session.warmupDims[n]?.join(', ')}]`).join(', ');
    throw new WinnowError('model_error', `${dir}: not ${want.what}: it outputs ${seen}, ${want.needs}`, want.hint);
  }
  return { name, dims };
}

function firstLine(e: unknown): string {
  return String((e as Error)?.message ?? e).split('\n')[0].slice(0, 300);
}

/** float32 data of an output tensor (fp16 exports declare float32 outputs in practice). */
export function floatData(t: ort.Tensor): Float32Array {
  if (t.data instanceof Float32Array) return t.data;
  if (t.data instanceof Float64Array) return Float32Array.from(t.data);
  throw new WinnowError('model_error', `model output has type ${t.type}, expected float32`);
}

/**
 * Padded tokens one batch may hold. Activations grow with rows x length^2 (attention), and ONNX
 * Runtime's memory arena keeps a session's peak for the session's life: 32 rows of ~512 tokens
 * left RSS at 1.27 GB after one bge-small int8 call over 400 SciFact abstracts (heap 10 MB);
 * with this bound 0.64 GB, and the call was faster (21.8 vs 24.7 s). A cascade holds several
 * sessions, so long rows go in smaller batches.
 */
export const MAX_BATCH_TOKENS = 4096;

/**
 * Groups sequence indices into batches of similar length (longest first), so padding to
 * each batch's longest row wastes little; a batch holds at most `batchSize` rows and
 * `maxTokens` padded tokens (one row at least). Returns the index lists; order inside a batch
 * does not change any score because rows never attend to each other.
 */
export function lengthSortedBatches(lengths: ArrayLike<number>, batchSize: number, maxTokens = MAX_BATCH_TOKENS): Int32Array[] {
  const order = Int32Array.from({ length: lengths.length }, (_, i) => i);
  order.sort((a, b) => lengths[b] - lengths[a] || a - b);
  const out: Int32Array[] = [];
  const size = Math.max(1, Math.floor(batchSize));
  for (let i = 0; i < order.length; ) {
    // Longest first: the batch's first row sets its padded length.
    const rows = Math.max(1, Math.min(size, Math.floor(maxTokens / Math.max(1, lengths[order[i]]))));
    out.push(order.subarray(i, i + rows));
    i += rows;
  }
  return out;
}
