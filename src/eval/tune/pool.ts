import { availableParallelism, loadavg } from 'node:os';
import type { WinnowEnv } from '../../cascade/env.js';
import { compileSpec, type CascadeSpec } from '../../cascade/spec.js';
import { WinnowError } from '../../core/errors.js';
import { Progress } from '../../core/progress.js';
import { Costs, costKind, PAIRS } from '../../core/costs.js';
import type { Stage } from '../../core/stage.js';
import { docText, type Doc, type DocLookup, type Query, type ScoreKind } from '../../core/types.js';
import { EmbeddingCache } from '../../rerank/embedding-cache.js';
import { retrievesCandidates } from '../../core/stage.js';
import { StoredVectorScorer } from '../../rerank/stored-vectors.js';
import { type MemoBackend, onMemoBackend } from '../../rerank/llm/replay.js';
import { TopK } from '../../cascade/cutoff.js';
import { Retriever } from '../../retrieve/retriever.js';
import type { Qrels } from '../metrics.js';
import { median } from './random.js';

/**
 * One stage of the cascade being tuned, as the tuner sees it: the spec entry it came from
 * (so a tuned spec can be written back with the same names and options), what its scores
 * mean, and what it costs on this machine.
 */
export interface TuneStage {
  name: string;
  role: 'retriever' | 'reranker';
  scoreKind: ScoreKind;
  /** the spec entry, without any cut-off */
  spec: Record<string, unknown>;
  cost: StageCost;
  /**
   * `listwise`: the last tier, whose output depends on its whole input list (an LLM ranking
   * windows): it is run on each candidate list instead of scored once into the pool
   */
  scoring?: 'pointwise' | 'listwise';
  /**
   * work a pointwise stage booked per pair in the scoring pass, by cost name (an LLM judge:
   * `llm.calls`, `llm.tokens.in`, `llm.usd` …), so a plan's costs follow its pairs
   */
  unitCosts?: Record<string, number>;
  /** LLM stages: the backend that counts calls made while tuning and repeats answered from memory */
  memo?: MemoBackend;
  /** document embeddings served from the scorer's cache vs computed during the scoring pass */
  docEmbeddings?: DocEmbeddingCounts;
}

export interface DocEmbeddingCounts {
  fromCache: number;
  embedded: number;
  /** pairs scored against document vectors stored in the collection (no embedding at all) */
  stored?: number;
}

/**
 * Cost model of a stage: `fixedMs + perPairMs * pairs` per query. A retriever's cost barely
 * depends on k (one heap over the postings), so it is measured per query at pool depth.
 */
export interface StageCost {
  perPairMs: number;
  fixedMs: number;
  /** measured ms per query for the full pool (retriever: the retrieval); cold: predicted */
  medianQueryMs: number;
  /**
   * How the cost was measured. `pool`: timing of the scoring pass itself. `cold`: for scorers
   * with a document-side cache (bi-encoders, late interaction), the scoring pass mostly reads
   * cached embeddings, so a pair would look as cheap as a dot product; the cost a cascade pays
   * for such a reranker is embedding unseen documents (plus the query once), so it is timed
   * on a fresh scorer without a disk cache, on documents it has never embedded. `stored`: a
   * bi-encoder over a collection holding its document vectors: every pair of the scoring pass
   * was a dot product against a stored vector, which is what the cascade will pay too, so the
   * pass itself is the measurement (one query embedding + a dot product per pair).
   */
  measured?: 'pool' | 'cold' | 'stored' | 'calls';
  cold?: ColdSample;
  /**
   * `calls`: an LLM stage whose calls run one after another (a listwise walk): a query costs
   * its calls times this, the median latency of a call measured in the scoring pass
   */
  perCallMs?: number;
}

