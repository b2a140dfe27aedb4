import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { WinnowError } from '../core/errors.js';
import { WinnowEnv } from '../cascade/env.js';
import type { Pipeline } from '../cascade/pipeline.js';
import { checkSpec, compileSpec, type CascadeSpec } from '../cascade/spec.js';
import { withBatching } from '../serve/batcher.js';
import { createServer, DEFAULT_LIMITS, type ServeLimits } from '../serve/server.js';
import { intFlag, loadPlugins, parseFlags, PLUGIN_FLAG } from './args.js';
import { REDIS_FLAGS, REDIS_USAGE, redisTierFromFlags } from './redis-flags.js';
import { ScoreCache } from '../cascade/cache.js';

const USAGE = `usage: winnow serve --spec cascade.yaml [options]
  --spec FILE           cascade spec (YAML/JSON): {name?, stages} or {cascades: {name: {stages}}}, optional serve: section
  --port N              default 8080 (0 picks a free port)
  --host H              default 127.0.0.1
  --corpus PATH         corpus.jsonl (or a folder holding one): documents for retrievers, BM25 statistics
  --default-model NAME  cascade used when a request names none (default: the first)
  --max-batch N         most pairs per model call (default 64)
  --max-wait-ms N       how long an idle model waits for more requests to batch (default 0:
                        requests arriving while it is busy are batched anyway)
  --queue N             most pairs waiting per model; beyond it requests get 429 (default 1024)
  --no-batching         call scorers directly, without micro-batching
  --max-docs N          documents per request (default 1000)
  --max-doc-chars N     characters per document (default 100000)
  --max-query-chars N   characters per query (default 4096)
  --max-body-bytes N    request body size (default 10485760)
  --deadline-ms N       default time budget per request (default 30000); request and default
                        deadlines above 300000 (5 minutes) count as 300000
  --max-connections N   open connections; more are closed as they arrive (default 512)
  --max-buffered-bytes N  request body bytes held across all requests; beyond it 503 (default 134217728)
  --headers-timeout-ms N  time to send the request headers (default 10000; 408 beyond)
  --request-timeout-ms N  time to send the whole request, headers and body (default 30000)
  --body-timeout-ms N   longest pause within a request body (default 10000)
  --shutdown-grace-ms N on SIGTERM/SIGINT, how long requests get to finish before their
                        connections are cut and the process exits (default 10000)
  --keys-file F         bearer tokens, one per line (or WINNOW_API_KEYS=k1,k2); they guard
                        the POST routes and /metrics
  --public-metrics      serve /metrics without a token even when keys are set
  --plugin FILE         a module that registers more kinds of stage (repeatable; also plugins: in the spec)
${REDIS_USAGE}`;

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
  const { values, positionals } = parseFlags(
    args,
    {
      spec: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      corpus: { type: 'string' },
      'default-model': { type: 'string' },
      'max-batch': { type: 'string' },
      'max-wait-ms': { type: 'string' },
      queue: { type: 'string' },
      'no-batching': { type: 'boolean' },
      ...PLUGIN_FLAG,
      'max-docs': { type: 'string' },
      'max-doc-chars': { type: 'string' },
      'max-query-chars': { type: 'string' },
      'max-body-bytes': { type: 'string' },
      'deadline-ms': { type: 'string' },
      'max-connections': { type: 'string' },
      'max-buffered-bytes': { type: 'string' },
      'headers-timeout-ms': { type: 'string' },
      'request-timeout-ms': { type: 'string' },
      'body-timeout-ms': { type: 'string' },
      'shutdown-grace-ms': { type: 'string' },
      'keys-file': { type: 'string' },
      'public-metrics': { type: 'boolean' },
      ...REDIS_FLAGS,
      help: { type: 'boolean', short: 'h' },
    },
    USAGE,
  );
  if (positionals.length > 0) throw new WinnowError('usage', `winnow serve takes no arguments (got ${positionals.join(' ')})`, USAGE);
  if (values.help) {
    process.stderr.write(USAGE + '\n');
    return 0;
  }
  if (typeof values.spec !== 'string') throw new WinnowError('usage', 'serve needs --spec FILE', USAGE);
  const { cascades: specs, settings } = loadServeSpec(values.spec);
  // a flag on the command line wins over the spec's serve: settings
  const given: Record<string, string | string[] | boolean | undefined> = values;
  const flag = (name: string): string | undefined => (typeof given[name] === 'string' ? (given[name] as string) : settings[name]);

  const limits: ServeLimits = {
    maxDocs: intFlag(flag('max-docs'), 'max-docs', 1000, 1, USAGE),
    maxDocChars: intFlag(flag('max-doc-chars'), 'max-doc-chars', 100_000, 1, USAGE),
    maxQueryChars: intFlag(flag('max-query-chars'), 'max-query-chars', 4096, 1, USAGE),
    maxBodyBytes: intFlag(flag('max-body-bytes'), 'max-body-bytes', 10 * 1024 * 1024, 1, USAGE),
    defaultDeadlineMs: intFlag(flag('deadline-ms'), 'deadline-ms', DEFAULT_LIMITS.defaultDeadlineMs, 1, USAGE),
    maxConnections: intFlag(flag('max-connections'), 'max-connections', DEFAULT_LIMITS.maxConnections, 1, USAGE),
    maxBufferedBytes: intFlag(flag('max-buffered-bytes'), 'max-buffered-bytes', DEFAULT_LIMITS.maxBufferedBytes, 1, USAGE),
    headersTimeoutMs: intFlag(flag('headers-timeout-ms'), 'headers-timeout-ms', DEFAULT_LIMITS.headersTimeoutMs, 1, USAGE),
    requestTimeoutMs: intFlag(flag('request-timeout-ms'), 'request-timeout-ms', DEFAULT_LIMITS.requestTimeoutMs, 1, USAGE),
    bodyTimeoutMs: intFlag(flag('body-timeout-ms'), 'body-timeout-ms', DEFAULT_LIMITS.bodyTimeoutMs, 1, USAGE),
    shutdownGraceMs: intFlag(flag('shutdown-grace-ms'), 'shutdown-grace-ms', DEFAULT_LIMITS.shutdownGraceMs, 1, USAGE),
  };
  const batching = {
    maxBatch: intFlag(flag('max-batch'), 'max-batch', 64, 1, USAGE),
    maxWaitMs: intFlag(flag('max-wait-ms'), 'max-wait-ms', 0, 0, USAGE),
    maxQueue: intFlag(flag('queue'), 'queue', 1024, 1, USAGE),
  };
  const port = intFlag(flag('port'), 'port', 8080, 0, USAGE);
  const host = flag('host') ?? '127.0.0.1';
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
    cache: new ScoreCache({ maxEntries: 200_000, shared }),
  });
  const url = await server.listen(port, host);
  process.stdout.write(
    JSON.stringify({ ts: new Date().toISOString(), event: 'listening', url, models: [...cascades.keys()], auth: apiKeys.length > 0, batching: values['no-batching'] ? false : batching, limits }) + '\n',
  );

  // Graceful shutdown: stop accepting, finish in-flight requests, then exit 0.
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  const inFlight = server.inFlight;
  const { unfinished } = await server.close();
  await shared?.close();
  process.stdout.write(JSON.stringify({ ts: new Date().toISOString(), event: 'stopped', signal, in_flight_at_signal: inFlight, cut_after_grace: unfinished }) + '\n');
  // Every connection is closed; should anything else still hold the event loop open (a model
  // call under way, a library's timer), the process exits anyway: shutdown is bounded by the grace period.
  setTimeout(() => process.exit(0), 1000).unref();
  return 0;
}
