/**
 * Ranking measures with the exact semantics of trec_eval as ir_measures (0.4.3, with
 * pytrec_eval-terrier) reports them, so a number printed by Winnow can be compared with a
 * number printed by ir_measures to the last digit. `test/eval/metrics.test.ts` holds us to
 * that against values ir_measures computed (`tools/make_metric_fixtures.py`).
 *
 * What ir_measures does, and so what we do (each checked against the package's source and output):
 * - Which queries count: every query in the qrels, including queries whose judgements are all
 *   non-relevant; such a query and a qrels query the run never mentions score 0 on every measure
 *   (ir_measures fills missing (measure, query) pairs with the measure's DEFAULT, 0). Run
 *   queries that have no qrels are ignored. The mean is over the qrels queries.
 * - Duplicate (query, doc) pairs in a run: ir_measures turns the run into a dict of dicts, so
 *   the last score read wins. `Run` is a Map, so readers that `set` in file order do the same.
 * - Order: trec_eval sorts by score descending and breaks ties by doc id descending (strcmp);
 *   the rank column is ignored. ir_measures routes RR@k (cutoff given) to its MS MARCO
 *   provider and Judged to its own provider, and both of those sort ties by doc id
 *   *ascending*. We follow each measure's provider, so ties can move RR@k and Judged@k
 *   differently from RR and P@k; `evaluateRanking` trusts the order it is given.
 * - Judged@k divides by min(k, retrieved), not k (ir_measures' judged provider). P@k divides by k.
 * - AP@k is trec_eval's map_cut: precision at each relevant doc within the top k, summed and
 *   divided by the number of relevant docs in the qrels (not min(k, R)).
 * - nDCG gains are the raw qrels values; values <= 0 and unjudged docs gain 0; the ideal DCG
 *   sorts the positive gains of all judged docs. The `rel` threshold does not apply to nDCG.
 */
import { WinnowError } from '../core/errors.js';

/** qid -> docid -> relevance */
export type Qrels = Map<string, Map<string, number>>;
/** qid -> docid -> score */
export type Run = Map<string, Map<string, number>>;

export type MeasureKind = 'RR' | 'nDCG' | 'R' | 'P' | 'AP' | 'Judged';

export interface Measure {
  /** Canonical ir_measures name, e.g. `nDCG@10`, `R(rel=2)@100`. */
  name: string;
  kind: MeasureKind;
  /** Cutoff; absent means the whole ranking. */
  k?: number;
  /** A doc is relevant when its qrel value is >= relLevel (ir_measures' `rel=`). */
  relLevel: number;
}

const ALIASES: Record<string, MeasureKind> = {
  RR: 'RR',
  MRR: 'RR',
  nDCG: 'nDCG',
  NDCG: 'nDCG',
  R: 'R',
  Recall: 'R',
  P: 'P',
  Precision: 'P',
  AP: 'AP',
  MAP: 'AP',
  Judged: 'Judged',
};

/** Measures whose definition needs a cutoff (as in ir_measures). */
const NEEDS_CUTOFF = new Set<MeasureKind>(['R', 'P']);
/** Measures without a relevance threshold: nDCG uses raw gains, Judged any judgement. */
const NO_REL = new Set<MeasureKind>(['nDCG', 'Judged']);

const MEASURE_RE = /^([A-Za-z]+)(?:\(\s*rel\s*=\s*(-?\d+)\s*\))?(?:@(\d+))?$/;

const KNOWN = 'RR, RR@k, nDCG, nDCG@k, R@k, P@k, AP, AP@k, Judged@k (rel=N for RR, R, P, AP)';

export function measureName(kind: MeasureKind, k: number | undefined, relLevel: number): string {
  const rel = relLevel !== 1 ? `(rel=${relLevel})` : '';
  return `${kind}${rel}${k !== undefined ? `@${k}` : ''}`;
}

