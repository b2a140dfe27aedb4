import { stemmer } from 'stemmer';

/**
 * Lucene's `EnglishAnalyzer.ENGLISH_STOP_WORDS_SET`. Anserini's BEIR "flat" BM25 indexes with
 * exactly this list, so using it keeps our scores comparable to the published runs.
 */
export const ENGLISH_STOP_WORDS: ReadonlySet<string> = new Set([
  'a', 'an', 'and', 'are', 'as', 'at', 'be', 'but', 'by', 'for', 'if', 'in', 'into', 'is', 'it',
  'no', 'not', 'of', 'on', 'or', 'such', 'that', 'the', 'their', 'then', 'there', 'these',
  'they', 'this', 'to', 'was', 'will', 'with',
]);

export interface AnalyzerOptions {
  /** Porter stemming (Lucene's PorterStemFilter). Default true. */
  stem?: boolean;
  /** Stop words to drop; `false` keeps every token. Default: Lucene's English set. */
  stopWords?: ReadonlySet<string> | false;
}

/**
 * Word-break classes, a subset of UAX#29 (what Lucene's StandardTokenizer implements) that
 * covers the rules changing English/scientific text: letters and digits join (`covid19`),
 * `.`/`'` join letters (`u.s`, `don't`), `.`/`,` join digits (`0.05`, `3,000`).
 */
const enum Cls {
  Other = 0,
  Letter = 1,
  Numeric = 2,
  /** Han/Hiragana/Thai-like scripts: StandardTokenizer emits each character on its own. */
  Ideo = 3,
  ExtendNumLet = 4,
  MidLetter = 5,
  MidNum = 6,
  MidNumLet = 7,
  SingleQuote = 8,
  /** Combining marks and format characters (soft hyphen, ZWJ) never break a word (WB4). */
  Extend = 9,
  Katakana = 10,
}

const MID_LETTER = new Set([0x3a, 0xb7, 0x387, 0x5f4, 0x2027, 0xfe13, 0xfe55, 0xff1a]);
const MID_NUM = new Set([
  0x2c, 0x3b, 0x37e, 0x589, 0x60c, 0x60d, 0x66c, 0x7f8, 0x2044, 0xfe10, 0xfe14, 0xfe50, 0xfe54,
  0xff0c, 0xff1b,
]);
const MID_NUM_LET = new Set([0x2e, 0x2018, 0x2019, 0x2024, 0xfe52, 0xff07, 0xff0e]);

const RE_IDEO = /[\p{Script=Han}\p{Script=Hiragana}]/u;
const RE_KATAKANA = /\p{Script=Katakana}/u;
const RE_LETTER = /\p{L}/u;
const RE_NUMERIC = /\p{Nd}/u;
const RE_NUMBER_OTHER = /\p{N}/u;
const RE_EXTEND = /[\p{M}\p{Cf}]/u;
const RE_CONNECTOR = /\p{Pc}/u;

function classify(cp: number): Cls {
  if (cp === 0x27) return Cls.SingleQuote;
  if (MID_NUM_LET.has(cp)) return Cls.MidNumLet;
  if (MID_LETTER.has(cp)) return Cls.MidLetter;
  if (MID_NUM.has(cp)) return Cls.MidNum;
  const ch = String.fromCodePoint(cp);
  if (RE_IDEO.test(ch)) return Cls.Ideo;
  if (RE_KATAKANA.test(ch)) return Cls.Katakana;
  if (RE_LETTER.test(ch)) return Cls.Letter;
  if (RE_NUMERIC.test(ch)) return Cls.Numeric;
  // Superscripts, fractions, roman numerals: UAX#29 has no class for them, but `\p{N}` counts
  // them and the brief asks for letter/number tokens, so they join words like letters.
  if (RE_NUMBER_OTHER.test(ch)) return Cls.Letter;
  if (RE_EXTEND.test(ch)) return Cls.Extend;
  if (RE_CONNECTOR.test(ch)) return Cls.ExtendNumLet;
  return Cls.Other;
}

/** BMP classes computed once per process (64 KiB), astral code points on demand. */
const BMP_CLASS = new Uint8Array(0x10000);
for (let cp = 0; cp < 0x10000; cp++) BMP_CLASS[cp] = classify(cp);
const ASTRAL_CLASS = new Map<number, Cls>();

function classAt(cp: number): Cls {
  if (cp < 0x10000) return BMP_CLASS[cp] as Cls;
  let c = ASTRAL_CLASS.get(cp);
  if (c === undefined) {
    c = classify(cp);
    ASTRAL_CLASS.set(cp, c);
  }
  return c;
}

/** Lucene's StandardTokenizer default: longer tokens are cut into pieces of this length. */
const MAX_TOKEN_LENGTH = 255;

const NON_ASCII = /[^\x00-\x7f]/;

function isWordClass(c: Cls): boolean {
  return c === Cls.Letter || c === Cls.Numeric || c === Cls.Katakana || c === Cls.ExtendNumLet;
}

