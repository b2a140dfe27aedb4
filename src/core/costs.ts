/**
 * What a stage pays for a batch, as an open record: a stage adds amounts under cost names
 * (`pairs`, `llm.calls`, `tokens.in`, `usd`, ...), and every consumer (eval tables, --json,
 * /metrics, the report, the tuner) reads whatever names are there. A new kind of stage that
 * bills in a new unit defines its cost once with `defineCost` and no consumer changes.
 */
export interface CostKind {
  /** the key stages add under, e.g. `tokens.in` */
  readonly name: string;
  /** a short column header */
  readonly label: string;
  /** what one unit is: pairs, calls, tokens, units, usd, documents */
  readonly unit: string;
  /** one line for people: Prometheus HELP, table legends */
  readonly help: string;
  /**
   * `work`: what the stage pays for (the tuner and the budget planner weigh these);
   * `cache`: hit/miss bookkeeping; `note`: diagnostics (documents truncated, answers repaired)
   */
  readonly role: 'work' | 'cache' | 'note';
}

const KINDS = new Map<string, CostKind>();

/** Declares a cost name; returns it, so a module can write `const CALLS = defineCost({...})`. */
export function defineCost(kind: CostKind): string {
  const known = KINDS.get(kind.name);
  // Re-declaring with the same unit is harmless (a module loaded twice); a different unit is a bug.
  if (known && known.unit !== kind.unit) throw new Error(`cost "${kind.name}" is already defined in ${known.unit}, not ${kind.unit}`);
  KINDS.set(kind.name, kind);
  return kind.name;
}

/** The declaration of a cost name; an undeclared name is shown as-is, as work. */
export function costKind(name: string): CostKind {
  return KINDS.get(name) ?? { name, label: name, unit: 'units', help: name, role: 'work' };
}

export const PAIRS = defineCost({ name: 'pairs', label: 'pairs', unit: 'pairs', help: 'query-document pairs sent to a model (cache hits excluded)', role: 'work' });
export const STORED_PAIRS = defineCost({
  name: 'pairs.stored',
  label: 'stored pairs',
  unit: 'pairs',
  help: "pairs scored against document vectors stored in the collection (no document embedded)",
  role: 'work',
});
export const CACHE_HITS = defineCost({ name: 'cache.hits', label: 'cache hit', unit: 'pairs', help: 'scores served from the score cache', role: 'cache' });
export const CACHE_MISSES = defineCost({ name: 'cache.misses', label: 'cache miss', unit: 'pairs', help: 'score-cache lookups that had to be scored', role: 'cache' });
export const TRUNCATED = defineCost({ name: 'docs.truncated', label: 'trunc', unit: 'documents', help: "documents cut to the model's maximum length", role: 'note' });
export const WINDOWED = defineCost({ name: 'docs.windowed', label: 'windowed', unit: 'documents', help: 'documents split into several passage windows', role: 'note' });
export const SEARCH_UNITS = defineCost({ name: 'billed.search_units', label: 'search units', unit: 'units', help: 'search units billed by hosted rerank APIs (Cohere, Pinecone)', role: 'work' });
export const TOKENS = defineCost({ name: 'billed.tokens', label: 'billed tok', unit: 'tokens', help: 'tokens billed by hosted rerank APIs (Jina, Voyage, Mixedbread, vLLM)', role: 'work' });

/** Amounts by cost name for one stage and batch; adding is the only operation stages need. */
export class Costs {
  private readonly amounts = new Map<string, number>();

  add(name: string, amount = 1): void {
    if (amount === 0) return;
    this.amounts.set(name, (this.amounts.get(name) ?? 0) + amount);
  }

  get(name: string): number {
    return this.amounts.get(name) ?? 0;
  }

  addAll(from: Costs | Readonly<Record<string, number>>): void {
    const entries = from instanceof Costs ? from.amounts.entries() : Object.entries(from);
    for (const [name, amount] of entries) this.add(name, amount);
  }

  /** Names with a non-zero amount, in the order they were first added. */
  names(): string[] {
    return [...this.amounts.keys()];
  }

  toJSON(): Record<string, number> {
    return Object.fromEntries(this.amounts);
  }
}

/** Sums cost records (plain objects, as trace rows carry them). */
export function sumCosts(records: Iterable<Readonly<Record<string, number>>>): Record<string, number> {
  const total = new Costs();
  for (const r of records) total.addAll(r);
  return total.toJSON();
}