export interface ColdSample {
  /** queries sampled, and documents per timed call (small and large) */
  queries: number;
  smallDocs: number;
  largeDocs: number;
  /** mean characters of the sampled documents: per-query rates scale by each pool's mean */
  meanDocChars: number;
  /** cache hits of the cold scorer during the sample: 0 when the measurement was truly cold */
  cacheHits: number;
  /**
   * 1-minute load average when the timing ended, and the machine's cores: wall-clock costs
   * measured at a load above the cores are inflated by the other work (`--budget-share`
   * compares costs measured under the same load, so it is not)
   */
  load?: { avg1: number; cores: number };
}

/**
 * The pool of one query, scored once by every stage. Indices are positions in the
 * first-pass ranking; `order[s]` lists them best first by stage s (score descending, then
 * doc id descending: the tie rule of `compareHits`), so any cascade of cut-offs can be
 * replayed without scoring again: pointwise scores do not depend on who else is in the list.
 */
export interface QueryPool {
  qid: string;
  /** the query's text: a listwise tier reads it */
  text?: string;
  docIds: string[];
  /** qrels value per pool document (0 when unjudged) */
  gain: Float64Array;
  /** relevant documents in the qrels (value >= 1), in the pool or not */
  numRel: number;
  /** the qrels of this query, as `winnow eval` reads them */
  judged: Map<string, number>;
  /** pool index of each document id */
  index: Map<string, number>;
  scores: Float32Array[];
  order: Int32Array[];
  /** rank[s][d]: position of pool document d in order[s] */
  rank: Int32Array[];
  /** ms the retriever took for this query, and ms per pair each reranker took */
  retrieveMs: number;
  pairMs: Float64Array;
}

export interface Pools {
  stages: TuneStage[];
  queries: QueryPool[];
  depth: number;
  /** queries dropped because the qrels hold no relevant document for them */
  skippedNoRelevant: number;
  /** the listwise last tier, run on demand on each list a plan gives it */
  listwise?: ListwiseTier;
}

/** What one run of the listwise tier on one list gave: its order and what it booked. */
export interface ListwiseRun {
  ids: string[];
  costs: Record<string, number>;
}

/**
 * The listwise last tier of a tuned cascade. Its output depends on the whole input list, so
 * no pool scored once can replay it: the tuner runs the real stage on each distinct list a
 * plan hands it (per query, per cut-off that follows it), remembering every run. Its calls go
 * through a `MemoBackend`, so a window seen before (the same query and passages in the same
 * order) costs nothing, while the stage still books every call a production run would make.
 */
export class ListwiseTier {
  private readonly runs = new Map<string, Promise<ListwiseRun>>();
  private readonly cut = new Map<number, Stage>();

  constructor(
    /** its index among the pool's stages (the last) */
    readonly index: number,
    readonly stage: Stage,
    private readonly docs: DocLookup,
    private readonly queries: ReadonlyMap<string, Query>,
    readonly backend?: MemoBackend,
  ) {}

  /**
   * The stage's order of `ids` for query `qid`. With `cutoff`, the following top-k is offered
   * to the stage first (cut-off push-down), as `Pipeline` does in production, so the run costs
   * what the cut cascade costs.
   */
  run(qid: string, ids: readonly string[], cutoff?: number): Promise<ListwiseRun> {
    const key = `${qid}\u0000${cutoff ?? ''}\u0000${ids.join('\u0001')}`;
    let run = this.runs.get(key);
    if (!run) {
      run = this.runOnce(qid, ids, cutoff);
      this.runs.set(key, run);
    }
    return run;
  }

  private async runOnce(qid: string, ids: readonly string[], cutoff?: number): Promise<ListwiseRun> {
    const query = this.queries.get(qid);
    if (!query) throw new Error(`listwise tier: query ${qid} is not in the pools`);
    const stage = cutoff === undefined ? this.stage : this.withCutoff(cutoff);
    const costs = new Costs();
    const hits = ids.map((docId, i) => ({ docId, score: ids.length - i, scores: {} }));
    const [out] = await stage.run([{ query, hits }], { docs: this.docs, costs });
    const ranked = out.hits.map((h) => h.docId);
    return { ids: cutoff === undefined ? ranked : ranked.slice(0, cutoff), costs: costs.toJSON() };
  }

