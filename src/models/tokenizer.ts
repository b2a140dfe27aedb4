import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { LRUCache } from 'lru-cache';
import { WinnowError } from '../core/errors.js';

/**
 * Hugging Face `tokenizer.json` tokenizers (WordPiece, Unigram, BPE) on top of
 * `@huggingface/tokenizers`, which reproduces the Rust normalizers, pre-tokenizers and models
 * exactly but has no truncation. Truncation and special tokens are therefore done here, on
 * token ids: texts are tokenized without special tokens, cut, then laid out with the
 * template the tokenizer's post-processor describes (read once by running it on sentinels).
 *
 * Text is made well-formed first: a lone UTF-16 surrogate becomes U+FFFD, the character a
 * UTF-8 round trip (and so the Python reference) would produce; it never throws.
 */

/** how a pair is cut when it does not fit */
export type PairTruncation =
  /** cut only the document; the query is cut (to about half) only if it alone overflows */
  | 'keep_query'
  /** Hugging Face `only_second`; a query that alone overflows is cut like `keep_query` */
  | 'only_second'
  /** Hugging Face `longest_first` (the sentence-transformers CrossEncoder default) */
  | 'longest_first';

/** One encoded sequence with special tokens. */
export interface Encoding {
  ids: Int32Array;
  typeIds: Uint8Array;
  /** tokens dropped from the query and the document by truncation */
  cut: number;
}

/** A padded batch, ready for int64 ORT tensors. Row-major [batch, length]. */
export interface EncodedBatch {
  batch: number;
  length: number;
  inputIds: BigInt64Array;
  attentionMask: BigInt64Array;
  tokenTypeIds: BigInt64Array;
  /** unpadded length of each row */
  lengths: Int32Array;
}

type Slot = { special: number; type: number } | { seq: 'A' | 'B'; type: number };

const SENTINEL_A = '\u0000winnow:A';
const SENTINEL_B = '\u0000winnow:B';
const CACHE_ENTRIES = 20_000;

export class TextTokenizer {
  /** largest token id + 1 (added tokens included); must fit the model's embedding table */
  readonly vocabSize: number;
  readonly padId: number;
  readonly unkId: number | undefined;
  readonly maskId: number | undefined;
  /** `model_max_length` from tokenizer_config.json when it is a real limit */
  readonly modelMaxLength: number | undefined;
  private readonly single: Slot[];
  private readonly pair: Slot[];
  /** documents recur across queries; least recently tokenized texts go first */
  private readonly cache = new LRUCache<string, Int32Array>({ max: CACHE_ENTRIES });

  private constructor(
    private readonly tok: Tokenizer,
    config: Record<string, unknown>,
    readonly source: string,
  ) {
    let maxId = -1;
    for (const id of tok.get_vocab(true).values()) if (id > maxId) maxId = id;
    this.vocabSize = maxId + 1;
    this.unkId = idOf(tok, config.unk_token);
    this.maskId = idOf(tok, config.mask_token);
    this.padId = idOf(tok, config.pad_token) ?? 0;
    const max = config.model_max_length;
    // transformers writes 1e30 when a tokenizer has no limit
    this.modelMaxLength = typeof max === 'number' && max > 0 && max < 1e9 ? max : undefined;
    this.single = this.layout(false);
    this.pair = this.layout(true);
  }

