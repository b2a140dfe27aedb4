/**
 * Winnow's own rerank wire format, spoken by `winnow serve` (`POST /v1/cascade`) and by the
 * `winnow:` remote scorer. Server and client import these types so the two cannot drift.
 */

/** A candidate: a bare string (its id is then its position) or a document with an id. */
export type NativeDocument = string | { id?: string; text: string; title?: string };

export interface NativeRequest {
  query: string;
  documents: NativeDocument[];
  /** results returned, best first; default all */
  top_n?: number;
  /** which cascade of the server to run; default the server's default cascade */
  model?: string;
  /** the server degrades (skips its heaviest stages) rather than answer later than this */
  deadline_ms?: number;
}

export interface NativeResult {
  /** position of the candidate in the request's `documents` */
  index: number;
  /** the candidate's id, or its index as a string for bare-string documents */
  id: string;
  /** the score that ordered the final ranking */
  score: number;
  /** every stage's score for this candidate, keyed by stage name */
  scores: Record<string, number>;
}

export interface NativeStageTrace {
  stage: string;
  in: number;
  out: number;
  ms: number;
}

export interface NativeResponse {
  results: NativeResult[];
  stages: NativeStageTrace[];
  /** true when a stage was skipped to meet `deadline_ms`: scores then come from an earlier stage */
  degraded?: boolean;
  skipped_stage?: string;
}

export const NATIVE_ROUTE = '/v1/cascade';
/** documents a client puts in one request, and the least a server should accept */
export const NATIVE_MAX_DOCUMENTS = 1000;
