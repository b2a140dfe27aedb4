import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** the repository root, from dist/test/scale/ or test/scale/ */
export const ROOT = fileURLToPath(new URL(existsSync(fileURLToPath(new URL('../../../package.json', import.meta.url))) ? '../../../' : '../../', import.meta.url));

/** Whether a Debian tool the scale tests need is installed; CI installs it (tools/test-setup.sh) and fails without it. */
export function missing(...tools: string[]): string | false {
  const absent = tools.filter((t) => {
    try {
      execFileSync('sh', ['-c', `command -v ${t}`], { stdio: 'ignore' });
      return false;
    } catch {
      return true;
    }
  });
  if (absent.length === 0 || process.env.CI) return false;
  return `${absent.join(', ')} not installed (bash tools/test-setup.sh)`;
}

/** What `deploy/cluster/redis.sh up` printed, and how to stop it. */
export interface LocalRedis {
  dir: string;
  url: string;
  /** cluster mode: seed nodes host:port */
  cluster?: string[];
  pids: number[];
  port: number;
  down(): void;
}

/** NAME=value lines, as the deploy scripts print them. */
export function parseLines(out: string): Record<string, string> {
  return Object.fromEntries(
    out
      .split('\n')
      .map((l) => /^([A-Z_]+)=(.*)$/.exec(l.trim()))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => [m[1], m[2]]),
  );
}

export function redisUp(...args: string[]): LocalRedis {
  const out = execFileSync('bash', [`${ROOT}deploy/cluster/redis.sh`, 'up', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const v = parseLines(out);
  const dir = v.REDIS_DIR;
  return {
    dir,
    url: v.REDIS_URL,
    cluster: v.REDIS_CLUSTER?.split(','),
    pids: v.REDIS_PIDS.split(',').map(Number),
    port: Number(new URL(v.REDIS_URL).port),
    down: () => execFileSync('bash', [`${ROOT}deploy/cluster/redis.sh`, 'down', dir], { stdio: 'inherit' }),
  };
}

/** `redis-cli` against a local server, for the tests' own checks (DEBUG SLEEP, DBSIZE). */
export function redisCli(port: number, ...args: string[]): string {
  return execFileSync('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { encoding: 'utf8' }).trim();
}
