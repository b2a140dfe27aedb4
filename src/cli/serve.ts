import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { WinnowError } from '../core/errors.js';
import { WinnowEnv } from '../cascade/env.js';
import type { Pipeline } from '../cascade/pipeline.js';
import { checkSpec, compileSpec, type CascadeSpec } from '../cascade/spec.js';
import { withBatching } from '../serve/batcher.js';
import { createServer, DEFAULT_LIMITS, type ServeLimits } from '../serve/server.js';
import { command, helpText, intArg, loadPlugins, parseCommand, PLUGIN_FLAG, showHelp } from './args.js';
import { REDIS_FLAGS, redisTierFromFlags } from './redis-flags.js';
import { ScoreCache } from '../cascade/cache.js';

const L = DEFAULT_LIMITS;

export const SERVE_COMMAND = command({
  name: 'serve',
  synopsis: ['--spec cascade.yaml [flags]'],
  about: `Every flag but --spec, --plugin, --no-batching, --no-score-cache, --no-warm-up and
--public-metrics can also be set in the spec's serve: section (max_docs: 500 for --max-docs); the
command line wins.`,
  flags: {
    spec: { type: 'string', arg: 'FILE', help: 'cascade spec (YAML/JSON): {name?, stages} or {cascades: {name: {stages}}}, optional serve: section' },
    port: { type: 'string', arg: 'N', default: '8080', help: '0 picks a free port' },
    host: { type: 'string', arg: 'H', default: '127.0.0.1', help: 'address to listen on' },
    corpus: { type: 'string', arg: 'PATH', help: 'corpus.jsonl (or a folder holding one): documents for retrievers, BM25 statistics' },
    'default-model': { type: 'string', arg: 'NAME', help: 'cascade used when a request names none (default: the first)' },
    'max-batch': { type: 'string', arg: 'N', default: '64', help: 'most pairs per model call' },
    'max-wait-ms': {
      type: 'string',
      arg: 'N',
      default: '0',
      help: 'how long an idle model waits for more requests to batch (requests\narriving while it is busy are batched anyway)',
    },
    queue: { type: 'string', arg: 'N', default: '1024', help: 'most pairs waiting per model; beyond it requests get 429' },
    'no-batching': { type: 'boolean', help: 'call scorers directly, without micro-batching' },
    'no-score-cache': {
      type: 'boolean',
      help: 'score every pair: no score cache, in memory or in the --redis tier\n(benchmarks; a bi-encoder\'s stored embeddings are unaffected)',
    },
    ...PLUGIN_FLAG,
    'max-docs': { type: 'string', arg: 'N', default: String(L.maxDocs), help: 'documents per request' },
    'max-doc-chars': { type: 'string', arg: 'N', default: String(L.maxDocChars), help: 'characters per document' },
    'max-query-chars': { type: 'string', arg: 'N', default: String(L.maxQueryChars), help: 'characters per query' },
    'max-body-bytes': { type: 'string', arg: 'N', default: String(L.maxBodyBytes), help: 'request body size' },
    'deadline-ms': {
      type: 'string',
      arg: 'N',
      default: String(L.defaultDeadlineMs),
      help: 'default time budget per request; request and default deadlines above\n300000 (5 minutes) count as 300000',
    },
    'max-connections': { type: 'string', arg: 'N', default: String(L.maxConnections), help: 'open connections; more are closed as they arrive' },
    'max-buffered-bytes': { type: 'string', arg: 'N', default: String(L.maxBufferedBytes), help: 'request body bytes held across all requests; beyond it 503' },
    'headers-timeout-ms': { type: 'string', arg: 'N', default: String(L.headersTimeoutMs), help: 'time to send the request headers (408 beyond)' },
    'request-timeout-ms': { type: 'string', arg: 'N', default: String(L.requestTimeoutMs), help: 'time to send the whole request, headers and body' },
    'body-timeout-ms': { type: 'string', arg: 'N', default: String(L.bodyTimeoutMs), help: 'longest pause within a request body' },
    'shutdown-grace-ms': {
      type: 'string',
      arg: 'N',
      default: String(L.shutdownGraceMs),
      help: 'on SIGTERM/SIGINT, how long requests get to finish before their\nconnections are cut and the process exits',
    },
    'drain-delay-ms': {
      type: 'string',
      arg: 'N',
      default: '0',
      help: 'on SIGTERM/SIGINT, /ready turns 503 at once but requests are still\naccepted for this long, so a load balancer polling /ready stops sending\nfirst; then --shutdown-grace-ms applies',
    },
    'no-warm-up': {
      type: 'boolean',
      help: 'ready at once, without scoring a warm-up request through each cascade\nfirst (which a cascade with a paid hosted stage is billed for)',
    },
    'keys-file': {
      type: 'string',
      arg: 'F',
      help: 'bearer tokens, one per line (or WINNOW_API_KEYS=k1,k2); they guard\nthe POST routes and /metrics',
    },
    'public-metrics': { type: 'boolean', help: 'serve /metrics without a token even when keys are set' },
    ...REDIS_FLAGS,
  },
});

