import { WinnowError } from './errors.js';

/**
 * `; did you mean "rerank"?` when `name` is a likely typo of one of `known` (edit distance
 * at most a third of its length), else an empty string.
 */
export function didYouMean(name: string, known: readonly string[]): string {
  let best: string | undefined;
  let bestD = Math.max(1, Math.floor(name.length / 3)) + 1;
  for (const k of known) {
    const d = editDistance(name.toLowerCase(), k.toLowerCase());
    if (d < bestD) {
      best = k;
      bestD = d;
    }
  }
  return best === undefined ? '' : `; did you mean "${best}"?`;
}

/** Levenshtein distance; names are short, so the quadratic table is fine. */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}

/** Refuses option keys a stage does not take, naming the key and the closest known one. */
export function checkOptions(options: Record<string, unknown>, allowed: readonly string[], where: string, what: string): void {
  for (const key of Object.keys(options)) {
    if (!allowed.includes(key)) {
      throw new WinnowError('bad_spec', `${where}: unknown ${what} option "${key}"${didYouMean(key, allowed)}`, allowed.length ? `${what} takes ${allowed.join(', ')}` : `${what} takes no options`);
    }
  }
}
