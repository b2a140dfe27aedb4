import { addStats, emptyStats, type Stage, type StageContext, type StageDescription, type TraceRow } from '../core/stage.js';
import type { Ranking } from '../core/types.js';
import { Retriever } from '../retrieve/retriever.js';
import type { Calibration } from './calibration.js';
import { Threshold, TopK } from './cutoff.js';

/**
 * A chain of stages, itself a stage. Built fluently (`Pipeline.of(bm25).top(1000).andThen(ce).top(10)`)
 * or from a spec file (`compileSpec`); both produce the same stage list, and `describe()` proves it.
 *
 * Before running, the chain is compiled: nested pipelines are flattened and a cut-off right
 * after a retriever is pushed into it, so the retriever fetches k hits rather than all of them.
 * Execution is grouped into phases (a stage plus the cut-offs that follow it), one trace row each,
 * the way a person reads a cascade: "cross-encoder, keep 100".
 */
export class Pipeline implements Stage {
  readonly kind = 'pipeline' as const;
  private compiled?: Stage[][];

  constructor(
    readonly stages: readonly Stage[],
    readonly name = 'pipeline',
  ) {}

  static of(...stages: Stage[]): Pipeline {
    return new Pipeline(stages);
  }

  /**
   * Composition ("then"). Not called `then`: an object with a `then` method is a thenable,
   * and `await loadPipeline()` would call it instead of returning the pipeline.
   */
  andThen(stage: Stage): Pipeline {
    return new Pipeline([...this.stages, stage], this.name);
  }

  top(k: number): Pipeline {
    return this.andThen(new TopK(k));
  }

  threshold(t: number, calibration?: Calibration, minKeep?: number): Pipeline {
    return this.andThen(new Threshold(t, calibration, minKeep));
  }

  /** The stage list after flattening and cut-off push-down. */
  compile(): Stage[] {
    const flat: Stage[] = [];
    for (const s of this.stages) {
      if (s instanceof Pipeline) flat.push(...s.compile());
      else flat.push(s);
    }
    const out: Stage[] = [];
    for (const s of flat) {
      const prev = out[out.length - 1];
      if (s instanceof TopK && prev instanceof Retriever) {
        out[out.length - 1] = prev.withK(Math.min(prev.k, s.k));
        continue;
      }
      out.push(s);
    }
    return out;
  }

  /** Phases: each non-cut-off stage with the cut-offs after it; leading cut-offs form their own. */
  phases(): Stage[][] {
    if (this.compiled) return this.compiled;
    const phases: Stage[][] = [];
    for (const s of this.compile()) {
      const last = phases[phases.length - 1];
      if (s.kind === 'cutoff' && last) last.push(s);
      else phases.push([s]);
    }
    this.compiled = phases;
    return phases;
  }

  describe(): StageDescription {
    return { pipeline: this.compile().map((s) => s.describe()) };
  }

  async run(batch: readonly Ranking[], ctx: StageContext): Promise<Ranking[]> {
    let current: readonly Ranking[] = batch;
    for (const phase of this.phases()) {
      const stats = emptyStats();
      const inCount = countHits(current);
      const t0 = performance.now();
      for (const stage of phase) current = await stage.run(current, { ...ctx, stats });
      const row: TraceRow = { stage: phaseLabel(phase), in: inCount, out: countHits(current), ms: performance.now() - t0, ...stats };
      addStats(ctx.stats, stats);
      ctx.observe?.(row, current);
    }
    return current as Ranking[];
  }
}

function countHits(batch: readonly Ranking[]): number {
  let n = 0;
  for (const r of batch) n += r.hits.length;
  return n;
}

function phaseLabel(phase: readonly Stage[]): string {
  return phase.map((s) => (s instanceof Retriever ? `${s.name} k=${s.k}` : s.name)).join(' → ');
}

/** Functional composition: `then(a, b, c)` runs a, then b on its output, then c. */
export function then(...stages: Stage[]): Pipeline {
  return new Pipeline(stages);
}
