import { WinnowError } from '../core/errors.js';
import type { Stage, StageDescription } from '../core/stage.js';
import type { Ranking } from '../core/types.js';
import { type Calibration, calibrate, describeCalibration } from './calibration.js';

/** Keeps the first k hits of every ranking. */
export class TopK implements Stage {
  readonly kind = 'cutoff' as const;
  readonly name: string;

  constructor(readonly k: number) {
    if (!Number.isInteger(k) || k < 1) {
      throw new WinnowError('bad_spec', `top(k) needs a positive integer k, got ${k}`);
    }
    this.name = `top(${k})`;
  }

  async run(batch: readonly Ranking[]): Promise<Ranking[]> {
    return batch.map((r) => (r.hits.length <= this.k ? r : { query: r.query, hits: r.hits.slice(0, this.k) }));
  }

  describe(): StageDescription {
    return { top: this.k };
  }
}

/**
 * Keeps hits whose score, mapped through the stage's calibration, is at least `t`. With a
 * calibration the threshold is a probability and means the same for every query; without one
 * it is in the raw units of the stage before.
 */
export class Threshold implements Stage {
  readonly kind = 'cutoff' as const;
  readonly name: string;

  constructor(
    readonly t: number,
    readonly calibration?: Calibration,
    /** never keep fewer than this many hits, so a strict threshold cannot empty a ranking */
    readonly minKeep = 0,
  ) {
    if (!Number.isFinite(t)) throw new WinnowError('bad_spec', `threshold needs a finite number, got ${t}`);
    this.name = `threshold(${t})`;
  }

  async run(batch: readonly Ranking[]): Promise<Ranking[]> {
    return batch.map((r) => {
      let n = 0;
      while (n < r.hits.length && (n < this.minKeep || calibrate(this.calibration, r.hits[n].score) >= this.t)) n++;
      return n === r.hits.length ? r : { query: r.query, hits: r.hits.slice(0, n) };
    });
  }

  describe(): StageDescription {
    const d: StageDescription = { threshold: this.t };
    if (this.calibration) d.calibration = describeCalibration(this.calibration);
    if (this.minKeep) d.minKeep = this.minKeep;
    return d;
  }
}