/** `serve:` keys of a spec file, as written there, and the flag or limit each one sets. */
const SERVE_KEYS: Record<string, string> = {
  port: 'port',
  host: 'host',
  default_model: 'default-model',
  max_batch: 'max-batch',
  max_wait_ms: 'max-wait-ms',
  queue: 'queue',
  max_docs: 'max-docs',
  max_doc_chars: 'max-doc-chars',
  max_query_chars: 'max-query-chars',
  max_body_bytes: 'max-body-bytes',
  deadline_ms: 'deadline-ms',
  max_connections: 'max-connections',
  max_buffered_bytes: 'max-buffered-bytes',
  headers_timeout_ms: 'headers-timeout-ms',
  request_timeout_ms: 'request-timeout-ms',
  body_timeout_ms: 'body-timeout-ms',
  shutdown_grace_ms: 'shutdown-grace-ms',
  drain_delay_ms: 'drain-delay-ms',
  redis: 'redis',
  redis_cluster: 'redis-cluster',
  redis_ttl_s: 'redis-ttl-s',
  redis_prefix: 'redis-prefix',
  redis_timeout_ms: 'redis-timeout-ms',
};

export interface ServeSpecFile {
  cascades: Map<string, CascadeSpec>;
  /** settings from the spec's `serve:` section, keyed by CLI flag name */
  settings: Record<string, string>;
}

/**
 * Reads a serve spec: a single cascade `{name?, stages}` or several `{cascades: {name: {stages}}}`,
 * each optionally with a `serve:` section of server settings (flags override it).
 */
export function loadServeSpec(file: string): ServeSpecFile {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(file, 'utf8'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new WinnowError('not_found', `spec file not found: ${file}`);
    throw new WinnowError('bad_spec', `${file}: not valid YAML/JSON: ${(e as Error).message.split('\n')[0]}`);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new WinnowError('bad_spec', `${file}: a spec is an object with "stages" or "cascades"`);
  const o = raw as Record<string, unknown>;
  const cascades = new Map<string, CascadeSpec>();
  const base = path.dirname(path.resolve(file));
  const { cascades: named, serve: _serve, ...rest } = o;
  if (named !== undefined) {
    if (!named || typeof named !== 'object' || Array.isArray(named)) {
      throw new WinnowError('bad_spec', `${file}: "cascades" maps names to {stages: [...]}`);
    }
    // Besides cascades and serve, the file may name plugins for all its cascades.
    const shared = checkSpec({ ...rest, stages: [{}] }, file, ['serve', 'cascades']);
    if (rest.stages !== undefined) throw new WinnowError('bad_spec', `${file}: give "stages" or "cascades", not both`);
    for (const [name, spec] of Object.entries(named)) {
      const c = checkSpec(spec, `${file}: cascades.${name}`);
      cascades.set(name, { ...c, name, base, plugins: [...(shared.plugins ?? []), ...(c.plugins ?? [])] });
    }
    if (cascades.size === 0) throw new WinnowError('bad_spec', `${file}: "cascades" is empty`);
  } else {
    const spec = checkSpec(rest, file);
    cascades.set(spec.name ?? 'default', { ...spec, name: spec.name ?? 'default', base });
  }
  const settings: Record<string, string> = {};
  if (o.serve !== undefined) {
    if (!o.serve || typeof o.serve !== 'object' || Array.isArray(o.serve)) throw new WinnowError('bad_spec', `${file}: "serve" is an object of settings`);
    for (const [k, v] of Object.entries(o.serve)) {
      const flag = SERVE_KEYS[k];
      if (!flag) throw new WinnowError('bad_spec', `${file}: serve.${k} is not a setting`, `settings: ${Object.keys(SERVE_KEYS).join(', ')}`);
      if (typeof v !== 'string' && typeof v !== 'number') throw new WinnowError('bad_spec', `${file}: serve.${k} must be a number or string`);
      settings[flag] = String(v);
    }
  }
  return { cascades, settings };
}

function readKeys(file: string | undefined): string[] {
  const fromEnv = (process.env.WINNOW_API_KEYS ?? '').split(',').map((k) => k.trim()).filter(Boolean);
  if (!file) return fromEnv;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new WinnowError('not_found', `keys file not found: ${file}`);
  }
  const keys = text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  if (keys.length === 0) throw new WinnowError('bad_input', `${file}: no keys (one bearer token per line)`);
  return [...keys, ...fromEnv];
}

