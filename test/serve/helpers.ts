import { connect, type Socket } from 'node:net';
import type { Costs } from '../../src/core/costs.js';
import type { Doc, ScoreKind } from '../../src/core/types.js';
import { Pipeline } from '../../src/cascade/pipeline.js';
import { Rerank } from '../../src/rerank/rerank.js';
import type { MultiQueryScorer } from '../../src/serve/batcher.js';
import { BatchingScorer, type BatcherOptions } from '../../src/serve/batcher.js';
import { createServer, type ServerOptions, type WinnowServer } from '../../src/serve/server.js';

/**
 * A deterministic stand-in for a cross-encoder: the score is the number of distinct query
 * tokens found in the document, scaled and shifted so it looks like a logit (negative when
 * nothing matches). `delayMs` simulates model time per call; calls and pairs are counted.
 */
export class OverlapScorer implements MultiQueryScorer {
  readonly id: string;
  calls = 0;
  pairs = 0;
  batchSizes: number[] = [];

  constructor(
    readonly kind: ScoreKind = 'logit',
    readonly delayMs = 0,
    readonly scale = 1,
    name = 'overlap',
  ) {
    this.id = `${name}(scale=${scale})`;
  }

  static scoreOne(query: string, text: string, scale = 1): number {
    const q = new Set(query.toLowerCase().split(/\W+/).filter(Boolean));
    const d = new Set(text.toLowerCase().split(/\W+/).filter(Boolean));
    let n = 0;
    for (const t of q) if (d.has(t)) n++;
    // length tie-breaker keeps orders strict and deterministic
    return scale * (n - 1) - text.length * 1e-4;
  }

  async score(query: string, docs: readonly Doc[], _costs?: Costs): Promise<Float32Array> {
    return (await this.scoreMany([{ query, docs }]))[0];
  }

  async scoreMany(requests: readonly { query: string; docs: readonly Doc[] }[]): Promise<Float32Array[]> {
    this.calls++;
    const n = requests.reduce((a, r) => a + r.docs.length, 0);
    this.pairs += n;
    this.batchSizes.push(n);
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    return requests.map((r) => Float32Array.from(r.docs.map((d) => OverlapScorer.scoreOne(r.query, d.title ? `${d.title} ${d.text}` : d.text, this.scale))));
  }
}

/**
 * An OverlapScorer whose model calls wait while the gate is held, and which advances its own
 * clock by `msPerPair` per pair scored: a BatchingScorer given `clock` measures exactly that
 * rate. Tests then hold work in the queue and know what the batcher predicts, on any machine.
 */
export class GatedScorer extends OverlapScorer {
  /** model calls started, including those waiting at the gate */
  started = 0;
  now = 0;
  private held = false;
  private waiting: (() => void)[] = [];
  readonly clock = (): number => this.now;

  constructor(
    readonly msPerPair = 0,
    name = 'gated',
  ) {
    super('logit', 0, 1, name);
  }

  hold(): void {
    this.held = true;
  }

  release(): void {
    this.held = false;
    this.waiting.splice(0).forEach((go) => go());
  }

  override async scoreMany(requests: readonly { query: string; docs: readonly Doc[] }[]): Promise<Float32Array[]> {
    this.started++;
    if (this.held) await new Promise<void>((go) => this.waiting.push(go));
    this.now += this.msPerPair * requests.reduce((a, r) => a + r.docs.length, 0);
    return super.scoreMany(requests);
  }
}

/** Resolves once `cond()` holds, checking every few ms; the test's timeout bounds the wait. */
export async function waitFor(cond: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await cond())) await new Promise((r) => setTimeout(r, 5));
}

/** A raw TCP connection to the server, for requests no HTTP client would send (half-sent, slow). */
export interface RawConnection {
  socket: Socket;
  /** everything the server sent, once the connection has closed */
  closed: Promise<string>;
  /** whether it has closed yet */
  isClosed(): boolean;
}

export function rawConnect(url: string): Promise<RawConnection> {
  const { port, hostname } = new URL(url);
  const socket = connect(Number(port), hostname);
  let data = '';
  let isClosed = false;
  socket.setEncoding('latin1');
  socket.on('data', (d: string) => (data += d));
  // a reset from the server is an expected outcome for some tests; the close event says it
  socket.on('error', () => undefined);
  const closed = new Promise<string>((resolve) =>
    socket.once('close', () => {
      isClosed = true;
      resolve(data);
    }),
  );
  return new Promise((resolve) => {
    socket.once('connect', () => resolve({ socket, closed, isClosed: () => isClosed }));
    // refused before connecting (a full backlog): still a connection the caller accounts for
    socket.once('close', () => resolve({ socket, closed, isClosed: () => isClosed }));
  });
}

/** The status, headers and JSON body of the first response in raw socket text. */
export function parseResponse(raw: string): { status: number; headers: Record<string, string>; json: any } { // any: checked field by field in tests
  const [head, ...rest] = raw.split('\r\n\r\n');
  const lines = head.split('\r\n');
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(lines[0] ?? '')?.[1] ?? NaN);
  const headers: Record<string, string> = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  const body = rest.join('\r\n\r\n');
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    json = body;
  }
  return { status, headers, json };
}

/** The same scorer without `scoreMany`, so the batcher's per-query fallback is exercised. */
export class SingleQueryScorer implements Pick<OverlapScorer, 'id' | 'kind' | 'score'> {
  readonly id: string;
  readonly kind: ScoreKind;
  calls = 0;
  constructor(readonly inner: OverlapScorer) {
    this.id = `single-${inner.id}`;
    this.kind = inner.kind;
  }
  async score(query: string, docs: readonly Doc[]): Promise<Float32Array> {
    this.calls++;
    return this.inner.score(query, docs);
  }
}

export const DOCS = [
  'Carson City is the capital city of the American state of Nevada.',
  'The Commonwealth of the Northern Mariana Islands is a group of islands in the Pacific Ocean. Its capital is Saipan.',
  'Capitalization or capitalisation in English grammar is the use of a capital letter at the start of a word.',
  'Washington, D.C. (also known as simply Washington or D.C., and officially as the District of Columbia) is the capital of the United States.',
  'Capital punishment has existed in the United States since before the United States was a country.',
];
export const QUERY = 'What is the capital of the United States?';

/** A two-stage cascade: a cheap scorer, keep `keep`, a (slower) heavy scorer. */
export function twoStage(light: OverlapScorer, heavy: OverlapScorer, keep: number, batch?: BatcherOptions | false): Pipeline {
  const wrap = (s: OverlapScorer) => (batch === false ? s : new BatchingScorer(s, batch ?? { maxWaitMs: 2 }));
  return new Pipeline([new Rerank(wrap(light), 'light')]).top(keep).andThen(new Rerank(wrap(heavy), 'heavy'));
}

/** Starts a server on a random loopback port with request logs collected, not printed. */
export async function start(opts: Partial<ServerOptions> & Pick<ServerOptions, 'cascades'>): Promise<{ server: WinnowServer; url: string; logs: Record<string, unknown>[] }> {
  const logs: Record<string, unknown>[] = [];
  const server = createServer({ log: (e) => logs.push(e), ...opts });
  const url = await server.listen(0, '127.0.0.1');
  return { server, url, logs };
}

export async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any; headers: Headers }> { // any: response bodies are checked field by field in tests
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, json, headers: res.headers };
}
