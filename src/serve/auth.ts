import { createHash, timingSafeEqual } from 'node:crypto';

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Bearer tokens: the server keeps their hashes only, and compares in constant time. */
export class BearerAuth {
  private readonly hashes: Buffer[];
  constructor(keys: readonly string[] = []) {
    this.hashes = keys.filter((k) => k !== '').map(sha256);
  }

  /** false when no keys are set: everything is open */
  get enabled(): boolean {
    return this.hashes.length > 0;
  }

  /** Whether an Authorization header carries one of the keys; every key is compared, so timing does not leak which matched. */
  allows(header: string | undefined): boolean {
    const m = /^Bearer\s+(.+)$/i.exec(header ?? '');
    if (!m) return false;
    const h = sha256(m[1].trim());
    let ok = false;
    for (const k of this.hashes) ok = timingSafeEqual(h, k) || ok;
    return ok;
  }
}
