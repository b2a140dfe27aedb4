import { Costs } from '../core/costs.js';
import { retrievesCandidates, type Stage, type StageContext, type StageDescription, type TraceRow } from '../core/stage.js';
import type { Ranking, ScoreKind, ScoredBy } from '../core/types.js';
import type { Calibration } from './calibration.js';
import { Threshold, TopK } from './cutoff.js';

/**
 * One step of a compiled cascade: a stage plus the cut-offs that follow it, the way a person
 * reads a cascade ("cross-encoder, keep 100"). Leading cut-offs form a phase of their own.
 */
export interface Phase {
  readonly index: number;
  readonly stages: readonly Stage[];
  readonly head: Stage;
  readonly label: string;
  /** produces candidates and ignores its input */
  readonly retrieves: boolean;
  /** only cut-offs: no scores of its own */
  readonly cutsOnly: boolean;
  /** what its scores mean, with the calibration configured right after it (a threshold's) */
  readonly scoredBy?: ScoredBy;
}

/**
 * What a caller may decide around the one walk of a cascade. Serving uses it for deadlines
 * (skip or stop before a phase, race a phase against the clock), eval for tracing, and
 * anything else for what it needs, without walking the cascade itself.
 */
export interface RunPolicy {
  /** `run` the phase, `skip` it (its input passes on unchanged), or `stop` here */
  before?(phase: Phase, batch: readonly Ranking[]): 'run' | 'skip' | 'stop';
  /** awaits the phase's work; answering `stop` abandons it and ends the run with what came before */
  await?(phase: Phase, work: Promise<Ranking[]>, batch: readonly Ranking[]): Promise<Ranking[] | 'stop'>;
  /** after each phase that ran, with its trace row and output */
  after?(phase: Phase, row: TraceRow, rankings: readonly Ranking[]): void;
}

export interface RunResult {
  rankings: Ranking[];
  /** one row per phase that ran */
  trace: TraceRow[];
  /** the phase the policy stopped at (not run, or abandoned), when it stopped early */
  stoppedAt?: Phase;
}

/**
 * A chain of stages, itself a stage, and the one interpreter of cascades: `execute` is the
 * only code that walks one. Built fluently (`Pipeline.of(bm25).top(1000).andThen(ce).top(10)`)
 * or from a spec file (`compileSpec`); both produce the same stage list, and `describe()`
 * proves it.
 *
 * Before running, the chain is compiled: nested pipelines are flattened and each stage is
 * offered the stage after it (`Stage.absorb`), so a cut-off after a retriever becomes its depth.
 */
export class Pipeline implements Stage {
  readonly kind = 'pipeline' as const;
  private compiled?: Phase[];

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

  /** The stage list after flattening and push-down. */
  compile(): Stage[] {
    const out: Stage[] = [];
    for (const s of this.stages.flatMap((s) => (s instanceof Pipeline ? s.compile() : [s]))) {
      const merged = out.length > 0 ? out[out.length - 1].absorb?.(s) : undefined;
      if (merged) out[out.length - 1] = merged;
      else out.push(s);
    }
    return out;
  }

  children(): readonly Stage[] {
    return this.compile();
  }

  get retrieves(): boolean {
    const first = this.compile()[0];
    return first !== undefined && retrievesCandidates(first);
  }

  /** The kind of the last stage that scores. */
  get scoreKind(): ScoreKind | undefined {
    return this.phases().findLast((p) => p.scoredBy)?.scoredBy?.kind;
  }

  get scoring(): 'pointwise' | 'listwise' {
    return this.compile().every((s) => s.kind === 'cutoff' || s.scoring === 'pointwise') ? 'pointwise' : 'listwise';
  }

  phases(): Phase[] {
    if (this.compiled) return this.compiled;
    const groups: Stage[][] = [];
    for (const s of this.compile()) {
      const last = groups[groups.length - 1];
      if (s.kind === 'cutoff' && last) last.push(s);
      else groups.push([s]);
    }
    this.compiled = groups.map((stages, index) => describePhase(stages, index));
    return this.compiled;
  }

  describe(): StageDescription {
    return { pipeline: this.compile().map((s) => s.describe()) };
  }

  async run(batch: readonly Ranking[], ctx: StageContext): Promise<Ranking[]> {
    return (await this.execute(batch, ctx)).rankings;
  }

  /** Runs the cascade phase by phase under `policy`, with one trace row per phase that ran. */
  async execute(batch: readonly Ranking[], ctx: StageContext, policy: RunPolicy = {}): Promise<RunResult> {
    let current: Ranking[] = [...batch];
    const trace: TraceRow[] = [];
    for (const phase of this.phases()) {
      const decision = policy.before?.(phase, current) ?? 'run';
      if (decision === 'skip') continue;
      if (decision === 'stop') return { rankings: current, trace, stoppedAt: phase };
      const costs = new Costs();
      const inCount = countHits(current);
      const t0 = performance.now();
      const work = runPhase(phase, current, { ...ctx, costs });
      const out = policy.await ? await policy.await(phase, work, current) : await work;
      if (out === 'stop') {
        ctx.costs.addAll(costs);
        return { rankings: current, trace, stoppedAt: phase };
      }
      current = out;
      const row: TraceRow = { stage: phase.label, in: inCount, out: countHits(current), ms: performance.now() - t0, costs: costs.toJSON() };
      ctx.costs.addAll(costs);
      trace.push(row);
      policy.after?.(phase, row, current);
    }
    return { rankings: current, trace };
  }

  async close(): Promise<void> {
    for (const s of this.stages) await s.close?.();
  }
}

/**
 * Runs a phase's stages in order and records on each output ranking whose scores order it
 * now: the phase's head when it scores, unless the head decided per ranking itself (an early
 * exit does); after a cut-off, whatever its input said.
 */
async function runPhase(phase: Phase, input: Ranking[], ctx: StageContext): Promise<Ranking[]> {
  let batch = input;
  for (const stage of phase.stages) {
    const before = batch;
    const scores = stage === phase.head && phase.scoredBy !== undefined;
    batch = (await stage.run(batch, ctx)).map((r, i) => {
      const was = before[i]?.scoredBy;
      const setItself = r.scoredBy !== undefined && r.scoredBy !== was;
      const scoredBy = setItself ? r.scoredBy : scores ? phase.scoredBy : was;
      // A degraded ranking stays degraded through later stages (cut-offs rebuild rankings).
      const degraded = r.degraded ?? before[i]?.degraded;
      return r.scoredBy === scoredBy && r.degraded === degraded ? r : { ...r, scoredBy, ...(degraded ? { degraded } : {}) };
    });
  }
  return batch;
}

function describePhase(stages: Stage[], index: number): Phase {
  const head = stages[0];
  const threshold = stages.find((s) => s !== head && s.calibration !== undefined);
  const kind = head.scoreKind;
  return {
    index,
    stages,
    head,
    label: stages.map((s) => s.label ?? s.name).join(' → '),
    retrieves: retrievesCandidates(head),
    cutsOnly: stages.every((s) => s.kind === 'cutoff'),
    scoredBy: kind === undefined ? undefined : { stage: head.name, kind, calibration: threshold?.calibration ?? head.calibration },
  };
}

function countHits(batch: readonly Ranking[]): number {
  let n = 0;
  for (const r of batch) n += r.hits.length;
  return n;
}

/**
 * Functional composition: `chain(a, b, c)` runs a, then b on its output, then c. Not called
 * `then`: a module exporting `then` is a thenable namespace, and `await import('winnow')`
 * would call it and never resolve.
 */
export function chain(...stages: Stage[]): Pipeline {
  return new Pipeline(stages);
}
