import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { connect } from 'node:net';
import { missing, parseLines, ROOT } from './services.js';

const SCRIPT = `${ROOT}deploy/cluster/local-cluster.sh`;
const BODY = JSON.stringify({ query: 'wing flow', documents: ['flow over a swept wing', 'boundary layer', 'nothing related'] });

interface Cluster {
  dir: string;
  front: string;
  replicas: string[];
  pids: number[];
  down(): void;
}

function clusterUp(...serveArgs: string[]): Cluster {
  const out = execFileSync('bash', [SCRIPT, 'up', '--replicas', '3', '--', ...serveArgs], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const v = parseLines(out);
  return {
    dir: v.CLUSTER_DIR,
    front: v.FRONT_URL,
    replicas: v.REPLICA_URLS.split(','),
    pids: v.REPLICA_PIDS.split(',').map(Number),
    down: () => execFileSync('bash', [SCRIPT, 'down', v.CLUSTER_DIR], { stdio: 'inherit' }),
  };
}

/** One rerank through haproxy: the status and which replica answered (haproxy's X-Served-By). */
async function rerank(front: string): Promise<{ status: number; by: string | null }> {
  try {
    const r = await fetch(`${front}/v2/rerank`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: BODY });
    await r.arrayBuffer();
    return { status: r.status, by: r.headers.get('x-served-by') };
  } catch {
    return { status: 0, by: null };
  }
}

/** Reranks a replica answered with 200, from its own /metrics. */
async function servedOk(replica: string): Promise<number> {
  const text = await (await fetch(`${replica}/metrics`)).text();
  const m = /^winnow_http_requests_total\{[^}]*route="\/v2\/rerank"[^}]*status="200"[^}]*\} (\d+)$/m.exec(text);
  return m ? Number(m[1]) : 0;
}

/** haproxy's counters for server `name` of backend `replicas` (`show stat` on its admin socket) */
function haproxyStats(socket: string, name: string): Promise<Record<string, string>> {
  return new Promise((resolve, reject) => {
    const s = connect(socket);
    let out = '';
    s.on('data', (d: Buffer) => (out += d.toString()));
    s.on('error', reject);
    s.on('end', () => {
      const rows = out.split('\n').map((l) => l.split(','));
      const head = rows[0].map((h) => h.replace(/^# /, ''));
      const row = rows.find((r) => r[0] === 'replicas' && r[1] === name) ?? [];
      resolve(Object.fromEntries(head.map((h, i) => [h, row[i]])));
    });
    s.end('show stat\n');
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const absent = missing('haproxy');
if (absent) console.log(`\n!!! test/scale/haproxy.test.ts SKIPPED: ${absent} !!!\n`);

test(
  'three replicas behind haproxy: requests reach every replica; SIGTERM on one with a drain delay loses no client request',
  { skip: absent, timeout: 60_000 },
  async () => {
    // haproxy.cfg checks /ready every 500 ms and takes a server out after one failure; a 2 s
    // drain delay covers several checks, so haproxy stops sending before the replica stops taking
    const c = clusterUp('--drain-delay-ms', '2000');
    try {
      const seen = new Map<string, number>();
      for (let i = 0; i < 30; i++) {
        const r = await rerank(c.front);
        assert.equal(r.status, 200);
        assert.ok(r.by, 'haproxy names the replica');
        seen.set(r.by, (seen.get(r.by) ?? 0) + 1);
      }
      assert.deepEqual([...seen.keys()].sort(), ['r1', 'r2', 'r3'], `spread: ${JSON.stringify(Object.fromEntries(seen))}`);
      // the replicas' own counters agree with what haproxy said
      const counts = await Promise.all(c.replicas.map(servedOk));
      assert.ok(counts.every((n) => n > 0), `each replica's /metrics counts reranks it answered: ${counts.join(', ')}`);
      assert.equal(counts.reduce((a, b) => a + b, 0), 30);

      // A client sending back-to-back requests while r1 is told to stop, until well after it has exited.
      const results: { status: number; by: string | null; afterExit: boolean }[] = [];
      let exited = false;
      let stop = false;
      const client = (async () => {
        while (!stop) {
          const r = await rerank(c.front);
          results.push({ ...r, afterExit: exited });
        }
      })();
      while (results.length < 10) await new Promise((r) => setTimeout(r, 20));
      process.kill(c.pids[0], 'SIGTERM');
      const signalledAt = results.length;
      while (alive(c.pids[0])) await new Promise((r) => setTimeout(r, 50));
      exited = true;
      const exitedAt = results.length;
      while (results.length < exitedAt + 30) await new Promise((r) => setTimeout(r, 20));
      stop = true;
      await client;

      const failed = results.filter((r) => r.status !== 200);
      console.log(`client requests: ${results.length} (${signalledAt} before SIGTERM, ${exitedAt - signalledAt} during the drain, ${results.length - exitedAt} after exit), failed: ${failed.length}`);
      assert.deepEqual(failed, [], 'no client request failed');
      // The drain delay's point: haproxy stopped sending to r1 (its /ready turned 503) before r1
      // stopped taking connections, so haproxy never met a refused connection or an empty
      // answer from r1 and never had to retry away from it. Without the delay the client still
      // sees no error (haproxy retries), but these counters are not zero.
      const r1 = await haproxyStats(`${c.dir}/haproxy.sock`, 'r1');
      assert.deepEqual({ econ: r1.econ, eresp: r1.eresp, wretr: r1.wretr, wredis: r1.wredis }, { econ: '0', eresp: '0', wretr: '0', wredis: '0' }, 'haproxy met no failure on r1');
      assert.ok(results.slice(0, signalledAt).some((r) => r.by === 'r1'), 'r1 served before the signal');
      const late = results.filter((r) => r.afterExit);
      assert.ok(late.length >= 30);
      assert.ok(late.every((r) => r.by === 'r2' || r.by === 'r3'), 'after r1 exited, the others served everything');
    } finally {
      c.down();
    }
  },
);