/**
 * Splits `text` into word tokens following UAX#29 word boundaries like Lucene's
 * StandardTokenizer, calling `emit(start, end)` with UTF-16 offsets into `text`. Callbacks
 * instead of arrays keep the corpus pass free of intermediate token lists.
 */
export function tokenizeOffsets(text: string, emit: (start: number, end: number) => void): void {
  const n = text.length;
  let i = 0;
  while (i < n) {
    let cp = text.charCodeAt(i);
    if (cp >= 0xd800 && cp < 0xdc00 && i + 1 < n) cp = text.codePointAt(i)!;
    const c = classAt(cp);
    const width = cp > 0xffff ? 2 : 1;
    if (c === Cls.Ideo) {
      let end = i + width;
      while (end < n && classAt(text.codePointAt(end)!) === Cls.Extend) end++;
      emit(i, end);
      i = end;
      continue;
    }
    if (!isWordClass(c)) {
      i += width;
      continue;
    }
    // Inside a word: `last` is the class of the last word character, ignoring Extend (WB4).
    const start = i;
    let last: Cls = c;
    let hasAlnum = c !== Cls.ExtendNumLet;
    i += width;
    while (i < n) {
      let cp2 = text.charCodeAt(i);
      if (cp2 >= 0xd800 && cp2 < 0xdc00 && i + 1 < n) cp2 = text.codePointAt(i)!;
      const w2 = cp2 > 0xffff ? 2 : 1;
      const c2 = classAt(cp2);
      if (c2 === Cls.Extend) {
        i += w2;
        continue;
      }
      if (joins(last, c2)) {
        last = c2;
        if (c2 !== Cls.ExtendNumLet) hasAlnum = true;
        i += w2;
        continue;
      }
      if (c2 === Cls.MidLetter || c2 === Cls.MidNum || c2 === Cls.MidNumLet || c2 === Cls.SingleQuote) {
        // WB6/7 and WB11/12: a middle character joins only when the same kind follows it.
        let j = i + w2;
        while (j < n && classAt(text.codePointAt(j)!) === Cls.Extend) j++;
        if (j < n) {
          const next = classAt(text.codePointAt(j)!);
          const letterMid = last === Cls.Letter && next === Cls.Letter && c2 !== Cls.MidNum;
          const numMid = last === Cls.Numeric && next === Cls.Numeric && c2 !== Cls.MidLetter;
          if (letterMid || numMid) {
            i = j;
            continue;
          }
        }
      }
      break;
    }
    if (!hasAlnum) continue;
    for (let s = start; s < i; s += MAX_TOKEN_LENGTH) emit(s, Math.min(i, s + MAX_TOKEN_LENGTH));
  }
}

function joins(a: Cls, b: Cls): boolean {
  const aWord = a === Cls.Letter || a === Cls.Numeric;
  const bWord = b === Cls.Letter || b === Cls.Numeric;
  if (aWord && bWord) return true; // WB5, WB8, WB9, WB10
  if (a === Cls.Katakana && b === Cls.Katakana) return true; // WB13
  if (b === Cls.ExtendNumLet) return aWord || a === Cls.Katakana || a === Cls.ExtendNumLet; // WB13a
  if (a === Cls.ExtendNumLet) return bWord || b === Cls.Katakana; // WB13b
  return false;
}

/** Lucene's EnglishPossessiveFilter: a trailing `'s` / `’s` / `＇s` goes. */
function stripPossessive(tok: string): string {
  const n = tok.length;
  if (n < 2) return tok;
  const last = tok.charCodeAt(n - 1);
  if (last !== 0x73 && last !== 0x53) return tok;
  const q = tok.charCodeAt(n - 2);
  return q === 0x27 || q === 0x2019 || q === 0xff07 ? tok.slice(0, n - 2) : tok;
}

/**
 * Lucene EnglishAnalyzer's chain (StandardTokenizer → EnglishPossessiveFilter → LowerCase →
 * Stop → PorterStem) with NFKC normalisation in front. One instance keeps a cache from the
 * raw lowercased token to its final term (or to the empty string for dropped tokens), so the
 * regex-heavy Porter stemmer runs once per distinct word, not once per occurrence.
 */
export class Analyzer {
  readonly stem: boolean;
  readonly stopWords: ReadonlySet<string>;
  private readonly cache = new TokenCache();

  constructor(opts: AnalyzerOptions = {}) {
    this.stem = opts.stem ?? true;
    this.stopWords = opts.stopWords === false ? new Set() : (opts.stopWords ?? ENGLISH_STOP_WORDS);
  }

  /** Calls `emit` with each term of `text` in order. */
  forEachTerm(text: string, emit: (term: string) => void): void {
    // Lowercasing the whole text at once is much cheaper than per token and leaves every
    // character's word-break class unchanged (letters stay letters).
    let norm = NON_ASCII.test(text) ? text.normalize('NFKC') : text;
    norm = norm.toLowerCase();
    const cache = this.cache;
    tokenizeOffsets(norm, (s, e) => {
      let term = cache.get(norm, s, e);
      if (term === undefined) term = cache.add(norm, s, e, this.termOf(norm.slice(s, e)));
      if (term.length > 0) emit(term);
    });
  }

