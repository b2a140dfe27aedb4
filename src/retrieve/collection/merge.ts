import * as path from 'node:path';
import type { Doc } from '../../core/types.js';
import type { Journal } from './journal.js';
import type { Manifest, SegmentEntry } from './manifest.js';
import { readSegment, writeSegment, type ModelVectorSource } from './segment-writer.js';
import { SegmentVectors, sharedModels } from './vectors.js';

/**
 * Tiered-merge-lite: past `maxSegments`, the smallest segments (by live documents) are
 * rewritten as one, dropping their deleted documents. Keys and vectors are carried over, so
 * the ANN graph is untouched; text is re-analysed from the document store. Returns how many
 * segments were merged.
 */
export async function maybeMerge(dir: string, next: Manifest, journal: Journal): Promise<number> {
  const c = next.config;
  if (next.segments.length <= c.maxSegments) return 0;
  const bySize = [...next.segments].sort((a, b) => a.docs - a.deleted - (b.docs - b.deleted) || a.id - b.id);
  const victims = new Set(bySize.slice(0, next.segments.length - c.maxSegments + 1).map((s) => s.id));
  const docs: Doc[] = [];
  const keys: number[] = [];
  const vecParts: Float32Array[] = [];
  const dim = c.model?.dim ?? 0;
  // Added models' vectors are carried over when every merged segment has them.
  const models = (next.models ?? []).filter((m) => sharedModels(next.segments.filter((s) => victims.has(s.id))).has(m.id));
  const modelParts: Float32Array[][] = models.map(() => []);
  for (const entry of next.segments) {
    if (!victims.has(entry.id)) continue;
    const src = readSegment(dir, entry);
    const stored = models.map((m) => new SegmentVectors(path.join(dir, entry.models![m.id].vectors), entry.docs, m.dim));
    for (let d = 0; d < entry.docs; d++) {
      if (src.deleted?.[d]) continue;
      docs.push(src.store.get(d));
      keys.push(src.keys[d]);
      if (src.vectors) vecParts.push(src.vectors.subarray(d * dim, (d + 1) * dim));
      stored.forEach((v, i) => modelParts[i].push(v.vectors.subarray(d * v.dim, (d + 1) * v.dim)));
    }
    for (const v of stored) v.close();
    src.store.close();
  }
  const segId = next.nextSegment++;
  const vectors = c.model ? { vectors: concat(vecParts, docs.length * dim) } : null;
  const carried: ModelVectorSource[] = models.map((model, i) => ({ model, source: { vectors: concat(modelParts[i], docs.length * model.dim) } }));
  const merged = await writeSegment(dir, c, segId, next.generation, docs, Float64Array.from(keys), vectors, next.files, journal, [...victims].sort((a, b) => a - b), carried);
  // The merged segment takes the place of the first victim so segment order stays stable.
  const out: SegmentEntry[] = [];
  let placed = false;
  for (const s of next.segments) {
    if (!victims.has(s.id)) out.push(s);
    else if (!placed) {
      out.push(merged);
      placed = true;
    }
  }
  next.segments = out;
  return victims.size;
}

function concat(parts: Float32Array[], length: number): Float32Array {
  const out = new Float32Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