/** Parses an ir_measures-style name: `nDCG@10`, `RR`, `R(rel=2)@100`, `AP@100`, `Judged@10`. */
export function parseMeasure(name: string): Measure {
  const m = MEASURE_RE.exec(name.trim());
  const kind = m ? ALIASES[m[1]] : undefined;
  if (!m || !kind) {
    throw new WinnowError('usage', `unknown measure '${name}'`, `known measures: ${KNOWN}`);
  }
  if (m[2] !== undefined && NO_REL.has(kind)) {
    throw new WinnowError('usage', `measure '${name}': ${kind} takes no rel= parameter`, `known measures: ${KNOWN}`);
  }
  const relLevel = m[2] !== undefined ? Number(m[2]) : 1;
  const k = m[3] !== undefined ? Number(m[3]) : undefined;
  if (k !== undefined && (!Number.isSafeInteger(k) || k < 1)) {
    throw new WinnowError('usage', `measure '${name}': the cutoff must be a positive integer`);
  }
  if (k === undefined && NEEDS_CUTOFF.has(kind)) {
    throw new WinnowError('usage', `measure '${name}' needs a cutoff, e.g. ${kind}@10`);
  }
  return { name: measureName(kind, k, relLevel), kind, k, relLevel };
}

function toMeasure(m: string | Measure): Measure {
  return typeof m === 'string' ? parseMeasure(m) : m;
}

/**
 * Compares strings by Unicode code point, which is the order of strcmp over UTF-8 (trec_eval)
 * and of Python's str comparison. JS `<` compares UTF-16 code units, which disagrees for
 * astral characters versus U+E000..U+FFFF; only the first differing unit needs fixing.
 */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let ca = a.charCodeAt(i);
    let cb = b.charCodeAt(i);
    if (ca === cb) continue;
    if (ca >= 0xd800 && cb >= 0xd800) {
      // Surrogates encode code points above U+FFFF, so they sort after U+E000..U+FFFF.
      ca = ca >= 0xe000 ? ca - 0x800 : ca + 0x2000;
      cb = cb >= 0xe000 ? cb - 0x800 : cb + 0x2000;
    }
    return ca - cb;
  }
  return a.length - b.length;
}

/**
 * Orders one query's run entries the trec_eval way: score descending, ties by doc id
 * descending (strcmp). Returns the doc ids best first.
 */
export function sortRunTrecEval(docScores: Map<string, number>): string[] {
  return sortRun(docScores, -1);
}

/** Ties by doc id ascending: the order of ir_measures' msmarco (RR@k) and judged providers. */
function sortRun(docScores: Map<string, number>, tieSign: 1 | -1): string[] {
  const ids = [...docScores.keys()];
  const scores = new Float64Array(ids.length);
  for (let i = 0; i < ids.length; i++) scores[i] = docScores.get(ids[i]) as number;
  const order = Array.from({ length: ids.length }, (_, i) => i);
  order.sort((x, y) => {
    if (scores[x] !== scores[y]) return scores[y] - scores[x];
    return tieSign * compareCodePoints(ids[x], ids[y]);
  });
  return order.map((i) => ids[i]);
}

/** A whole run rank-sorted the trec_eval way: qid -> doc ids best first. */
export function rankRunTrecEval(run: Run): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [qid, docs] of run) out.set(qid, sortRunTrecEval(docs));
  return out;
}

function countRelevant(qrels: Map<string, number>, relLevel: number): number {
  let n = 0;
  for (const rel of qrels.values()) if (rel >= relLevel) n++;
  return n;
}

/** Positive gains of all judged docs, best first: the ideal ranking for nDCG. */
function idealGains(qrels: Map<string, number>): Float64Array {
  const gains: number[] = [];
  for (const rel of qrels.values()) if (rel > 0) gains.push(rel);
  return Float64Array.from(gains).sort().reverse();
}

function ndcg(qrels: Map<string, number>, ranked: readonly string[], k: number, ideal: Float64Array): number {
  let idcg = 0;
  const ik = Math.min(k, ideal.length);
  for (let i = 0; i < ik; i++) idcg += ideal[i] / Math.log2(i + 2);
  if (idcg === 0) return 0;
  let dcg = 0;
  const n = Math.min(k, ranked.length);
  for (let i = 0; i < n; i++) {
    const rel = qrels.get(ranked[i]);
    if (rel !== undefined && rel > 0) dcg += rel / Math.log2(i + 2);
  }
  return dcg / idcg;
}

/**
 * One measure for one query, trusting `rankedDocIds` as the final order (best first): no
 * re-sorting and no tie handling. This is the cascade evaluator's fast path. `qrelsForQuery`
 * undefined (or empty) means the query has no judgements: every measure is 0.
 */
