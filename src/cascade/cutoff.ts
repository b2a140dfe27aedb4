import { WinnowError } from '../core/errors.js';
import type { Stage, StageDescription } from '../core/stage.js';
import type { Ranking } from '../core/types.js';
import { type Calibration, calibrate, describeCalibration } from './calibration.js';
import { registry } from '../core/registry.js';
import { checkOptions } from '../core/suggest.js';
import { parseCalibration } from './calibration.js';
import { intAtLeast, posInt } from '../core/values.js';

/** Keeps the first k hits of every ranking. */
export class TopK implements Stage {
  readonly kind = 'cutoff' as const;
  readonly name: string;

  constructor(readonly k: number) {
    intAtLeast(k, 'top(k): k');
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

registry.defineStage(
  'top',
  (value, options, { where }) => {
    checkOptions(options, [], where, 'top');
    return new TopK(posInt(value, `${where}.top`));
  },
  'keep the first k hits: `top: 100`',
);

registry.defineStage(
  'threshold',
  (value, options, { where }) => {
    checkOptions(options, ['calibration', 'minKeep'], where, 'threshold');
    if (typeof value !== 'number') throw new WinnowError('bad_spec', `${where}.threshold: expected a number`);
    const cal = options.calibration === undefined ? undefined : parseCalibration(options.calibration, `${where}.calibration`);
    const minKeep = options.minKeep === undefined ? 0 : posInt(options.minKeep, `${where}.minKeep`);
    return new Threshold(value, cal, minKeep);
  },
  'keep hits scoring at least t, in probability space with a calibration: `threshold: 0.5, calibration: {platt: {a, b}}, minKeep: 10`',
);