  private withCutoff(k: number): Stage {
    let s = this.cut.get(k);
    if (!s) {
      s = this.stage.absorb?.(new TopK(k)) ?? this.stage;
      this.cut.set(k, s);
    }
    return s;
  }
}

/** The work costs of a record (what a stage pays for; cache and note entries left out). */
export function workCosts(costs: Readonly<Record<string, number>>): Record<string, number> {
  return Object.fromEntries(Object.entries(costs).filter(([name]) => costKind(name).role === 'work'));
}

export interface ScorePoolOptions {
  spec: CascadeSpec;
  env: WinnowEnv;
  docs: DocLookup;
  queries: readonly Query[];
  qrels: Qrels;
  where?: string;
  progress?: boolean;
  /** reuse stage costs measured on another split, so both splits are costed alike */
  costs?: StageCost[];
  /**
   * where to load fresh scorers for cold cost measurement: an environment without a disk
   * embedding cache whose scorers have scored nothing yet. Without it, stages with a
   * document-side cache are costed from the (possibly warm) scoring pass.
   */
  coldEnv?: WinnowEnv;
  /** queries and documents per call of the cold sample (default 8 queries, 10 and 64 documents) */
  coldSample?: { queries?: number; smallDocs?: number; largeDocs?: number };
}

/** Stage keys that are no pointwise scoring stage: their choices are the tuner's own. */
const NOT_POINTWISE = ['threshold', 'rrf', 'linear', 'union', 'earlyExit'];

/**
 * Splits a linear cascade spec into its scoring stages. Cut-offs are dropped (the tuner
 * chooses them); anything else (thresholds, fusion) is refused, since its cut-offs are not
 * a k the tuner could choose.
 */
export function tunableStages(spec: CascadeSpec, where = 'spec'): { entries: Record<string, unknown>[]; depth: number } {
  const entries: Record<string, unknown>[] = [];
  let depth = 1000;
  spec.stages.forEach((raw, i) => {
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new WinnowError('bad_spec', `${where}: stages[${i}]: a stage is an object`);
    const o = raw as Record<string, unknown>;
    if ('top' in o) return;
    if ('retrieve' in o) {
      if (i !== 0) throw new WinnowError('bad_spec', `${where}: stages[${i}]: winnow tune needs the retriever to be the first stage`);
      const { k, ...rest } = o;
      if (k !== undefined) {
        if (typeof k !== 'number' || !Number.isInteger(k) || k < 1) throw new WinnowError('bad_spec', `${where}: stages[${i}].k: expected a positive integer`);
        depth = k;
      }
      entries.push(rest);
      return;
    }
    if (!NOT_POINTWISE.some((key) => key in o)) {
      // any other stage (rerank, a plugin's key): whether it is pointwise is checked once compiled
      entries.push({ ...o, name: typeof o.name === 'string' ? o.name : `stage${entries.length}` });
      return;
    }
    throw new WinnowError(
      'bad_spec',
      `${where}: stages[${i}]: winnow tune handles cascades of retrieve, rerank and top; found ${Object.keys(o).join(', ')}`,
      'tune the linear cascade first; thresholds, fusion and early exit are then added by winnow tune itself',
    );
  });
  if (entries.length === 0 || !('retrieve' in entries[0])) {
    throw new WinnowError('bad_spec', `${where}: winnow tune needs a cascade that starts with a retriever (- retrieve: bm25)`);
  }
  return { entries, depth };
}

/** Relevant documents per query; undefined when nothing is judged relevant (no gain to rank for). */
function judgedFacts(judged: Map<string, number> | undefined): { numRel: number } | undefined {
  if (!judged) return undefined;
  let numRel = 0;
  let gains = 0;
  for (const rel of judged.values()) {
    if (rel >= 1) numRel++;
    if (rel > 0) gains++;
  }
  if (numRel === 0 && gains === 0) return undefined;
  return { numRel };
}