export async function serveCommand(args: string[]): Promise<number> {
  const { values, positionals, given } = parseCommand(args, SERVE_COMMAND);
  if (values.help) return showHelp(SERVE_COMMAND);
  const USAGE = helpText(SERVE_COMMAND);
  if (positionals.length > 0) throw new WinnowError('usage', `winnow serve takes no arguments (got ${positionals.join(' ')})`, USAGE);
  if (typeof values.spec !== 'string') throw new WinnowError('usage', 'serve needs --spec FILE', USAGE);
  const { cascades: specs, settings } = loadServeSpec(values.spec);
  // A flag on the command line wins over the spec's serve: settings, which win over defaults.
  const strings: Record<string, string | string[] | boolean | undefined> = values;
  const flag = (name: string): string | undefined => {
    const v = strings[name];
    const value = typeof v === 'string' ? v : undefined;
    return given.has(name) ? value : settings[name] ?? value;
  };
  const int = (name: string, min = 1): number => intArg(flag(name) ?? '', name, min, USAGE);

  const limits: ServeLimits = {
    maxDocs: int('max-docs'),
    maxDocChars: int('max-doc-chars'),
    maxQueryChars: int('max-query-chars'),
    maxBodyBytes: int('max-body-bytes'),
    defaultDeadlineMs: int('deadline-ms'),
    maxConnections: int('max-connections'),
    maxBufferedBytes: int('max-buffered-bytes'),
    headersTimeoutMs: int('headers-timeout-ms'),
    requestTimeoutMs: int('request-timeout-ms'),
    bodyTimeoutMs: int('body-timeout-ms'),
    shutdownGraceMs: int('shutdown-grace-ms'),
  };
  const batching = {
    maxBatch: int('max-batch'),
    maxWaitMs: int('max-wait-ms', 0),
    maxQueue: int('queue'),
  };
  const drainDelayMs = int('drain-delay-ms', 0);
  const port = int('port', 0);
  const host = flag('host') ?? SERVE_COMMAND.flags.host.default;
  const apiKeys = readKeys(flag('keys-file'));

  await loadPlugins(values.plugin);
  const logEvent = (e: Record<string, unknown>): void => void process.stdout.write(JSON.stringify({ ts: new Date().toISOString(), ...e }) + '\n');
  const shared = redisTierFromFlags(
    { redis: flag('redis'), 'redis-cluster': flag('redis-cluster'), 'redis-ttl-s': flag('redis-ttl-s'), 'redis-prefix': flag('redis-prefix'), 'redis-timeout-ms': flag('redis-timeout-ms') },
    logEvent,
  );
  const base = await WinnowEnv.create({ corpus: flag('corpus'), progress: false, sharedCache: shared });
  const batched = values['no-batching'] ? undefined : withBatching(base, batching);
  const env = batched?.env ?? base;
  const cascades = new Map<string, Pipeline>();
  for (const [name, spec] of specs) cascades.set(name, await compileSpec(spec, env, `${values.spec}: ${name}`));

  const server = createServer({
    cascades,
    defaultCascade: flag('default-model'),
    docs: base.lookup,
    batchers: batched?.batchers.values(),
    limits,
    apiKeys,
    publicMetrics: values['public-metrics'] === true,
    cache: values['no-score-cache'] ? false : new ScoreCache({ maxEntries: 200_000, shared }),
  });
  const url = await server.listen(port, host);
  process.stdout.write(
    JSON.stringify({ ts: new Date().toISOString(), event: 'listening', url, models: [...cascades.keys()], auth: apiKeys.length > 0, batching: values['no-batching'] ? false : batching, limits, drain_delay_ms: drainDelayMs }) + '\n',
  );
  // /ready stays 503 until every cascade has scored once (the first model calls load and
  // optimise their graphs); a load balancer sends nothing before
  const signalled = new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  try {
    if (!values['no-warm-up']) await server.warmUp();
  } catch (e) {
    await server.close(0);
    throw new WinnowError('unavailable', `warming up the cascades failed: ${(e as Error).message}`);
  }

  // Graceful shutdown: /ready turns false, requests are still taken for the drain delay (a
  // load balancer notices on its next check), then the server stops accepting, finishes
  // in-flight requests within the grace period and exits 0.
  const signal = await signalled;
  const inFlight = server.inFlight;
  server.drain();
  if (drainDelayMs > 0) {
    process.stdout.write(JSON.stringify({ ts: new Date().toISOString(), event: 'draining', signal, drain_delay_ms: drainDelayMs }) + '\n');
    await new Promise((r) => setTimeout(r, drainDelayMs));
  }
  const { unfinished } = await server.close();
  await shared?.close();
  process.stdout.write(JSON.stringify({ ts: new Date().toISOString(), event: 'stopped', signal, in_flight_at_signal: inFlight, cut_after_grace: unfinished }) + '\n');
  // Every connection is closed; should anything else still hold the event loop open (a model
  // call under way, a library's timer), the process exits anyway: shutdown is bounded by the grace period.
  setTimeout(() => process.exit(0), 1000).unref();
  return 0;
}
