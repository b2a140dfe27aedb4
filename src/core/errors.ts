/**
 * Every failure a person can cause (bad input, missing files, wrong model) is a WinnowError.
 * The CLI prints `message` and `hint` and exits with `exitCode`; the server maps `code` to
 * an HTTP status. Anything else reaching the top is a bug in Winnow.
 */
export type ErrorCode =
  | 'usage'
  | 'not_found'
  | 'bad_input'
  | 'bad_spec'
  | 'corrupt_index'
  | 'version_mismatch'
  | 'model_error'
  | 'unavailable'
  | 'internal';

const EXIT_CODES: Record<ErrorCode, number> = {
  usage: 2,
  not_found: 3,
  bad_input: 4,
  bad_spec: 4,
  corrupt_index: 5,
  version_mismatch: 5,
  model_error: 6,
  unavailable: 7,
  internal: 70,
};

export class WinnowError extends Error {
  readonly code: ErrorCode;
  readonly hint?: string;

  constructor(code: ErrorCode, message: string, hint?: string) {
    super(message);
    this.name = 'WinnowError';
    this.code = code;
    this.hint = hint;
  }

  get exitCode(): number {
    return EXIT_CODES[this.code];
  }
}

/** Names a place in an input file so the message can point at it: `queries.jsonl:17`. */
export function atLine(file: string, line: number): string {
  return `${file}:${line}`;
}
