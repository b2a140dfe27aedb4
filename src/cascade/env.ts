import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { WinnowError } from '../core/errors.js';
import type { Doc, DocLookup } from '../core/types.js';
import { readCorpus } from '../eval/io/beir.js';
import { resolveModel } from '../models/resolve.js';
import { loadScorer, type ScorerOptions } from '../rerank/load.js';
import { registry } from '../core/registry.js';
import type { Stage } from '../core/stage.js';
import type { Scorer } from '../rerank/scorer.js';
import { BiEncoder } from '../rerank/bi-encoder.js';
import { StoredVectorScorer } from '../rerank/stored-vectors.js';
import { Bm25Index, type Bm25Params } from '../retrieve/bm25/index.js';
import type { Collection } from '../retrieve/collection/collection.js';
import { openCollection } from '../retrieve/collection/env.js';
import { compileStages } from './spec.js';

export interface EnvOptions {
  /** a BEIR corpus.jsonl (or a folder holding one): documents for retrievers and rerankers */
  corpus?: string;
  /** documents given inline (test_queries.jsonl candidates, request bodies) */
  docs?: Map<string, Doc>;
  /** where built BM25 indexes are kept between runs; none: build in memory every time */
  indexCacheDir?: string;
  /**
   * an explicit BM25 index file (default parameters): loaded if it exists, else built and
   * saved there. Unlike the cache, a damaged file here is an error, not a silent rebuild.
   */
  indexFile?: string;
  /**
   * a collection (`winnow index`) by name or path: its BM25, dense and hybrid retrievers and
   * its document store replace the corpus
   */
  collection?: string;
  /** keep document embeddings on disk here, so a document is embedded once across runs */
  embeddingCacheDir?: string;
  progress?: boolean;
}

/**
 * The resources a run's stages are built from, and what the registry's factories receive
 * (plugins too): the documents (`lookup`), one BM25 index per parameter set over the corpus
 * (or, without a corpus, over the inline documents, so BM25 can rerank supplied candidates
 * with their own collection statistics), the collection, and models loaded once per
 * reference and options. Indexes are built once per parameter set and, with `indexCacheDir`,
 * saved and reused across runs while the corpus file is unchanged.
 */
export class WinnowEnv {
  readonly docs: Map<string, Doc>;
  /** what reading the corpus found worth telling a person (empty documents, with counts) */
  readonly warnings: string[] = [];
  collection?: Collection;
  /** wraps every scorer a stage gets (the server's micro-batching) */
  private scorerWrapper?: (s: Scorer) => Scorer;
  private readonly indexes = new Map<string, Promise<Bm25Index>>();
  /** one scorer per model and options, so stages naming the same model share its session and caches */
  private readonly models = new Map<string, Promise<Scorer>>();
  private corpusLoaded?: Promise<void>;

  private constructor(private readonly opts: EnvOptions) {
    this.docs = opts.docs ?? new Map();
  }

  static async create(opts: EnvOptions): Promise<WinnowEnv> {
    if (opts.collection && opts.corpus) {
      throw new WinnowError('usage', 'give a corpus or a collection, not both', 'a collection holds its own documents');
    }
    const env = new WinnowEnv({ ...opts, corpus: opts.corpus && corpusFile(opts.corpus) });
    if (opts.collection) env.collection = await openCollection(opts.collection);
    await env.loadCorpus();
    return env;
  }

  get lookup(): DocLookup {
    const { collection, docs } = this;
    if (!collection) return docs;
    // inline documents (test_queries.jsonl candidates) first, then the collection's store
    return { get: (id) => docs.get(id) ?? collection.get(id) };
  }

  /** Reads the corpus into memory once: rerankers need document text by id. */
  private loadCorpus(): Promise<void> {
    const file = this.opts.corpus;
    if (!file) return Promise.resolve();
    this.corpusLoaded ??= (async () => {
      const reader = readCorpus(file);
      for await (const doc of reader) this.docs.set(doc.id, doc);
      this.warnings.push(...reader.warnings());
    })();
    return this.corpusLoaded;
  }

  bm25(params: Partial<Bm25Params> = {}): Promise<Bm25Index> {
    const key = JSON.stringify([params.k1, params.b]);
    let index = this.indexes.get(key);
    if (!index) {
      index = this.buildBm25(params);
      this.indexes.set(key, index);
    }
    return index;
  }