  /** Reads `tokenizer.json` (+ `tokenizer_config.json` if present) from a model folder. */
  static fromFolder(dir: string): TextTokenizer {
    const file = path.join(dir, 'tokenizer.json');
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      const missing = (e as NodeJS.ErrnoException).code === 'ENOENT';
      throw new WinnowError(
        'model_error',
        missing ? `${dir}: no tokenizer.json` : `${file}: not valid JSON (${(e as Error).message})`,
        'Winnow needs the fast-tokenizer file tokenizer.json next to the model; export it with ' +
          'AutoTokenizer.from_pretrained(...).save_pretrained(folder) or pull the model again',
      );
    }
    let config: Record<string, unknown> = {};
    try {
      config = JSON.parse(readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new WinnowError('model_error', `${dir}/tokenizer_config.json: ${(e as Error).message}`);
      }
    }
    try {
      return new TextTokenizer(new Tokenizer(json as object, config), config, file);
    } catch (e) {
      if (e instanceof WinnowError) throw e;
      throw new WinnowError(
        'model_error',
        `${file}: unsupported or corrupt tokenizer (${(e as Error).message})`,
        'supported: WordPiece, Unigram and BPE tokenizer.json files',
      );
    }
  }

  /** Token ids of `text` without special tokens. Memoised: documents recur across queries. */
  ids(text: string): Int32Array {
    const hit = this.cache.get(text);
    if (hit) return hit;
    const clean = wellFormed(text);
    const out = Int32Array.from(this.tok.encode(clean, { add_special_tokens: false }).ids);
    this.cache.set(text, out);
    return out;
  }

  tokenId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  /** special tokens added around one sequence / a pair */
  get singleSpecials(): number {
    return this.single.filter((s) => 'special' in s).length;
  }

  get pairSpecials(): number {
    return this.pair.filter((s) => 'special' in s).length;
  }

  /** One text with special tokens, cut from the right to `maxLength` tokens in total. */
  encode(text: string, maxLength?: number): Encoding {
    const ids = this.ids(text);
    const budget = maxLength === undefined ? Infinity : Math.max(0, maxLength - this.singleSpecials);
    const keep = Math.min(ids.length, budget);
    return this.assemble(this.single, ids.subarray(0, keep), undefined, ids.length - keep);
  }

  /** Token ids (no special tokens) laid out as one sequence with special tokens, uncut. */
  encodeIds(ids: Int32Array): Encoding {
    return this.assemble(this.single, ids, undefined, 0);
  }

  /** A (query, document) pair with special tokens, cut to `maxLength` tokens in total. */
  encodePair(query: string, doc: string, maxLength?: number, truncation: PairTruncation = 'keep_query'): Encoding {
    return this.encodePairIds(this.ids(query), this.ids(doc), maxLength, truncation);
  }

  encodePairIds(q: Int32Array, d: Int32Array, maxLength?: number, truncation: PairTruncation = 'keep_query'): Encoding {
    const budget = maxLength === undefined ? Infinity : Math.max(0, maxLength - this.pairSpecials);
    const [nq, nd] = pairLengths(q.length, d.length, budget, truncation);
    return this.assemble(this.pair, q.subarray(0, nq), d.subarray(0, nd), q.length - nq + d.length - nd);
  }

  /** Pads encodings to the longest one (dynamic padding) with the pad id and mask 0. */
  pad(encodings: readonly Encoding[]): EncodedBatch {
    let length = 0;
    for (const e of encodings) if (e.ids.length > length) length = e.ids.length;
    const batch = encodings.length;
    const inputIds = new BigInt64Array(batch * length).fill(BigInt(this.padId));
    const attentionMask = new BigInt64Array(batch * length);
    const tokenTypeIds = new BigInt64Array(batch * length);
    const lengths = new Int32Array(batch);
    encodings.forEach((e, r) => {
      const o = r * length;
      lengths[r] = e.ids.length;
      for (let i = 0; i < e.ids.length; i++) {
        inputIds[o + i] = BigInt(e.ids[i]);
        attentionMask[o + i] = 1n;
        tokenTypeIds[o + i] = BigInt(e.typeIds[i]);
      }
    });
    return { batch, length, inputIds, attentionMask, tokenTypeIds, lengths };
  }

  private assemble(slots: Slot[], a: Int32Array, b: Int32Array | undefined, cut: number): Encoding {
    let n = 0;
    for (const s of slots) n += 'special' in s ? 1 : s.seq === 'A' ? a.length : (b?.length ?? 0);
    const ids = new Int32Array(n);
    const typeIds = new Uint8Array(n);
    let o = 0;
    for (const s of slots) {
      if ('special' in s) {
        ids[o] = s.special;
        typeIds[o++] = s.type;
        continue;
      }
      const seq = s.seq === 'A' ? a : b;
      if (!seq) continue;
      ids.set(seq, o);
      typeIds.fill(s.type, o, o + seq.length);
      o += seq.length;
    }
    return { ids, typeIds, cut };
  }

  /** Runs the post-processor on sentinels to learn where special tokens and sequences go. */
  private layout(pair: boolean): Slot[] {
    const pp = this.tok.post_processor;
    if (!pp) return pair ? [{ seq: 'A', type: 0 }, { seq: 'B', type: 1 }] : [{ seq: 'A', type: 0 }];
    const out = pp.post_process([SENTINEL_A], pair ? [SENTINEL_B] : null, true) as {
      tokens: string[];
      token_type_ids?: number[];
      tokens_pair?: string[];
    };
    // ByteLevel-only processors return the pair separately and add nothing
    const tokens = out.tokens_pair ? [...out.tokens, ...out.tokens_pair] : out.tokens;
    return tokens.map((t, i) => {
      const type = out.token_type_ids?.[i] ?? (out.tokens_pair && i >= out.tokens.length ? 1 : 0);
      if (t === SENTINEL_A) return { seq: 'A', type };
      if (t === SENTINEL_B) return { seq: 'B', type };
      const id = this.tok.token_to_id(t);
      if (id === undefined) {
        throw new WinnowError('model_error', `${this.source}: post-processor special token "${t}" is not in the vocabulary`);
      }
      return { special: id, type };
    });
  }
}

/**
 * How many query and document tokens survive. `longest_first` follows the Rust tokenizers
 * crate exactly (shorter sequence kept if it fits, else both cut to half the budget).
 */
export function pairLengths(nq: number, nd: number, budget: number, truncation: PairTruncation): [number, number] {
  if (nq + nd <= budget) return [nq, nd];
  if (truncation === 'longest_first') {
    const swap = nq > nd;
    let n1 = swap ? nd : nq;
    let n2 = swap ? nq : nd;
    if (n1 > budget) n2 = n1;
    else n2 = Math.min(n2, Math.max(n1, budget - n1));
    if (n1 + n2 > budget) {
      n1 = Math.floor(budget / 2);
      n2 = n1 + (budget % 2);
    }
    return swap ? [n2, n1] : [n1, n2];
  }
  if (nq <= budget) return [nq, budget - nq];
  // the query alone overflows: give the document half (or what it needs, if less)
  const dKeep = Math.min(nd, Math.ceil(budget / 2));
  return [budget - dKeep, dKeep];
}

function idOf(tok: Tokenizer, token: unknown): number | undefined {
  if (typeof token === 'string') return tok.token_to_id(token);
  // tokenizer_config.json may store AddedToken objects: {"content": "[PAD]", ...}
  if (token && typeof token === 'object' && typeof (token as { content?: unknown }).content === 'string') {
    return tok.token_to_id((token as { content: string }).content);
  }
  return undefined;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** Replaces lone UTF-16 surrogates with U+FFFD (what `String.prototype.toWellFormed` does). */
export function wellFormed(text: string): string {
  return text.replace(LONE_SURROGATE, '\uFFFD');
}
