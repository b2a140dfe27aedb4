import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { WinnowError } from '../../core/errors.js';

/**
 * The single-writer lock of a collection: `write.lock` holding its owner (pid, host, start
 * time, random token). Hand-written rather than `proper-lockfile`: that library judges
 * staleness by mtime and takes over with rmdir + mkdir, so two processes that both judged one
 * lock stale can both get through; here every step that removes a lock is exclusive.
 *
 * - Create: the owner is written to a private temp file, then `link()`ed to `write.lock`;
 *   link is atomic and fails if the name exists, so a lock is never seen empty or half-written.
 * - Stale takeover: a lock whose owner ran on this host and whose pid is gone may be removed,
 *   but only by the one process that creates `write.lock.break-<token>` for that owner's token
 *   (again by link); it re-reads the lock, removes it only if it still holds that token, then
 *   removes its marker. Tokens are never reused, so a lock can be broken at most once and a
 *   live lock never. A breaker that dies leaves a marker with its own owner, which is broken
 *   the same way one level down.
 * - Waiting: contenders poll with exponential backoff until the timeout (0: fail at once).
 */
export const LOCK_FILE = 'write.lock';
export const DEFAULT_LOCK_TIMEOUT_MS = 30_000;
/** a lock without an owner record (an older Winnow wrote it) counts as stale only after this */
const UNREADABLE_GRACE_MS = 10_000;

export interface LockOwner {
  pid: number;
  host: string;
  started: string;
  token: string;
}

export interface LockOptions {
  /** how long to wait for another writer; 0 fails at once (default 30 s) */
  timeoutMs?: number;
}

type Holder = { kind: 'owner'; owner: LockOwner } | { kind: 'gone' };

export class WriterLock {
  private released = false;

  private constructor(
    readonly dir: string,
    readonly owner: LockOwner,
  ) {}

  /** Takes the lock, sleeping (blocking) between attempts; for synchronous callers. */
  static acquireSync(dir: string, opts: LockOptions = {}): WriterLock {
    const attempt = new Attempt(dir, opts.timeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS);
    for (;;) {
      const r = attempt.step(true);
      if (r instanceof WriterLock) return r;
      sleepSync(r);
    }
  }

  /** Takes the lock, yielding to the event loop between attempts. */
  static async acquire(dir: string, opts: LockOptions = {}): Promise<WriterLock> {
    const attempt = new Attempt(dir, opts.timeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS);
    for (;;) {
      const r = attempt.step(false);
      if (r instanceof WriterLock) return r;
      await new Promise((resolve) => setTimeout(resolve, r));
    }
  }

  /** @internal */
  static held(dir: string, owner: LockOwner): WriterLock {
    return new WriterLock(dir, owner);
  }

  /**
   * Throws unless `write.lock` still holds this owner. A writer calls it right before its
   * commit, so a lock removed by hand makes the write fail instead of racing another writer.
   */
  check(): void {
    const h = readHolder(path.join(this.dir, LOCK_FILE));
    if (h.kind !== 'owner' || h.owner.token !== this.owner.token) {
      throw new WinnowError(
        'unavailable',
        `lost the writer lock of collection ${this.dir} (${LOCK_FILE} was removed or replaced by another process); nothing was committed`,
        'make sure only Winnow manages the collection folder, then run the write again',
      );
    }
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    const file = path.join(this.dir, LOCK_FILE);
    const h = readHolder(file);
    // Never remove a lock that is not ours (it would let a third writer in).
    if (h.kind === 'owner' && h.owner.token === this.owner.token) fs.rmSync(file, { force: true });
  }
}

class Attempt {
  private readonly deadline: number;
  private wait = 5;
  private readonly owner: LockOwner;

  constructor(
    private readonly dir: string,
    private readonly timeoutMs: number,
  ) {
    this.deadline = Date.now() + timeoutMs;
    this.owner = newOwner();
  }

