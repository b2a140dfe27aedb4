import { WinnowError } from '../core/errors.js';
import type { Stage, StageContext, StageDescription } from '../core/stage.js';
import type { Ranking, ScoreKind } from '../core/types.js';
import { type Calibration, calibrate, describeCalibration } from './calibration.js';
import { Pipeline } from './pipeline.js';
import { registry } from '../core/registry.js';
import { checkOptions } from '../core/suggest.js';
import { intAtLeast, num, posInt } from '../core/values.js';
import { parseCalibration } from './calibration.js';

/**
 * Runs the stages in `then` only for queries where the ranking it is given is not already
 * confident: the calibrated score of rank 1 minus that of rank k+1 is below `margin`.
 * Confident queries keep their ranking as it is, so a heavy reranker is paid for only where
 * it can still change the top. A ranking with k or fewer hits has nothing left to reorder
 * and counts as confident.
 *
 * ```yaml
 * - earlyExit: {margin: 0.35, k: 1, calibration: {platt: {a: 0.8, b: -4}}, then: [{rerank: ce}]}
 * ```
 */
export class EarlyExit implements Stage {
  readonly kind = 'reranker' as const;
  readonly name: string;
  readonly then: Pipeline;

  constructor(
    then: readonly Stage[],
    readonly margin: number,
    readonly k = 1,
    readonly calibration?: Calibration,
  ) {
    if (!Number.isFinite(margin)) throw new WinnowError('bad_spec', `earlyExit needs a finite margin, got ${margin}`);
    intAtLeast(k, 'earlyExit: k');
    if (then.length === 0) throw new WinnowError('bad_spec', 'earlyExit needs at least one stage in "then"');
    this.then = new Pipeline(then);
    this.name = `earlyExit(margin=${margin})[${then.map((s) => s.name).join(' → ')}]`;
  }

  /** The calibrated gap between rank 1 and rank k+1. */
  confidence(r: Ranking): number {
    if (r.hits.length <= this.k) return Infinity;
    return calibrate(this.calibration, r.hits[0].score) - calibrate(this.calibration, r.hits[this.k].score);
  }

  /** what rescored queries' scores mean; queries that exit keep their input's, calibrated */
  get scoreKind(): ScoreKind | undefined {
    return this.then.scoreKind;
  }

  get scoring(): 'pointwise' | 'listwise' {
    return this.then.scoring;
  }

  children(): readonly Stage[] {
    return [this.then];
  }

  async run(batch: readonly Ranking[], ctx: StageContext): Promise<Ranking[]> {
    const unsure = batch.filter((r) => this.confidence(r) < this.margin);
    // The inner pipeline is one phase of the outer one: its costs are this stage's.
    const rescored = unsure.length === 0 ? [] : await this.then.run(unsure, ctx);
    const byRanking = new Map(unsure.map((r, i) => [r, rescored[i]]));
    // A query that exits keeps the stage before's scores; this stage's calibration is what
    // reads them as probabilities (it was fitted on them), so a server can still map them.
    return batch.map(
      (r) => byRanking.get(r) ?? { ...r, scoredBy: r.scoredBy && { ...r.scoredBy, calibration: this.calibration ?? r.scoredBy.calibration } },
    );
  }

  async close(): Promise<void> {
    await this.then.close();
  }

  describe(): StageDescription {
    const d: Record<string, unknown> = { margin: this.margin, k: this.k };
    if (this.calibration) d.calibration = describeCalibration(this.calibration);
    d.then = this.then.compile().map((s) => s.describe());
    return { earlyExit: d };
  }
}

registry.defineStage(
  'earlyExit',
  async (raw, options, { where, compile }) => {
    checkOptions(options, [], where, 'earlyExit');
    const at = `${where}.earlyExit`;
    if (!raw || typeof raw !== 'object') throw new WinnowError('bad_spec', `${at}: expected {margin: number, k?: n, calibration?: ..., then: [stages]}`);
    const o = raw as Record<string, unknown>;
    checkOptions(Object.fromEntries(Object.entries(o)), ['margin', 'k', 'calibration', 'then'], at, 'earlyExit');
    const then = await compile(o.then, `${at}.then`);
    const cal = o.calibration === undefined ? undefined : parseCalibration(o.calibration, `${at}.calibration`);
    return new EarlyExit(then, num(o.margin, `${at}.margin`), o.k === undefined ? 1 : posInt(o.k, `${at}.k`), cal);
  },
  'run `then` only where the stage before is unsure: `earlyExit: {margin: 0.3, k: 1, calibration: ..., then: [{rerank: ce}]}`',
);