export function evaluateRanking(
  qrelsForQuery: Map<string, number> | undefined,
  rankedDocIds: readonly string[],
  measure: Measure,
): number {
  if (!qrelsForQuery || qrelsForQuery.size === 0) return 0;
  return measureValue(qrelsForQuery, rankedDocIds, measure, undefined);
}

function measureValue(
  qrels: Map<string, number>,
  ranked: readonly string[],
  measure: Measure,
  ideal: Float64Array | undefined,
): number {
  const k = measure.k ?? Infinity;
  const depth = Math.min(k, ranked.length);
  const relLevel = measure.relLevel;
  switch (measure.kind) {
    case 'RR': {
      for (let i = 0; i < depth; i++) {
        const rel = qrels.get(ranked[i]);
        if (rel !== undefined && rel >= relLevel) return 1 / (i + 1);
      }
      return 0;
    }
    case 'P': {
      let hits = 0;
      for (let i = 0; i < depth; i++) {
        const rel = qrels.get(ranked[i]);
        if (rel !== undefined && rel >= relLevel) hits++;
      }
      return hits / k;
    }
    case 'R': {
      const numRel = countRelevant(qrels, relLevel);
      if (numRel === 0) return 0;
      let hits = 0;
      for (let i = 0; i < depth; i++) {
        const rel = qrels.get(ranked[i]);
        if (rel !== undefined && rel >= relLevel) hits++;
      }
      return hits / numRel;
    }
    case 'AP': {
      const numRel = countRelevant(qrels, relLevel);
      if (numRel === 0) return 0;
      let hits = 0;
      let sum = 0;
      for (let i = 0; i < depth; i++) {
        const rel = qrels.get(ranked[i]);
        if (rel !== undefined && rel >= relLevel) {
          hits++;
          sum += hits / (i + 1);
        }
      }
      return sum / numRel;
    }
    case 'nDCG':
      return ndcg(qrels, ranked, k, ideal ?? idealGains(qrels));
    case 'Judged': {
      if (depth === 0) return 0;
      let judged = 0;
      for (let i = 0; i < depth; i++) if (qrels.has(ranked[i])) judged++;
      return judged / depth;
    }
  }
}

/** ir_measures' MS MARCO RR@k and judged providers sort ties by doc id ascending. */
function usesAscendingTies(m: Measure): boolean {
  return (m.kind === 'RR' && m.k !== undefined) || m.kind === 'Judged';
}

/**
 * Scores a run against qrels the way ir_measures does (see the file comment): re-sorts each
 * query's run entries (ignoring any rank column), evaluates every qrels query and averages
 * over them. `perQuery` has one entry per qrels query, keyed by measure name.
 */
export function evaluate(
  qrels: Qrels,
  run: Run,
  measures: (string | Measure)[],
): { perQuery: Map<string, Record<string, number>>; mean: Record<string, number> } {
  const ms = measures.map(toMeasure);
  if (qrels.size === 0) {
    // A mean over no queries has no value; 0 would look like a real (terrible) result.
    throw new WinnowError('bad_input', 'cannot evaluate: the qrels have no queries');
  }
  const needAscending = ms.some(usesAscendingTies);
  const needDescending = ms.some((m) => !usesAscendingTies(m));
  const needIdeal = ms.some((m) => m.kind === 'nDCG');
  const perQuery = new Map<string, Record<string, number>>();
  const sums = new Float64Array(ms.length);
  const empty: string[] = [];
  for (const [qid, qq] of qrels) {
    const docs = run.get(qid);
    const desc = docs && needDescending ? sortRun(docs, -1) : empty;
    const asc = docs && needAscending ? sortRun(docs, 1) : empty;
    const ideal = needIdeal ? idealGains(qq) : undefined;
    const values: Record<string, number> = {};
    for (let j = 0; j < ms.length; j++) {
      const m = ms[j];
      const v = qq.size === 0 ? 0 : measureValue(qq, usesAscendingTies(m) ? asc : desc, m, ideal);
      values[m.name] = v;
      sums[j] += v;
    }
    perQuery.set(qid, values);
  }
  const mean: Record<string, number> = {};
  for (let j = 0; j < ms.length; j++) mean[ms[j].name] = sums[j] / qrels.size;
  return { perQuery, mean };
}