/**
 * The one scoring pass: retrieve `depth` candidates per query, score every candidate with
 * every reranker, and time it. Per-pair cost is separated from per-query overhead by also
 * timing a short call (10 documents) on a sample of queries.
 */
export async function scorePools(opts: ScorePoolOptions): Promise<Pools> {
  const where = opts.where ?? 'spec';
  const { entries, depth } = tunableStages(opts.spec, where);
  const compiled: Stage[] = [];
  for (let i = 0; i < entries.length; i++) {
    let stage: Stage;
    try {
      [stage] = (await compileSpec({ stages: [entries[i]] }, opts.env, where)).stages;
    } catch (e) {
      if (e instanceof WinnowError) throw new WinnowError(e.code, `stage ${i} cannot run: ${e.message}`, e.hint);
      throw e;
    }
    compiled.push(stage);
  }
  const retriever = compiled[0];
  if (!(retriever instanceof Retriever)) throw new WinnowError('bad_spec', `${where}: the first stage must be a retriever`);
  // A listwise stage may be the last tier: it is run per candidate list, not scored into the pool.
  const lastStage = compiled[compiled.length - 1];
  const tierIndex = compiled.length > 1 && lastStage.scoring === 'listwise' && !retrievesCandidates(lastStage) ? compiled.length - 1 : undefined;
  // LLM stages answer each distinct prompt once while tuning (see `MemoBackend`).
  const memos = compiled.map((s, i) => (i === 0 ? undefined : onMemoBackend(s)));
  const rerankers = compiled.slice(1, tierIndex).map((s, i) => memos[i + 1]?.stage ?? s);
  rerankers.forEach((s, i) => checkPointwise(s, `${where}: stages[${i + 1}]`));
  const tierMemo = tierIndex === undefined ? undefined : memos[tierIndex];
  if (tierIndex !== undefined && !tierMemo) {
    throw new WinnowError(
      'bad_spec',
      `${where}: stages[${tierIndex}]: "${lastStage.name}" is listwise but no LLM stage: winnow tune costs a listwise last tier per LLM call`,
      'tune the cascade of pointwise stages, then add the listwise stage after the tuned ones',
    );
  }
  const tier = tierMemo && tierIndex !== undefined ? new ListwiseTier(tierIndex, tierMemo.stage, opts.docs, new Map(opts.queries.map((q) => [q.id, q])), tierMemo.backend) : undefined;
  const tierCalls: number[] = [];
  const deep = retriever.withK(depth);

  const storedScorers = rerankers.map((r) => {
    const scorer = scorerOf(r);
    return scorer instanceof StoredVectorScorer ? scorer : undefined;
  });
  const caches = rerankers.map((r, i) => cacheOf(storedScorers[i]?.model ?? scorerOf(r)));
  const cacheBefore = caches.map((c) => (c ? { hits: c.hits, misses: c.misses } : undefined));
  const storedBefore = storedScorers.map((s) => (s ? { stored: s.stored, embedded: s.embedded } : undefined));
  const sample = { queries: opts.coldSample?.queries ?? 8, smallDocs: opts.coldSample?.smallDocs ?? 10, largeDocs: opts.coldSample?.largeDocs ?? 64 };
  const coldInputs: { query: Query; docs: Doc[] }[] = [];
  const queries: QueryPool[] = [];
  /** mean document length per pool (characters, clipped per stage at what the model reads) */
  const poolChars: Float64Array[] = [];
  const clip = rerankers.map(charClip);
  let skippedNoRelevant = 0;
  const retrieveMs: number[] = [];
  const fullMs: number[][] = rerankers.map(() => []);
  const fullN: number[] = [];
  const smallMs: number[][] = rerankers.map(() => []);
  /** work the pointwise stages booked in the scoring pass, and the pairs it was for */
  const booked = rerankers.map(() => new Costs());
  const pairsScored = rerankers.map(() => 0);
  const SMALL = 10;
  const SAMPLE = 25;
  const progress = opts.progress ? new Progress('tune: scoring pools', opts.queries.length, 'queries') : undefined;
  for (const query of opts.queries) {
    const facts = judgedFacts(opts.qrels.get(query.id));
    if (!facts) {
      skippedNoRelevant++;
      progress?.tick();
      continue;
    }
    const judged = opts.qrels.get(query.id) as Map<string, number>;
    const t0 = performance.now();
    const hits = await deep.retrieve(query, depth, { costs: new Costs(), docs: opts.docs });
    const tRetrieve = performance.now() - t0;
    const n = hits.length;
    const docIds = hits.map((h) => h.docId);
    const docs: Doc[] = await Promise.all(
      hits.map(async (h) => {
        const d = h.doc ?? (await opts.docs.get(h.docId));
        if (!d) throw new WinnowError('bad_input', `no text for document "${h.docId}" retrieved for query ${query.id}`);
        return d;
      }),
    );
    const scores: Float32Array[] = [Float32Array.from(hits, (h) => h.score)];
    const pairMs = new Float64Array(compiled.length - 1);
    for (let s = 0; s < rerankers.length; s++) {
      const stage = rerankers[s];
      // Stored vectors are read on first use: that one-off read is not what a query pays.
      if (queries.length === 0 && storedScorers[s]) await storedScorers[s]!.scoreStored(query.text, hits);
      // An LLM stage's fixed cost per query is nil (its calls are per pair), and a second call
      // on the same documents would be answered from memory: no small timing call for it.
      if (queries.length < SAMPLE && n > SMALL && !memos[s + 1]) {
        const ts = performance.now();
        await scoreDocs(stage, query, docs.slice(0, SMALL), docIds.slice(0, SMALL));
        smallMs[s].push(performance.now() - ts);
      }
      const ts = performance.now();
      const out = n === 0 ? new Float32Array(0) : await scoreDocs(stage, query, docs, docIds, booked[s]);
      const ms = performance.now() - ts;
      pairsScored[s] += n;
      fullMs[s].push(ms);
      pairMs[s] = ms;
      scores.push(out);
    }
    if (tier) {
      // The whole pool in first-pass order, one query at a time: the calls are timed alone.
      const run = await tier.run(query.id, docIds);
      tierCalls.push(run.costs['llm.calls'] ?? 0);
    }
    retrieveMs.push(tRetrieve);
    fullN.push(n);
    poolChars.push(Float64Array.from(clip, (c) => meanChars(docs, c)));
    // a shallow pool still gives a slope: the large call then takes what the small one left
    if (coldInputs.length < sample.queries && n > 2 * sample.smallDocs) coldInputs.push({ query, docs });
    queries.push(buildQueryPool(query.id, docIds, scores, judged, { retrieveMs: tRetrieve, pairMs }, query.text) as QueryPool);
    progress?.tick();
  }
  progress?.finish();
  if (queries.length === 0) {
    throw new WinnowError(
      'bad_input',
      `none of the ${opts.queries.length} queries has a judged relevant document`,
      'check the qrels split: tuning needs queries with at least one relevance label >= 1',
    );
  }

  const stages: TuneStage[] = [];
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i];
    const stage = compiled[i];
    const memo = memos[i]?.backend;
    if (i === tierIndex && tier) {
      // Calls of a listwise walk run one after another: a query costs calls × ms per call.
      const perCallMs = opts.costs?.[i].perCallMs ?? median(memo?.ms ?? []);
      const cost: StageCost = opts.costs?.[i] ?? { perPairMs: 0, fixedMs: 0, perCallMs, medianQueryMs: median(tierCalls) * perCallMs, measured: 'calls' };
      stages.push({ name: stage.name, role: 'reranker', scoreKind: stage.scoreKind ?? 'unbounded', spec: entry, cost, scoring: 'listwise', ...(memo ? { memo } : {}) });
      continue;
    }
    const name = i === 0 ? String(entry.retrieve) : stage.name;
    const scoreKind: ScoreKind = i === 0 ? 'unbounded' : (stage.scoreKind ?? 'unbounded');
    let cost: StageCost;
    if (opts.costs) cost = opts.costs[i];
    else if (i === 0) cost = { perPairMs: 0, fixedMs: median(retrieveMs), medianQueryMs: median(retrieveMs), measured: 'pool' };
    else if (storedScorers[i - 1] && storedScorers[i - 1]!.embedded === storedBefore[i - 1]!.embedded) {
      cost = { ...fitCost(fullMs[i - 1], fullN, smallMs[i - 1], SMALL), measured: 'stored' };
    } else if (caches[i - 1] && opts.coldEnv) {
      cost = await coldCost(entry, opts.coldEnv, coldInputs, sample, clip[i - 1], median(fullN), `${where}: stage ${i} (cold cost)`);
    } else cost = { ...fitCost(fullMs[i - 1], fullN, smallMs[i - 1], SMALL), measured: 'pool' };
    const out: TuneStage = { name, role: i === 0 ? 'retriever' : 'reranker', scoreKind, spec: entry, cost };
    if (i > 0) {
      out.scoring = 'pointwise';
      // pairs are counted by the replay itself; the rest (an LLM judge's calls, tokens, money) follow them
      const { [PAIRS]: _pairs, ...perPair } = workCosts(booked[i - 1].toJSON());
      if (pairsScored[i - 1] > 0) for (const k of Object.keys(perPair)) perPair[k] /= pairsScored[i - 1];
      if (Object.keys(perPair).length > 0) out.unitCosts = perPair;
      if (memo) out.memo = memo;
    }
    const c = caches[i - 1];
    const b = cacheBefore[i - 1];
    if (c && b) out.docEmbeddings = { fromCache: c.hits - b.hits, embedded: c.misses - b.misses };
    const sv = storedScorers[i - 1];
    if (sv && out.docEmbeddings) out.docEmbeddings.stored = sv.stored - storedBefore[i - 1]!.stored;
    stages.push(out);
  }
  // Per-query per-pair rates keep the spread of costs across queries (long documents cost
  // more), so a p95 prediction sees the slow queries and not only the median one. A cold
  // cost was not timed per query, so its rate follows the pool's mean document length.
  queries.forEach((q, qi) => {
    for (let s = 0; s < rerankers.length; s++) {
      const c = stages[s + 1].cost;
      const n = q.docIds.length;
      if (c.measured === 'cold' && c.cold) q.pairMs[s] = c.perPairMs * (c.cold.meanDocChars > 0 ? poolChars[qi][s] / c.cold.meanDocChars : 1);
      else q.pairMs[s] = n > 0 ? Math.max(0, q.pairMs[s] - c.fixedMs) / n : c.perPairMs;
    }
  });
  return { stages, queries, depth, skippedNoRelevant, ...(tier ? { listwise: tier } : {}) };
}

