import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { WinnowError } from '../core/errors.js';
import type { Stage } from '../core/stage.js';
import { Rerank } from '../rerank/rerank.js';
import type { Scorer } from '../rerank/scorer.js';
import type { Retriever } from '../retrieve/retriever.js';
import { parseCalibration } from './calibration.js';
import { Threshold, TopK } from './cutoff.js';
import { EarlyExit } from './early-exit.js';
import { Fusion, type FusionMethod } from './fusion.js';
import { Pipeline } from './pipeline.js';

/**
 * A cascade spec, as written in JSON or YAML:
 *
 * ```yaml
 * name: bm25-then-bm25
 * stages:
 *   - retrieve: bm25        # a retriever the environment knows
 *     k: 1000
 *   - rerank: ./models/ce   # a scorer: a name or a model folder
 *     name: ce
 *   - top: 100
 *   - threshold: 0.5
 *     calibration: {platt: {a: 1.2, b: -0.3}}
 *   - rrf: {k: 60, of: [[{retrieve: bm25, k: 100}], [{retrieve: dense, k: 100}]]}
 *   - earlyExit: {margin: 0.3, k: 1, calibration: {platt: {a: 1, b: 0}}, then: [{rerank: ce}]}
 * ```
 * Each stage is an object with exactly one of the keys below; everything else on it is an
 * option of that stage. Scorer and retriever names are resolved by the caller's `SpecEnv`,
 * so the same spec runs in `winnow eval`, `winnow serve` and library code.
 */
export interface CascadeSpec {
  name?: string;
  stages: unknown[];
}

/** Resolves the names a spec mentions to real retrievers and scorers. */
export interface SpecEnv {
  retriever(name: string, options: Record<string, unknown>, where: string): Promise<Retriever>;
  scorer(ref: string, options: Record<string, unknown>, where: string): Promise<Scorer>;
}

const STAGE_KEYS = ['retrieve', 'rerank', 'top', 'threshold', 'rrf', 'linear', 'union', 'earlyExit'] as const;

export function loadSpecFile(file: string): CascadeSpec {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new WinnowError('not_found', `spec file not found: ${file}`);
  }
  let raw: unknown;
  try {
    // YAML is a superset of JSON, so one parser reads both.
    raw = parseYaml(text);
  } catch (e) {
    throw new WinnowError('bad_spec', `${file}: not valid YAML/JSON: ${(e as Error).message.split('\n')[0]}`);
  }
  return checkSpec(raw, file);
}

export function checkSpec(raw: unknown, where: string): CascadeSpec {
  if (!raw || typeof raw !== 'object' || !Array.isArray((raw as CascadeSpec).stages)) {
    throw new WinnowError('bad_spec', `${where}: a spec is an object with a "stages" list`);
  }
  const spec = raw as CascadeSpec;
  if (spec.stages.length === 0) throw new WinnowError('bad_spec', `${where}: "stages" is empty`);
  return spec;
}

export async function compileSpec(spec: CascadeSpec, env: SpecEnv, where = 'spec'): Promise<Pipeline> {
  return new Pipeline(await compileStages(spec.stages, env, `${where}: stages`), spec.name ?? 'pipeline');
}

async function compileStages(list: unknown, env: SpecEnv, where: string): Promise<Stage[]> {
  if (!Array.isArray(list) || list.length === 0) throw new WinnowError('bad_spec', `${where}: expected a non-empty list of stages`);
  const out: Stage[] = [];
  for (let i = 0; i < list.length; i++) out.push(await compileStage(list[i], env, `${where}[${i}]`));
  return out;
}

