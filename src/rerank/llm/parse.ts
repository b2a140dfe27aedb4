/**
 * Reading LLM answers. None of these functions fails: a model that rambles, repeats itself,
 * invents ids or answers nothing still leaves a usable order, and the caller counts how the
 * answer was read (`clean`, `repaired`, `fallback`) so a bad model or prompt shows in costs.
 */

/** How an answer was read. */
export type ParseStatus = 'clean' | 'repaired' | 'fallback';

/** Ids shown to the model: `[1] [2] …` or `[A] [B] …`. */
export type IdStyle = 'number' | 'letter';

export interface ParsedOrder {
  /** a permutation of 0..n-1, best first */
  order: number[];
  status: ParseStatus;
}

/** The label of item `i` (0-based): `1`, `2`, … or `A` … `Z`, `AA`, `AB`, … */
export function idLabel(i: number, style: IdStyle): string {
  if (style === 'number') return String(i + 1);
  let s = '';
  let n = i;
  do {
    s = String.fromCharCode(65 + (n % 26)) + s;
    n = Math.floor(n / 26) - 1;
  } while (n >= 0);
  return s;
}

function labelIndex(label: string, style: IdStyle): number {
  if (style === 'number') return Number(label) - 1;
  let n = 0;
  for (const ch of label.toUpperCase()) n = n * 26 + (ch.charCodeAt(0) - 64);
  return n - 1;
}

/** Drops reasoning: everything up to the last `</think>`; an unclosed `<think>` leaves nothing. */
export function stripReasoning(text: string): string {
  const close = text.lastIndexOf('</think>');
  if (close >= 0) return text.slice(close + '</think>'.length);
  const open = text.indexOf('<think>');
  return open >= 0 ? text.slice(0, open) : text;
}

const DIGIT = /\p{Nd}/u;

/**
 * Maps every decimal digit of any script (Arabic-Indic, Devanagari, full-width, mathematical
 * bold …) to ASCII. Unicode lays decimal digits out in runs of ten from zero, so a digit's
 * value is its distance from the start of its run, modulo ten (some runs are back to back).
 */
export function normalizeDigits(text: string): string {
  let out = '';
  for (const ch of text) {
    const cp = ch.codePointAt(0) as number;
    if (cp >= 48 && cp <= 57) {
      out += ch;
      continue;
    }
    if (!DIGIT.test(ch)) {
      out += ch;
      continue;
    }
    let start = cp;
    while (DIGIT.test(String.fromCodePoint(start - 1))) start--;
    out += String((cp - start) % 10);
  }
  return out;
}

/**
 * Reads a ranking answer over `n` items: `[3] > [1] > [2]`, `3 > 1 > 2`, `C > A > B`, with
 * prose, reasoning or markdown around it. Duplicates and ids outside 1..n are dropped; ids the
 * answer left out follow in their previous order. An answer with no usable id keeps the
 * previous order (`fallback`).
 */
export function parsePermutation(answer: string, n: number, style: IdStyle = 'number'): ParsedOrder {
  const identity = Array.from({ length: n }, (_, i) => i);
  const text = normalizeDigits(stripReasoning(answer ?? ''));
  const labels = extractLabels(text, style);
  const seen = new Set<number>();
  const order: number[] = [];
  let dropped = 0;
  for (const l of labels) {
    const i = labelIndex(l, style);
    if (!Number.isInteger(i) || i < 0 || i >= n || seen.has(i)) {
      dropped++;
      continue;
    }
    seen.add(i);
    order.push(i);
  }
  if (order.length === 0) return { order: identity, status: 'fallback' };
  const missing = identity.filter((i) => !seen.has(i));
  order.push(...missing);
  return { order, status: dropped === 0 && missing.length === 0 ? 'clean' : 'repaired' };
}

function extractLabels(text: string, style: IdStyle): string[] {
  const idPattern = style === 'number' ? '\\d{1,4}' : '[A-Za-z]{1,2}';
  // 1. Bracketed ids are unambiguous: `[3] > [1]`.
  const bracketed = [...text.matchAll(new RegExp(`\\[\\s*(${idPattern})\\s*\\]`, 'g'))].map((m) => m[1]);
  if (bracketed.length > 0) return style === 'letter' ? bracketed.map((s) => s.toUpperCase()) : bracketed;
  // 2. The longest `a > b > c` chain: bare ids in prose ("Passage A is …") are not ids.
  const chain = new RegExp(`(?<![\\w])(${idPattern})(?:\\s*>\\s*(${idPattern}))+(?![\\w])`, 'g');
  let best: string[] = [];
  for (const m of text.matchAll(chain)) {
    const ids = m[0].split('>').map((s) => s.trim());
    if (ids.length > best.length) best = ids;
  }
  if (best.length > 0) return style === 'letter' ? best.map((s) => s.toUpperCase()) : best;
  // 3. Numbers only: a comma or space separated list (`3, 1, 2`); letters in prose are words.
  if (style === 'number') return [...text.matchAll(/(?<![\w.])(\d{1,4})(?![\w.])/g)].map((m) => m[1]);
  const single = /^\s*([A-Za-z]{1,2})\s*[.)]?\s*$/.exec(text);
  return single ? [single[1].toUpperCase()] : [];
}

/**
 * Rewrites anything that looks like an id label inside passage or query text (`[3]`, `[B]`)
 * so a passage cannot steer the parser ("[1] > [2]" inside a document).
 */
export function defuseIds(text: string): string {
  return text.replace(/\[\s*([\p{Nd}]{1,6}|[A-Za-z]{1,2})\s*\]/gu, '($1)');
}

/** One alternative for the first answer token and its log-probability. */
export interface TokenLogprob {
  token: string;
  logprob: number;
}

/** Probability mass per option (`yes`, `no`, `0`..`3`), normalised over the options found. */
export function optionProbabilities(top: readonly TokenLogprob[] | undefined, options: readonly string[]): number[] | undefined {
  if (!top || top.length === 0) return undefined;
  const mass = options.map(() => 0);
  for (const t of top) {
    const tok = normalizeDigits(t.token).trim().toLowerCase();
    const i = options.indexOf(tok);
    if (i >= 0 && Number.isFinite(t.logprob)) mass[i] += Math.exp(t.logprob);
  }
  const total = mass.reduce((a, b) => a + b, 0);
  if (total <= 0) return undefined;
  return mass.map((m) => m / total);
}

/** A yes/no answer as text: 1, 0, or undefined when it says neither. */
export function parseYesNo(answer: string): number | undefined {
  const text = stripReasoning(answer ?? '').trim().toLowerCase();
  const m = /\b(yes|no)\b/.exec(text);
  if (!m) return undefined;
  return m[1] === 'yes' ? 1 : 0;
}

/** A grade in [0, max] as text: the first number in range, or undefined. */
export function parseGrade(answer: string, max: number): number | undefined {
  const text = normalizeDigits(stripReasoning(answer ?? ''));
  for (const m of text.matchAll(/(?<![\w.])(\d+)(?![\w])/g)) {
    const g = Number(m[1]);
    if (g >= 0 && g <= max) return g;
  }
  return undefined;
}