/**
 * A stage the pool can hold: pointwise (its score of a pair does not depend on the other
 * documents in the list), so a pool scored once replays at any cut-off. Any such stage
 * will do, a `Rerank` or a plugin's.
 */
function checkPointwise(stage: Stage, where: string): Stage {
  if (retrievesCandidates(stage)) throw new WinnowError('bad_spec', `${where}: "${stage.name}" retrieves; winnow tune needs the retriever first and scoring stages after it`);
  if (stage.scoring !== 'pointwise') {
    throw new WinnowError(
      'bad_spec',
      `${where}: "${stage.name}" is not a pointwise stage (${stage.scoring ?? `a ${stage.kind}`}): winnow tune replays a pool scored once, which only pointwise scores allow`,
      'tune the cascade of pointwise stages, then add listwise stages after the tuned ones',
    );
  }
  return stage;
}

/**
 * Scores documents with a pointwise stage by running it, as a cascade would, on a ranking of
 * them (documents carried on the hits), and returns the scores in the documents' order.
 */
async function scoreDocs(stage: Stage, query: Query, docs: readonly Doc[], ids: readonly string[] = docs.map((d) => d.id), costs = new Costs()): Promise<Float32Array> {
  // Ids as the retriever named them (a collection's stored vectors are found by them), and
  // documents by lookup, not on the hits: a hit carrying its document counts as inline text.
  const hits = ids.map((docId, i) => ({ docId, score: -i, scores: {} }));
  const lookup = new Map(ids.map((id, i) => [id, docs[i]]));
  const [out] = await stage.run([{ query, hits }], { docs: lookup, costs });
  const byId = new Map(out.hits.map((h) => [h.docId, h.score]));
  if (out.hits.length !== docs.length) throw new WinnowError('model_error', `${stage.name}: returned ${out.hits.length} hits for ${docs.length} documents`);
  return Float32Array.from(ids, (id) => byId.get(id) as number);
}