async function compileStage(raw: unknown, env: SpecEnv, where: string): Promise<Stage> {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new WinnowError('bad_spec', `${where}: a stage is an object`);
  const o = raw as Record<string, unknown>;
  const kinds = STAGE_KEYS.filter((k) => k in o);
  if (kinds.length !== 1) {
    throw new WinnowError(
      'bad_spec',
      `${where}: a stage needs exactly one of ${STAGE_KEYS.join(', ')}; found ${kinds.length ? kinds.join(', ') : Object.keys(o).join(', ') || 'nothing'}`,
    );
  }
  const kind = kinds[0];
  const { [kind]: value, ...options } = o;
  switch (kind) {
    case 'retrieve': {
      const r = await env.retriever(str(value, `${where}.retrieve`), options, where);
      return options.k === undefined ? r : r.withK(posInt(options.k, `${where}.k`));
    }
    case 'rerank': {
      const { name, ...scorerOptions } = options;
      const scorer = await env.scorer(str(value, `${where}.rerank`), scorerOptions, where);
      return new Rerank(scorer, name === undefined ? undefined : str(name, `${where}.name`));
    }
    case 'top':
      return new TopK(posInt(value, `${where}.top`));
    case 'threshold': {
      if (typeof value !== 'number') throw new WinnowError('bad_spec', `${where}.threshold: expected a number`);
      const cal = options.calibration === undefined ? undefined : parseCalibration(options.calibration, `${where}.calibration`);
      const minKeep = options.minKeep === undefined ? 0 : posInt(options.minKeep, `${where}.minKeep`);
      return new Threshold(value, cal, minKeep);
    }
    case 'earlyExit':
      return compileEarlyExit(value, env, `${where}.earlyExit`);
    default:
      return compileFusion(kind, value, env, `${where}.${kind}`);
  }
}

/** `earlyExit: {margin, k?, calibration?, then: [stages]}` (see `EarlyExit`). */
async function compileEarlyExit(raw: unknown, env: SpecEnv, where: string): Promise<Stage> {
  if (!raw || typeof raw !== 'object') throw new WinnowError('bad_spec', `${where}: expected {margin: number, k?: n, calibration?: ..., then: [stages]}`);
  const o = raw as Record<string, unknown>;
  const then = await compileStages(o.then, env, `${where}.then`);
  const cal = o.calibration === undefined ? undefined : parseCalibration(o.calibration, `${where}.calibration`);
  return new EarlyExit(then, num(o.margin, `${where}.margin`), o.k === undefined ? 1 : posInt(o.k, `${where}.k`), cal);
}

async function compileFusion(kind: 'rrf' | 'linear' | 'union', raw: unknown, env: SpecEnv, where: string): Promise<Stage> {
  if (!raw || typeof raw !== 'object') throw new WinnowError('bad_spec', `${where}: expected {of: [[stages], [stages]], ...}`);
  const o = raw as Record<string, unknown>;
  if (!Array.isArray(o.of)) throw new WinnowError('bad_spec', `${where}.of: expected a list of stage lists`);
  const inputs: Stage[] = [];
  for (let i = 0; i < o.of.length; i++) inputs.push(new Pipeline(await compileStages(o.of[i], env, `${where}.of[${i}]`)));
  let method: FusionMethod;
  if (kind === 'rrf') {
    method = { kind, k: o.k === undefined ? 60 : num(o.k, `${where}.k`) };
  } else if (kind === 'linear') {
    if (!Array.isArray(o.weights)) throw new WinnowError('bad_spec', `${where}.weights: expected a list of numbers`);
    const normalize = o.normalize ?? 'none';
    if (normalize !== 'none' && normalize !== 'minmax') throw new WinnowError('bad_spec', `${where}.normalize: "none" or "minmax"`);
    method = { kind, weights: o.weights.map((w, i) => num(w, `${where}.weights[${i}]`)), normalize };
  } else {
    method = { kind };
  }
  return new Fusion(o.name === undefined ? kind : str(o.name, `${where}.name`), inputs, method);
}

function str(v: unknown, where: string): string {
  if (typeof v !== 'string' || v === '') throw new WinnowError('bad_spec', `${where}: expected a non-empty string`);
  return v;
}

function num(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new WinnowError('bad_spec', `${where}: expected a number`);
  return v;
}

function posInt(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new WinnowError('bad_spec', `${where}: expected a positive integer`);
  return v;
}
