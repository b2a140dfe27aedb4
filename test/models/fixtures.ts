import { readFileSync } from 'node:fs';
import path from 'node:path';

/** test/fixtures/models, made by tools/make_tiny_models.py; tests run from the repo root */
export const MODELS = path.resolve('test/fixtures/models');

export function modelDir(name: string): string {
  return path.join(MODELS, name);
}

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any -- free-form fixture JSON
export const expected: Json = JSON.parse(readFileSync(path.join(MODELS, 'expected.json'), 'utf8'));

export function assertClose(actual: ArrayLike<number>, wanted: ArrayLike<number>, tol: number, what: string): void {
  if (actual.length !== wanted.length) throw new Error(`${what}: length ${actual.length} != ${wanted.length}`);
  for (let i = 0; i < wanted.length; i++) {
    if (!(Math.abs(actual[i] - wanted[i]) <= tol)) {
      throw new Error(`${what}[${i}]: ${actual[i]} != ${wanted[i]} (tolerance ${tol})`);
    }
  }
}