/** The scorer a stage wraps (a `Rerank`'s), when it has one: where its caches and limits live. */
function scorerOf(stage: Stage): object | undefined {
  const scorer = (stage as { scorer?: unknown }).scorer;
  return typeof scorer === 'object' && scorer !== null ? scorer : undefined;
}

/** The document-side embedding cache of a stage's scorer (bi-encoder, late interaction), if it has one. */
export function docCache(stage: Stage): EmbeddingCache | undefined {
  return cacheOf(scorerOf(stage));
}

function cacheOf(scorer: object | undefined): EmbeddingCache | undefined {
  const cache = (scorer as { cache?: unknown } | undefined)?.cache;
  return cache instanceof EmbeddingCache ? cache : undefined;
}

/**
 * Characters a model reads of a document at most: about 4 per token of its max length.
 * Only the ratio of pool means to the sample mean uses it, so a rough bound will do.
 */
function charClip(stage: Stage): number {
  const maxLength = (scorerOf(stage) as { maxLength?: unknown } | undefined)?.maxLength;
  return typeof maxLength === 'number' && maxLength > 0 ? 4 * maxLength : Infinity;
}

function meanChars(docs: readonly Doc[], clip: number): number {
  if (docs.length === 0) return 0;
  let sum = 0;
  for (const d of docs) sum += Math.min(clip, docText(d).length);
  return sum / docs.length;
}

