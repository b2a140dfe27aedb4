import type { Pools, QueryPool } from './pool.js';
import { type FusionPlan, type Plan, evaluatePlan, rerankSteps } from './simulate.js';

export type FusionMethodName = 'rrf' | 'linear';

/**
 * Fusion of the rerankers' scores over the last stage's input. RRF has nothing to fit (its k
 * is given); linear fusion fits weights (summing to 1) on the tuning pools to maximise
 * nDCG@10: a 0.05 grid for two rerankers, coordinate ascent with shrinking steps for more.
 * Returns undefined when the plan runs fewer than two rerankers (nothing to fuse).
 */
export async function fitFusion(
  pools: Pools,
  plan: Plan,
  method: FusionMethodName,
  finalK: number,
  rrfK: number,
  queries: readonly QueryPool[] = pools.queries,
): Promise<FusionPlan | undefined> {
  const stages = rerankSteps(plan);
  if (stages.length < 2) return undefined;
  if (method === 'rrf') return { kind: 'rrf', k: rrfK };
  const score = async (weights: number[]) => (await evaluatePlan(pools, { ...plan, fusion: { kind: 'linear', weights } }, finalK, queries))['nDCG@10'];
  const m = stages.length;
  if (m === 2) {
    let best = { w: [0, 1], q: -Infinity };
    for (let i = 0; i <= 20; i++) {
      const w = [i / 20, 1 - i / 20];
      const q = await score(w);
      // ">" keeps the first best, which favours the last stage (w[1] high) on ties
      if (q > best.q + 1e-12 || best.q === -Infinity) best = { w, q };
    }
    return { kind: 'linear', weights: best.w.map(round3) };
  }
  let w = new Array<number>(m).fill(1 / m);
  let q = await score(w);
  for (const step of [0.2, 0.1, 0.05]) {
    let improved = true;
    while (improved) {
      improved = false;
      for (let i = 0; i < m; i++) {
        for (const dir of [1, -1]) {
          const next = w.map((x, j) => (j === i ? Math.max(0, x + dir * step) : x));
          const sum = next.reduce((a, b) => a + b, 0);
          if (sum <= 0) continue;
          const norm = next.map((x) => x / sum);
          const nq = await score(norm);
          if (nq > q + 1e-9) {
            w = norm;
            q = nq;
            improved = true;
          }
        }
      }
    }
  }
  return { kind: 'linear', weights: w.map(round3) };
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