  /** The terms of `text`, in order, repeats kept. */
  analyze(text: string): string[] {
    const out: string[] = [];
    this.forEachTerm(text, (t) => out.push(t));
    return out;
  }

  private termOf(raw: string): string {
    const tok = stripPossessive(raw);
    if (tok.length === 0 || this.stopWords.has(tok)) return '';
    return this.stem ? stemmer(tok) : tok;
  }
}

/**
 * Raw token → final term ('' for dropped tokens), looked up by a text range instead of a
 * string. A `Map<string, string>` needs `text.slice()` per token and then hashes that fresh
 * string: measured 2x slower over SciFact than this table, where the hash comes from the
 * char codes and a hit allocates nothing. Open addressing with linear probing; each slot holds
 * (hash, entry + 1) side by side and each entry (pool start, length) likewise, so a probe
 * touches few cache lines; raw tokens live in one UTF-16 pool.
 */
class TokenCache {
  private static readonly LIMIT = 1 << 20;
  private slots: Int32Array = new Int32Array(2 << 16); // [hash, entry + 1] pairs; entry + 1 = 0: empty
  private entries: Int32Array = new Int32Array(2 << 15); // [pool start, length] pairs
  private pool: Uint16Array = new Uint16Array(1 << 18);
  private poolLen = 0;
  private terms: string[] = [];

  get(text: string, start: number, end: number): string | undefined {
    const h = hashRange(text, start, end);
    const slots = this.slots;
    const mask = (slots.length >> 1) - 1;
    const len = end - start;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const e = slots[2 * i + 1] - 1;
      if (e < 0) return undefined;
      if (slots[2 * i] !== h || this.entries[2 * e + 1] !== len) continue;
      const pool = this.pool;
      const ps = this.entries[2 * e];
      let j = 0;
      while (j < len && pool[ps + j] === text.charCodeAt(start + j)) j++;
      if (j === len) return this.terms[e];
    }
  }

  add(text: string, start: number, end: number, term: string): string {
    if (this.terms.length >= TokenCache.LIMIT) this.clear();
    const e = this.terms.length;
    const len = end - start;
    if (2 * e + 2 > this.entries.length) this.entries = grow(this.entries, 2 * e + 2);
    if (this.poolLen + len > this.pool.length) {
      const bigger = new Uint16Array(Math.max(2 * this.pool.length, this.poolLen + len));
      bigger.set(this.pool);
      this.pool = bigger;
    }
    for (let j = 0; j < len; j++) this.pool[this.poolLen + j] = text.charCodeAt(start + j);
    this.entries[2 * e] = this.poolLen;
    this.entries[2 * e + 1] = len;
    this.poolLen += len;
    this.terms.push(term);
    // Keep the load factor at or below 1/2; rehashing recomputes hashes from the pool.
    if (2 * (e + 1) > this.slots.length >> 1) this.rehash(this.slots.length);
    else this.insert(hashRange(text, start, end), e);
    return term;
  }

  private insert(h: number, e: number): void {
    const mask = (this.slots.length >> 1) - 1;
    let i = h & mask;
    while (this.slots[2 * i + 1] !== 0) i = (i + 1) & mask;
    this.slots[2 * i] = h;
    this.slots[2 * i + 1] = e + 1;
  }

  private rehash(pairs: number): void {
    this.slots = new Int32Array(2 * pairs);
    for (let e = 0; e < this.terms.length; e++) {
      const ps = this.entries[2 * e];
      this.insert(hashPool(this.pool, ps, ps + this.entries[2 * e + 1]), e);
    }
  }

  private clear(): void {
    this.slots.fill(0);
    this.poolLen = 0;
    this.terms = [];
  }
}

function grow(a: Int32Array, min: number): Int32Array {
  const bigger = new Int32Array(Math.max(2 * a.length, min));
  bigger.set(a);
  return bigger;
}

/** `hashRange` over pooled char codes; must agree with it exactly. */
function hashPool(pool: Uint16Array, start: number, end: number): number {
  let h = 0x811c9dc5;
  for (let i = start; i < end; i++) h = Math.imul(h ^ pool[i], 0x01000193);
  return finishHash(h);
}

/** FNV-1a over UTF-16 code units, with a final avalanche so low bits spread over the table. */
function hashRange(text: string, start: number, end: number): number {
  let h = 0x811c9dc5;
  for (let i = start; i < end; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return finishHash(h);
}

function finishHash(h: number): number {
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  return (h ^ (h >>> 12)) | 0;
}

const defaultAnalyzer = new Analyzer();

/** Terms of `text` with the default (Lucene EnglishAnalyzer-like) analyzer. */
export function analyze(text: string): string[] {
  return defaultAnalyzer.analyze(text);
}