/**
 * Cold cost of a stage with a document-side cache: a fresh scorer from `env` (no disk cache,
 * nothing embedded yet) scores `smallDocs` and then `largeDocs` documents of each sampled
 * query's pool, never a document it has seen before, so every call embeds its documents and
 * the query. The per-pair cost is the median slope between the two calls, the fixed cost
 * what is left of the small call.
 */
async function coldCost(
  entry: Record<string, unknown>,
  env: WinnowEnv,
  inputs: readonly { query: Query; docs: Doc[] }[],
  sample: { smallDocs: number; largeDocs: number },
  clip: number,
  poolSize: number,
  where: string,
): Promise<StageCost> {
  if (inputs.length === 0) {
    throw new WinnowError(
      'bad_input',
      `${where}: no query has more than ${2 * sample.smallDocs} candidates to time the stage on`,
      'raise the retriever k or use more queries',
    );
  }
  const [stage] = (await compileSpec({ stages: [entry] }, env, where)).stages;
  checkPointwise(stage, where);
  const cache = docCache(stage);
  const hitsBefore = cache?.hits ?? 0;
  const seen = new Set<string>();
  const take = (docs: readonly Doc[], n: number): Doc[] => {
    // spread over the pool, so the sample has the pool's mix of document lengths
    const out: Doc[] = [];
    const step = Math.max(1, Math.floor(docs.length / n));
    for (let start = 0; start < step && out.length < n; start++) {
      for (let i = start; i < docs.length && out.length < n; i += step) {
        const text = docText(docs[i]);
        if (seen.has(text)) continue;
        seen.add(text);
        out.push(docs[i]);
      }
    }
    return out;
  };
  const slopes: number[] = [];
  const smallMs: number[] = [];
  const smallN: number[] = [];
  let chars = 0;
  let count = 0;
  for (const { query, docs } of inputs) {
    const small = take(docs, sample.smallDocs);
    const large = take(docs, sample.largeDocs);
    if (large.length <= small.length) continue;
    let t = performance.now();
    await scoreDocs(stage, query, small);
    const tSmall = performance.now() - t;
    t = performance.now();
    await scoreDocs(stage, query, large);
    const tLarge = performance.now() - t;
    slopes.push((tLarge - tSmall) / (large.length - small.length));
    smallMs.push(tSmall);
    smallN.push(small.length);
    for (const d of [...small, ...large]) chars += Math.min(clip, docText(d).length);
    count += small.length + large.length;
  }
  if (slopes.length === 0) throw new WinnowError('bad_input', `${where}: too few distinct documents in the sampled pools to time the stage`);
  const perPairMs = Math.max(0, median(slopes));
  const fixedMs = Math.max(0, median(smallMs.map((ms, j) => ms - perPairMs * smallN[j])));
  return {
    perPairMs,
    fixedMs,
    medianQueryMs: fixedMs + perPairMs * poolSize,
    measured: 'cold',
    cold: {
      queries: slopes.length,
      smallDocs: sample.smallDocs,
      largeDocs: sample.largeDocs,
      meanDocChars: count > 0 ? chars / count : 0,
      cacheHits: (cache?.hits ?? 0) - hitsBefore,
      load: { avg1: loadavg()[0], cores: availableParallelism() },
    },
  };
}

