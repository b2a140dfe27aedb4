import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { WinnowError } from '../core/errors.js';
import { type BuildContext, registry } from '../core/registry.js';
import type { Stage } from '../core/stage.js';
import { didYouMean } from '../core/suggest.js';
import type { WinnowEnv } from './env.js';
import { Pipeline } from './pipeline.js';
import '../builtins.js';

/**
 * A cascade spec, as written in JSON or YAML:
 *
 * ```yaml
 * name: bm25-then-bm25
 * plugins: [./my-stage.js]  # modules that register more stage kinds (paths from this file)
 * stages:
 *   - retrieve: bm25        # a retriever the registry knows
 *     k: 1000
 *   - rerank: ./models/ce   # a scorer: a name, a model folder, a remote API
 *     name: ce
 *   - top: 100
 *   - threshold: 0.5
 *     calibration: {platt: {a: 1.2, b: -0.3}}
 *   - rrf: {k: 60, of: [[{retrieve: bm25, k: 100}], [{retrieve: dense, k: 100}]]}
 *   - earlyExit: {margin: 0.3, k: 1, calibration: {platt: {a: 1, b: 0}}, then: [{rerank: ce}]}
 * ```
 * Each stage is an object with exactly one registered stage key (`core/registry.ts`);
 * everything else on it is an option of that stage. Names resolve through the one registry,
 * so the same spec runs in `winnow eval`, `winnow serve` and library code.
 */
export interface CascadeSpec {
  name?: string;
  stages: unknown[];
  /** plugin modules, resolved against `base` */
  plugins?: string[];
  /** the folder relative plugin paths start from (the spec file's) */
  base?: string;
}

const SPEC_KEYS = ['name', 'stages', 'plugins'];

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
  return { ...checkSpec(raw, file), base: path.dirname(path.resolve(file)) };
}

/** Checks a spec's shape; `extraKeys` are other top-level keys the caller reads (serve's `serve:`). */
export function checkSpec(raw: unknown, where: string, extraKeys: readonly string[] = []): CascadeSpec {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw) || !Array.isArray((raw as CascadeSpec).stages)) {
    throw new WinnowError('bad_spec', `${where}: a spec is an object with a "stages" list`);
  }
  const known = [...SPEC_KEYS, ...extraKeys];
  for (const key of Object.keys(raw)) {
    if (!known.includes(key)) throw new WinnowError('bad_spec', `${where}: unknown key "${key}"${didYouMean(key, known)}`, `a spec has ${known.join(', ')}`);
  }
  const spec = raw as CascadeSpec;
  if (spec.stages.length === 0) throw new WinnowError('bad_spec', `${where}: "stages" is empty`);
  if (spec.name !== undefined && (typeof spec.name !== 'string' || spec.name === '')) throw new WinnowError('bad_spec', `${where}: "name" is a non-empty string`);
  if (spec.plugins !== undefined && (!Array.isArray(spec.plugins) || !spec.plugins.every((p) => typeof p === 'string' && p !== ''))) {
    throw new WinnowError('bad_spec', `${where}: "plugins" is a list of module paths`);
  }
  return spec;
}

export async function compileSpec(spec: CascadeSpec, env: WinnowEnv, where = 'spec'): Promise<Pipeline> {
  for (const p of spec.plugins ?? []) await registry.loadPlugin(p, spec.base);
  return new Pipeline(await compileStages(spec.stages, env, `${where}: stages`), spec.name ?? 'pipeline');
}

/** Compiles a list of stage entries (a spec's `stages`, a fusion input, CLI flags turned into entries). */
export async function compileStages(list: unknown, env: WinnowEnv, where: string): Promise<Stage[]> {
  if (!Array.isArray(list) || list.length === 0) throw new WinnowError('bad_spec', `${where}: expected a non-empty list of stages`);
  const out: Stage[] = [];
  for (let i = 0; i < list.length; i++) out.push(await compileStage(list[i], env, `${where}[${i}]`));
  return out;
}

/** Compiles one stage entry (`{rerank: REF, name: ce}`), naming `where` in errors. */
export async function compileStage(raw: unknown, env: WinnowEnv, where: string): Promise<Stage> {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new WinnowError('bad_spec', `${where}: a stage is an object`);
  const o = raw as Record<string, unknown>;
  const keys = registry.stageKeys();
  const kinds = Object.keys(o).filter((k) => keys.includes(k));
  if (kinds.length !== 1) {
    const found = kinds.length ? kinds.join(', ') : Object.keys(o).join(', ') || 'nothing';
    const typo = kinds.length === 0 ? Object.keys(o).map((k) => didYouMean(k, keys)).find(Boolean) ?? '' : '';
    throw new WinnowError('bad_spec', `${where}: a stage needs exactly one of ${keys.join(', ')}; found ${found}${typo}`);
  }
  const kind = kinds[0];
  const { [kind]: value, ...options } = o;
  const ctx: BuildContext = { env, where, compile: (list, w) => compileStages(list, env, w) };
  return (registry.stage(kind) as NonNullable<ReturnType<typeof registry.stage>>)(value, options, ctx);
}
