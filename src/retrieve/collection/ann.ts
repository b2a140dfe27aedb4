import * as fs from 'node:fs';
import * as path from 'node:path';
import { AnnIndex } from '../dense/ann.js';
import { sealFile, tmpNameOf } from './files.js';
import type { Journal } from './journal.js';
import { pad, type Manifest, type SegmentEntry } from './manifest.js';
import { readSegment } from './segment-writer.js';

/**
 * Keeps the HNSW graph in step: below `exactBelow` live vectors there is none (exact scan);
 * crossing it builds one from every live vector; after that each write loads the previous
 * graph, inserts the new vectors, removes deleted keys and saves a new generation's file.
 * `base.ann === null` (or a repair) builds from scratch.
 */
export function updateAnn(dir: string, base: Pick<Manifest, 'ann' | 'nextKey' | 'nextSegment'>, next: Manifest, removedKeys: number[], journal: Journal): void {
  const c = next.config;
  next.ann = null;
  if (!c.model) return;
  const live = next.segments.reduce((n, s) => n + s.docs - s.deleted, 0);
  if (live < c.ann.exactBelow || live === 0) return;
  const dim = c.model.dim;
  const name = `ann.g${pad(next.generation)}.usearch`;
  let graph: AnnIndex;
  let sources: SegmentEntry[];
  if (base.ann) {
    graph = AnnIndex.load(path.join(dir, base.ann), dim, c.ann);
    graph.remove(BigUint64Array.from(removedKeys.map((k) => BigInt(k))));
    // New documents sit in this write's segments (possibly already merged): keys >= base.nextKey.
    sources = next.segments.filter((s) => s.id >= base.nextSegment);
  } else {
    graph = AnnIndex.create(dim, c.ann);
    sources = next.segments;
  }
  for (const entry of sources) {
    const src = readSegment(dir, entry);
    const rows: number[] = [];
    for (let d = 0; d < entry.docs; d++) if (!src.deleted?.[d] && (!base.ann || src.keys[d] >= base.nextKey)) rows.push(d);
    const keys = new BigUint64Array(rows.length);
    const vecs = new Float32Array(rows.length * dim);
    rows.forEach((d, i) => {
      keys[i] = BigInt(src.keys[d]);
      vecs.set(src.vectors!.subarray(d * dim, (d + 1) * dim), i * dim);
    });
    graph.add(keys, vecs);
  }
  const tmp = tmpNameOf(name);
  journal.creating(name);
  graph.save(path.join(dir, tmp));
  next.files[name] = sealFile(dir, tmp);
  fs.renameSync(path.join(dir, tmp), path.join(dir, name));
  next.ann = name;
}