  private async buildBm25(params: Partial<Bm25Params>): Promise<Bm25Index> {
    if (this.docs.size === 0) {
      throw new WinnowError('bad_input', 'BM25 needs documents', 'give a corpus (--dataset/--corpus) or candidates with text');
    }
    const explicit = this.opts.indexFile && params.k1 === undefined && params.b === undefined ? this.opts.indexFile : undefined;
    if (explicit && existsSync(explicit)) return Bm25Index.load(explicit);
    const cacheFile = explicit ?? this.indexCacheFile(params);
    if (cacheFile && existsSync(cacheFile)) {
      try {
        return Bm25Index.load(cacheFile);
      } catch (e) {
        if (!(e instanceof WinnowError)) throw e;
        process.stderr.write(`warning: rebuilding the cached BM25 index: ${e.message}\n`);
      }
    }
    const index = await Bm25Index.build(this.docs.values(), {
      params,
      expectedCount: this.docs.size,
      progress: this.opts.progress,
    });
    if (cacheFile) {
      mkdirSync(path.dirname(cacheFile), { recursive: true });
      index.save(cacheFile);
    }
    return index;
  }

  /** Keyed by corpus path, size and mtime and the BM25 parameters, so an edited corpus is reindexed. */
  private indexCacheFile(params: Partial<Bm25Params>): string | undefined {
    const { corpus } = this.opts;
    if (!corpus || !this.opts.indexCacheDir) return undefined;
    const st = statSync(corpus);
    const key = createHash('sha1')
      .update(JSON.stringify([path.resolve(corpus), st.size, st.mtimeMs, params.k1, params.b]))
      .digest('hex')
      .slice(0, 16);
    return path.join(this.opts.indexCacheDir, `bm25-${key}.idx`);
  }

  /** A retriever by reference (`bm25`, `dense`, `opensearch:...`), through the registry. */
  async retriever(ref: string, options: Record<string, unknown>, where: string): Promise<Stage> {
    return registry.retriever(ref, where)(ref, options, this.buildContext(where));
  }

  /** A scorer by reference (`bm25`, `cohere:rerank-v3.5`, a model), through the registry. */
  async scorer(ref: string, options: Record<string, unknown>, where: string): Promise<Scorer> {
    const s = await registry.scorer(ref, where)(ref, options, this.buildContext(where));
    const wrapped = this.scorerWrapper ? this.scorerWrapper(s) : s;
    // A bi-encoder whose document vectors the collection stores reads them instead of embedding.
    const stored = this.collection && s instanceof BiEncoder ? this.collection.storedVectors(s.id) : undefined;
    return stored && stored.dim === (s as BiEncoder).dim ? new StoredVectorScorer(wrapped, s as BiEncoder, stored, this.docs) : wrapped;
  }

  /** From now on every scorer a stage gets goes through `wrap` (the server's micro-batching). */
  wrapScorers(wrap: (s: Scorer) => Scorer): void {
    this.scorerWrapper = wrap;
  }

  private buildContext(where: string) {
    return { env: this, where, compile: (list: unknown, w: string) => compileStages(list, this, w) };
  }

  /** A model folder or reference, loaded once per reference and options so stages share its session. */
  loadModel(ref: string, options: Record<string, unknown>, where: string): Promise<Scorer> {
    const key = JSON.stringify([ref, options]);
    let scorer = this.models.get(key);
    if (!scorer) {
      scorer = this.openModel(ref, options as ScorerOptions, where);
      this.models.set(key, scorer);
    }
    return scorer;
  }

  private async openModel(ref: string, options: ScorerOptions, where: string): Promise<Scorer> {
    try {
      const cacheDir = this.opts.embeddingCacheDir;
      return await loadScorer(await resolveModel(ref), cacheDir ? { cacheDir, ...options } : options);
    } catch (e) {
      if (e instanceof WinnowError && e.code === 'usage') {
        throw new WinnowError(
          'bad_spec',
          `${where}: unknown scorer "${ref}": ${e.message}`,
          'a scorer is bm25, a model folder, a model reference (org/name, maven:group:artifact, pypi:package), or a remote API such as cohere:rerank-v3.5',
        );
      }
      throw e;
    }
  }

  /** Releases model sessions and the collection. */
  async close(): Promise<void> {
    await this.collection?.close();
    for (const s of this.models.values()) await (await s.catch(() => undefined))?.close?.();
  }
}

function corpusFile(p: string): string {
  if (!existsSync(p)) throw new WinnowError('not_found', `corpus not found: ${p}`);
  return statSync(p).isDirectory() ? path.join(p, 'corpus.jsonl') : p;
}