  /** One try: the lock, or how many milliseconds to sleep before the next. */
  step(sync: boolean): WriterLock | number {
    const file = path.join(this.dir, LOCK_FILE);
    if (createExclusive(this.dir, LOCK_FILE, this.owner)) {
      removeDeadTemps(this.dir);
      return WriterLock.held(this.dir, this.owner);
    }
    const h = readHolder(file);
    if (h.kind === 'gone') return 0;
    if (isStale(file, h.owner)) {
      breakStale(this.dir, LOCK_FILE, h.owner);
      return 0;
    }
    const left = this.deadline - Date.now();
    // A synchronous wait on our own process would block the event loop its holder needs.
    if (left <= 0 || (sync && h.owner.pid === process.pid && h.owner.host === os.hostname())) {
      const who = `process ${h.owner.pid} on ${h.owner.host} (since ${h.owner.started})`;
      throw new WinnowError(
        'unavailable',
        `collection ${this.dir} is being written by ${who}${this.timeoutMs > 0 ? `; waited ${(this.timeoutMs / 1000).toFixed(1)}s` : ''}`,
        this.timeoutMs > 0 ? 'wait for it to finish, or give a longer --lock-timeout SECONDS' : 'wait for it to finish, or give --lock-timeout SECONDS to wait for it',
      );
    }
    const ms = Math.min(this.wait, left) * (0.5 + Math.random());
    this.wait = Math.min(this.wait * 2, 250);
    return Math.max(1, Math.round(ms));
  }
}

function newOwner(): LockOwner {
  return { pid: process.pid, host: os.hostname(), started: new Date().toISOString(), token: randomBytes(12).toString('hex') };
}

function tempName(name: string, token: string): string {
  return `.${name}.${token}.tmp`;
}

/** Creates `dir/name` holding `owner`, complete or not at all; false when the name exists. */
function createExclusive(dir: string, name: string, owner: LockOwner): boolean {
  const tmp = path.join(dir, tempName(name, owner.token));
  fs.writeFileSync(tmp, `${JSON.stringify(owner)}\n`, { flag: 'wx' });
  try {
    fs.linkSync(tmp, path.join(dir, name));
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

function readHolder(file: string): Holder {
  let text: string;
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'gone' };
    throw e;
  }
  try {
    const o = JSON.parse(text) as LockOwner;
    if (typeof o?.pid === 'number' && typeof o.token === 'string' && typeof o.host === 'string') return { kind: 'owner', owner: o };
  } catch {
    // not an owner record: below
  }
  // An older Winnow wrote just a pid (and briefly nothing); the inode and mtime stand in for a token.
  const pid = Number(text.trim());
  return {
    kind: 'owner',
    owner: {
      pid: Number.isInteger(pid) && pid > 0 ? pid : -1,
      host: os.hostname(),
      started: st.mtime.toISOString(),
      token: `legacy-${st.ino}-${Math.round(st.mtimeMs)}`,
    },
  };
}

function isStale(file: string, o: LockOwner): boolean {
  if (o.host !== os.hostname()) return false; // another machine's pid says nothing here
  if (o.pid === -1) {
    try {
      return Date.now() - fs.statSync(file).mtimeMs > UNREADABLE_GRACE_MS;
    } catch {
      return false;
    }
  }
  return !alive(o.pid);
}

function breakStale(dir: string, name: string, stale: LockOwner): void {
  const marker = `${name}.break-${stale.token.replace(/[^A-Za-z0-9-]/g, '')}`;
  const me = newOwner();
  if (!createExclusive(dir, marker, me)) {
    // Someone else is breaking it; if that breaker died midway, break its marker the same way.
    const h = readHolder(path.join(dir, marker));
    if (h.kind === 'owner' && isStale(path.join(dir, marker), h.owner)) breakStale(dir, marker, h.owner);
    return;
  }
  try {
    const now = readHolder(path.join(dir, name));
    if (now.kind === 'owner' && now.owner.token === stale.token) fs.rmSync(path.join(dir, name), { force: true });
  } finally {
    fs.rmSync(path.join(dir, marker), { force: true });
  }
}

/** Temp files of lock attempts whose process died between writing and linking them. */
function removeDeadTemps(dir: string): void {
  for (const f of fs.readdirSync(dir)) {
    if (!f.startsWith(`.${LOCK_FILE}`) || !f.endsWith('.tmp')) continue;
    const h = readHolder(path.join(dir, f));
    if (h.kind === 'owner' && h.owner.pid !== -1 && isStale(path.join(dir, f), h.owner)) fs.rmSync(path.join(dir, f), { force: true });
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function sleepSync(ms: number): void {
  if (ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
