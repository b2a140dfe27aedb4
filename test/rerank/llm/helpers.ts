import { Costs } from '../../../src/core/costs.js';
import { registry } from '../../../src/core/registry.js';
import type { Stage, StageContext } from '../../../src/core/stage.js';
import type { Doc, Ranking } from '../../../src/core/types.js';
import { ScoreCache } from '../../../src/cascade/cache.js';
import '../../../src/builtins.js';

/** Documents d0..d(n-1); `relevant(i)` times the word "relevant" in each (the fake model's oracle). */
export function corpus(n: number, relevant: (i: number) => number): Map<string, Doc> {
  const docs = new Map<string, Doc>();
  for (let i = 0; i < n; i++) docs.set(`d${i}`, { id: `d${i}`, text: `document ${i} ${'relevant '.repeat(relevant(i))}filler words here` });
  return docs;
}

/** A ranking of the given ids in the given order. */
export function ranking(queryId: string, ids: string[], text = 'what is relevant'): Ranking {
  return { query: { id: queryId, text }, hits: ids.map((docId, i) => ({ docId, score: ids.length - i, scores: {} })) };
}

/** Builds a stage from a spec entry through the registry, as compileSpec does. */
export async function build(entry: Record<string, unknown>): Promise<Stage> {
  const key = Object.keys(entry).find((k) => registry.stageKeys().includes(k)) as string;
  const { [key]: value, ...rest } = entry;
  const factory = registry.stage(key);
  if (!factory) throw new Error(`no stage ${key}`);
  return factory(value, rest, { env: undefined as never, where: 'test', compile: async () => [] });
}

export function context(docs: Map<string, Doc>, cache?: ScoreCache): StageContext {
  return { docs, costs: new Costs(), cache };
}

export const ids = (r: Ranking): string[] => r.hits.map((h) => h.docId);
