import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { WinnowEnv } from '../cascade/env.js';
import type { Scorer } from '../rerank/scorer.js';
import { WinnowError } from './errors.js';
import type { Stage } from './stage.js';
import { didYouMean } from './suggest.js';

/** What a factory gets to build a stage from a spec entry (or a CLI flag, which becomes one). */
export interface BuildContext {
  /** resources of this run: documents, BM25 indexes, the collection, models (`WinnowEnv`) */
  readonly env: WinnowEnv;
  /** where in the spec, for error messages: `cascade.yaml: stages[2]` */
  readonly where: string;
  /** compiles a nested list of stage entries (fusion inputs, an early exit's `then`) */
  compile(list: unknown, where: string): Promise<Stage[]>;
}

/** Builds the stage of a spec key: `value` is what the key holds, `options` the entry's other fields. */
export type StageFactory = (value: unknown, options: Record<string, unknown>, ctx: BuildContext) => Promise<Stage> | Stage;
/** Builds a retriever (`retrieve: REF`) or a scorer (`rerank: REF`) from its full reference. */
export type RefFactory<T> = (ref: string, options: Record<string, unknown>, ctx: BuildContext) => Promise<T> | T;

interface Entry<F> {
  factory: F;
  /** one line for `--help` and for error messages listing what is known */
  help: string;
}

/**
 * The one table of names. Spec keys (`top`, `rrf`, `rerank`, `listwise`, ...), retriever
 * references (`retrieve: bm25`, `retrieve: opensearch:http://...`) and scorer references
 * (`rerank: cohere:rerank-v3.5`) all resolve here, in specs, in CLI flags and in the server
 * alike. A module registers a name and a factory when it is loaded, so a new kind of stage is
 * one file; a plugin outside the package does the same through `loadPlugin`.
 *
 * A reference matches a registered name exactly or as its prefix before `:`; references no
 * name claims go to the fallback (model folders and hub ids, `org/name`).
 */
export class Registry {
  private readonly stages = new Map<string, Entry<StageFactory>>();
  private readonly retrievers = new Map<string, Entry<RefFactory<Stage>>>();
  private readonly scorers = new Map<string, Entry<RefFactory<Scorer>>>();
  private scorerFallback?: Entry<RefFactory<Scorer>>;
  private readonly plugins = new Set<string>();

  /** A spec key: an entry `{KEY: value, ...options}` becomes `factory(value, options)`. */
  defineStage(key: string, factory: StageFactory, help: string): void {
    define(this.stages, key, { factory, help }, 'stage key');
  }

  /** `retrieve: NAME` or `retrieve: NAME:anything`. */
  defineRetriever(name: string, factory: RefFactory<Stage>, help: string): void {
    define(this.retrievers, name, { factory, help }, 'retriever');
  }

  /** `rerank: NAME` or `rerank: NAME:anything` (and `--stage1-model NAME...`). */
  defineScorer(name: string, factory: RefFactory<Scorer>, help: string): void {
    define(this.scorers, name, { factory, help }, 'scorer');
  }

  /** Scorer references no name claims: model folders and hub ids. */
  defineScorerFallback(factory: RefFactory<Scorer>, help: string): void {
    this.scorerFallback = { factory, help };
  }

  stageKeys(): string[] {
    return [...this.stages.keys()];
  }

  retrieverNames(): string[] {
    return [...this.retrievers.keys()];
  }

  scorerNames(): string[] {
    return [...this.scorers.keys()];
  }

  /** Every name with its help line, for `--help` and docs. */
  describe(): { stages: [string, string][]; retrievers: [string, string][]; scorers: [string, string][] } {
    const rows = <F>(m: Map<string, Entry<F>>): [string, string][] => [...m].map(([k, e]) => [k, e.help]);
    const scorers = rows(this.scorers);
    if (this.scorerFallback) scorers.push(['(anything else)', this.scorerFallback.help]);
    return { stages: rows(this.stages), retrievers: rows(this.retrievers), scorers };
  }

  stage(key: string): StageFactory | undefined {
    return this.stages.get(key)?.factory;
  }

  retriever(ref: string, where: string): RefFactory<Stage> {
    const e = match(this.retrievers, ref);
    if (!e) {
      throw new WinnowError('bad_spec', `${where}: unknown retriever "${ref}"${didYouMean(ref, this.retrieverNames())}`, `known retrievers: ${this.retrieverNames().join(', ')}`);
    }
    return e.factory;
  }

  scorer(ref: string, where: string): RefFactory<Scorer> {
    const e = match(this.scorers, ref) ?? this.scorerFallback;
    if (!e) throw new WinnowError('bad_spec', `${where}: unknown scorer "${ref}"`, `known scorers: ${this.scorerNames().join(', ')}`);
    return e.factory;
  }

  /**
   * Loads a plugin module (a path to an ES module, relative to `base`): its default export,
   * or its export `register`, is called with this registry. Loading the same file twice
   * registers once.
   */
  async loadPlugin(file: string, base = process.cwd()): Promise<void> {
    const abs = path.resolve(base, file);
    if (this.plugins.has(abs)) return;
    if (!existsSync(abs)) throw new WinnowError('not_found', `plugin not found: ${abs}`);
    let mod: { default?: unknown; register?: unknown };
    try {
      mod = (await import(pathToFileURL(abs).href)) as typeof mod;
    } catch (e) {
      throw new WinnowError('bad_spec', `plugin ${abs} failed to load: ${(e as Error).message}`);
    }
    const register = typeof mod.register === 'function' ? mod.register : mod.default;
    if (typeof register !== 'function') {
      throw new WinnowError('bad_spec', `plugin ${abs} exports no register function`, 'export default function register(registry) { registry.defineStage(...) }');
    }
    this.plugins.add(abs);
    await (register as (r: Registry) => unknown)(this);
  }
}

function define<F>(map: Map<string, Entry<F>>, name: string, entry: Entry<F>, what: string): void {
  if (!/^[A-Za-z][\w.-]*$/.test(name)) throw new WinnowError('usage', `a ${what} name is a word (letters, digits, _ . -), got "${name}"`);
  if (map.has(name)) throw new WinnowError('usage', `${what} "${name}" is already registered`, 'a plugin cannot replace a built-in; pick another name');
  map.set(name, entry);
}

function match<F>(map: Map<string, Entry<F>>, ref: string): Entry<F> | undefined {
  const exact = map.get(ref);
  if (exact) return exact;
  const colon = ref.indexOf(':');
  return colon > 0 ? map.get(ref.slice(0, colon)) : undefined;
}

/** The registry the CLI, the server and `compileSpec` use; built-ins register into it on import. */
export const registry = new Registry();
