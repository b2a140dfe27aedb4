import { WinnowError, atLine } from '../../core/errors.js';
import { readLines } from './lines.js';

export interface JsonlRecord {
  value: unknown;
  /** 1-based line number in the file, for error messages. */
  lineNo: number;
}

/**
 * Streams the objects of a JSON-lines file with their line numbers. Blank lines are skipped,
 * CR before LF is dropped. A line that is not JSON stops the read with the file and line.
 */
export async function* readJsonl(file: string, what = 'JSONL file'): AsyncGenerator<JsonlRecord> {
  for await (const { text, lineNo } of readLines(file, what)) {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw new WinnowError('bad_input', `${atLine(file, lineNo)}: not valid JSON (${(err as Error).message})`);
    }
    yield { value, lineNo };
  }
}

/** A parsed line that must be a JSON object, or a bad_input error naming the line. */
export function asObject(value: unknown, file: string, lineNo: number): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new WinnowError('bad_input', `${atLine(file, lineNo)}: expected a JSON object, got ${jsonType(value)}`);
  }
  return value as Record<string, unknown>;
}

export function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/**
 * Reads an id field: strings as they are, integers stringified (some BEIR corpora write
 * `"_id": 123`). Returns undefined when none of `fields` is present.
 */
export function idField(
  obj: Record<string, unknown>,
  fields: readonly string[],
  file: string,
  lineNo: number,
): string | undefined {
  for (const f of fields) {
    const v = obj[f];
    if (v === undefined || v === null) continue;
    if (typeof v === 'string') {
      if (v.length === 0) throw new WinnowError('bad_input', `${atLine(file, lineNo)}: "${f}" is empty`);
      return v;
    }
    if (typeof v === 'number' && Number.isFinite(v)) return String(v);
    throw new WinnowError('bad_input', `${atLine(file, lineNo)}: "${f}" must be a string or number, got ${jsonType(v)}`);
  }
  return undefined;
}

/** Reads a text field; returns undefined when none of `fields` is present. */
export function textField(
  obj: Record<string, unknown>,
  fields: readonly string[],
  file: string,
  lineNo: number,
): string | undefined {
  for (const f of fields) {
    const v = obj[f];
    if (v === undefined || v === null) continue;
    if (typeof v === 'string') return v;
    throw new WinnowError('bad_input', `${atLine(file, lineNo)}: "${f}" must be a string, got ${jsonType(v)}`);
  }
  return undefined;
}