function fitCost(full: number[], n: number[], small: number[], smallN: number): StageCost {
  const medFull = median(full);
  const medN = median(n);
  if (small.length === 0 || medN <= smallN) {
    return { perPairMs: medN > 0 ? medFull / medN : 0, fixedMs: 0, medianQueryMs: medFull };
  }
  const medSmall = median(small);
  const perPairMs = Math.max(0, (medFull - medSmall) / (medN - smallN));
  const fixedMs = Math.max(0, medSmall - perPairMs * smallN);
  return { perPairMs, fixedMs, medianQueryMs: medFull };
}

/**
 * One query's pool from its first-pass document ids and every stage's scores of them
 * (scores[0]: the retriever's), with the orders and ranks the replay needs.
 */
export function buildQueryPool(
  qid: string,
  docIds: string[],
  scores: Float32Array[],
  judged: Map<string, number>,
  timing: { retrieveMs: number; pairMs: Float64Array },
  text?: string,
): QueryPool | undefined {
  const facts = judgedFacts(judged);
  if (!facts) return undefined;
  const order = scores.map((sc) => orderBy(sc, docIds));
  const rank = order.map((o) => {
    const r = new Int32Array(o.length);
    o.forEach((d, pos) => (r[d] = pos));
    return r;
  });
  return {
    qid,
    ...(text !== undefined ? { text } : {}),
    docIds,
    gain: Float64Array.from(docIds, (id) => judged.get(id) ?? 0),
    numRel: facts.numRel,
    judged,
    index: new Map(docIds.map((id, i) => [id, i])),
    scores,
    order,
    rank,
    retrieveMs: timing.retrieveMs,
    pairMs: timing.pairMs,
  };
}

/** Pool indices best first by score, ties by doc id descending (as `compareHits`). */
export function orderBy(scores: Float32Array, docIds: readonly string[]): Int32Array {
  const idx = Int32Array.from({ length: scores.length }, (_, i) => i);
  idx.sort((a, b) => {
    if (scores[a] !== scores[b]) return scores[b] - scores[a];
    return docIds[a] > docIds[b] ? -1 : docIds[a] < docIds[b] ? 1 : 0;
  });
  return idx;
}
