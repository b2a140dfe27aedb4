/** 32-bit FNV-1a over bytes [start, end) of `buf`: the hash every id table of a collection uses. */
export function hashBytes(buf: Uint8Array, start = 0, end = buf.length): number {
  let h = 0x811c9dc5;
  for (let i = start; i < end; i++) h = Math.imul(h ^ buf[i], 0x01000193);
  return h >>> 0;
}

const MAX_LOAD = 0.7;
const capacityFor = (n: number): number => 2 ** Math.max(4, Math.ceil(Math.log2(n / MAX_LOAD + 1)));

/**
 * Document id -> ordinal without a Map of strings. A Map<string, number> costs about 100 bytes
 * per id (the string, the entry, the table), which at ten million documents is over a gigabyte
 * and seconds of building before the first lookup. This table keeps a 32-bit hash of the id's
 * UTF-8 bytes and the ordinal per slot (8 bytes, at most 70% full, linear probing) and confirms
 * a hash match with `sameId`, which compares against the bytes where the caller already keeps
 * them (a segment's id blob, a write's id log).
 */
export class IdTable {
  private hashes: Uint32Array;
  /** ordinal + 1 per slot; 0 = empty */
  private ords: Int32Array;
  private mask: number;
  size = 0;

  constructor(
    private readonly sameId: (ord: number, key: Uint8Array) => boolean,
    expected = 0,
  ) {
    const cap = capacityFor(expected);
    this.hashes = new Uint32Array(cap);
    this.ords = new Int32Array(cap);
    this.mask = cap - 1;
  }

  /** The ordinal recorded for the id whose UTF-8 bytes are `key`, or -1. */
  find(key: Uint8Array, h = hashBytes(key)): number {
    for (let i = h & this.mask; ; i = (i + 1) & this.mask) {
      const o = this.ords[i];
      if (o === 0) return -1;
      if (this.hashes[i] === h && this.sameId(o - 1, key)) return o - 1;
    }
  }

  /** Records `ord` for the id `key`, replacing the ordinal an equal id had. */
  set(key: Uint8Array, ord: number, h = hashBytes(key)): void {
    let i = h & this.mask;
    for (; this.ords[i] !== 0; i = (i + 1) & this.mask) {
      if (this.hashes[i] === h && this.sameId(this.ords[i] - 1, key)) {
        this.ords[i] = ord + 1;
        return;
      }
    }
    this.put(i, h, ord);
  }

  /** Adds an ordinal whose id is known not to be in the table (building from unique ids): no comparisons. */
  addNew(h: number, ord: number): void {
    let i = h & this.mask;
    while (this.ords[i] !== 0) i = (i + 1) & this.mask;
    this.put(i, h, ord);
  }

  private put(slot: number, h: number, ord: number): void {
    this.hashes[slot] = h;
    this.ords[slot] = ord + 1;
    if (++this.size > this.ords.length * MAX_LOAD) this.grow();
  }

  /** Doubles the table; the stored hashes place every entry again without reading an id. */
  private grow(): void {
    const { hashes, ords } = this;
    const cap = ords.length * 2;
    this.hashes = new Uint32Array(cap);
    this.ords = new Int32Array(cap);
    this.mask = cap - 1;
    for (let j = 0; j < ords.length; j++) {
      if (ords[j] === 0) continue;
      let i = hashes[j] & this.mask;
      while (this.ords[i] !== 0) i = (i + 1) & this.mask;
      this.hashes[i] = hashes[j];
      this.ords[i] = ords[j];
    }
  }
}

/**
 * The ids one write adds, as UTF-8 bytes appended to one growing buffer: what the write's
 * `IdTable` compares against. About the ids' own length per document, where a Map kept a
 * string and an entry each (the write of a ten-million-document build held ~1.2 GB that way).
 */
export class IdLog {
  private blob = Buffer.alloc(1 << 16);
  private starts = new Float64Array(1024);
  private used = 0;
  length = 0;

  /** Appends `key` (an id's UTF-8 bytes); returns its ordinal. */
  push(key: Uint8Array): number {
    if (this.used + key.length > this.blob.length) {
      const bigger = Buffer.alloc(Math.max(this.blob.length * 2, this.used + key.length));
      this.blob.copy(bigger, 0, 0, this.used);
      this.blob = bigger;
    }
    if (this.length + 1 >= this.starts.length) {
      const bigger = new Float64Array(this.starts.length * 2);
      bigger.set(this.starts);
      this.starts = bigger;
    }
    this.blob.set(key, this.used);
    this.starts[this.length] = this.used;
    this.used += key.length;
    this.starts[++this.length] = this.used;
    return this.length - 1;
  }

  equals(ord: number, key: Uint8Array): boolean {
    return this.blob.compare(key, 0, key.length, this.starts[ord], this.starts[ord + 1]) === 0;
  }
}
