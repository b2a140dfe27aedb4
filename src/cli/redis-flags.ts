import { RedisTier } from '../cache/redis-tier.js';
import { WinnowError } from '../core/errors.js';
import { type FlagDefs, intFlag } from './args.js';

/** The Redis flags `winnow serve` and `winnow eval` share (defaults are in the help, not parse-time: without --redis they must stay unset). */
export const REDIS_FLAGS = {
  redis: {
    type: 'string',
    arg: 'URL',
    help: 'share stage scores and document embeddings through Redis\n(redis://[:password@]host:port[/db]) behind the in-process caches;\nRedis down or slow only costs cache hits, never a request',
  },
  'redis-cluster': { type: 'string', arg: 'H:P,...', help: 'the same on a Redis Cluster (seed nodes, comma-separated)' },
  'redis-ttl-s': { type: 'string', arg: 'N', help: 'lifetime of cached values in Redis (default 86400)' },
  'redis-prefix': { type: 'string', arg: 'P', help: 'key prefix, to share one Redis between deployments (default winnow:)' },
  'redis-timeout-ms': { type: 'string', arg: 'N', help: 'per-command timeout; slower answers count as misses (default 50)' },
} as const satisfies FlagDefs;

type Values = Partial<Record<keyof typeof REDIS_FLAGS, string | undefined>>;

/**
 * The shared tier the flags ask for, or undefined without --redis/--redis-cluster. Creating it
 * does not wait for Redis: the client connects in the background and the process starts
 * answering from its local caches at once.
 */
export function redisTierFromFlags(values: Values, log?: (event: Record<string, unknown>) => void): RedisTier | undefined {
  const url = values.redis;
  const cluster = values['redis-cluster'];
  if (url === undefined && cluster === undefined) {
    for (const f of ['redis-ttl-s', 'redis-prefix', 'redis-timeout-ms'] as const) {
      if (values[f] !== undefined) throw new WinnowError('usage', `--${f} needs --redis or --redis-cluster`);
    }
    return undefined;
  }
  if (url !== undefined && cluster !== undefined) throw new WinnowError('usage', 'give --redis or --redis-cluster, not both');
  return new RedisTier({
    url,
    cluster: cluster?.split(',').filter((s) => s.trim() !== ''),
    prefix: values['redis-prefix'],
    ttlSeconds: intFlag(values['redis-ttl-s'], 'redis-ttl-s', 86_400),
    timeoutMs: intFlag(values['redis-timeout-ms'], 'redis-timeout-ms', 50),
    log,
  });
}
