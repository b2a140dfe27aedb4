import { parseArgs, type ParseArgsConfig } from 'node:util';
import { WinnowError } from '../core/errors.js';
import { registry } from '../core/registry.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/** `parseArgs` in strict mode, with its errors turned into usage errors a person can act on. */
export function parseFlags<T extends Options>(
  args: string[],
  options: T,
  usage: string,
): ReturnType<typeof parseArgs<{ args: string[]; options: T; strict: true; allowPositionals: true }>> {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: true });
  } catch (e) {
    throw new WinnowError('usage', (e as Error).message, usage);
  }
}

export function intFlag(value: string | undefined, name: string, fallback: number, min = 1, usage?: string): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new WinnowError('usage', `--${name} must be an integer >= ${min}, got "${value}"`, usage);
  return n;
}

export function numFlag(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n)) throw new WinnowError('usage', `--${name} must be a number, got "${value}"`);
  return n;
}

/** `--plugin FILE` (repeatable): modules that register more kinds of stage before a spec compiles. */
export const PLUGIN_FLAG = { plugin: { type: 'string', multiple: true } } as const;

export async function loadPlugins(files: string[] | undefined): Promise<void> {
  for (const f of files ?? []) await registry.loadPlugin(f);
}
