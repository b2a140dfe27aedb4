import { parseArgs } from 'node:util';
import { WinnowError } from '../core/errors.js';
import { registry } from '../core/registry.js';
import { didYouMean } from '../core/suggest.js';
import { intAtLeast } from '../core/values.js';

/**
 * One flag, declared once: `parseArgs` reads the type, short name, repeatability and default;
 * the help text is generated from the same record, so a flag cannot be parsed and undocumented.
 */
export interface FlagDef {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
  /** a parse-time default, shown in the help as "(default …)" */
  default?: string | boolean;
  /** placeholder for the value in the help (FILE, N, DIR); strings only */
  arg?: string;
  /** one line (or a few) for the help; defaults computed elsewhere are said here in words */
  help: string;
}

export type FlagDefs = Record<string, FlagDef>;

/** A command's whole interface: what `winnow <name> --help` prints and what its parser accepts. */
export interface CommandDef<F extends FlagDefs = FlagDefs> {
  /** as typed after `winnow`, e.g. `models pull` */
  name: string;
  /** synopsis lines after `usage: winnow <name> ` (each further line gets the same prefix) */
  synopsis: string[];
  /** paragraphs before the flag table */
  about?: string;
  flags: F;
  /** paragraphs after the flag table */
  notes?: string;
}

const HELP_FLAG = { help: { type: 'boolean', short: 'h', help: 'show this help' } } as const satisfies FlagDefs;

/** `--plugin FILE` (repeatable): modules that register more kinds of stage before a spec compiles. */
export const PLUGIN_FLAG = {
  plugin: { type: 'string', multiple: true, arg: 'FILE', help: 'a module that registers more kinds of stage (repeatable; see docs/architecture.md)' },
} as const satisfies FlagDefs;

/** Where `eval` and `tune` keep what they compute once and reuse across runs. */
export const CACHE_FLAGS = {
  'index-cache': { type: 'string', arg: 'DIR', default: '.winnow-cache', help: 'keep built BM25 indexes here between runs' },
  'embedding-cache': {
    type: 'string',
    arg: 'DIR',
    help: 'keep document embeddings of bi-encoder and late-interaction stages here\nacross runs, so each document is embedded once (default\n$WINNOW_HOME/embeddings; none: memory only)',
  },
} as const satisfies FlagDefs;

/** Declares a command; `--help`/`-h` is added to every one. */
export function command<const F extends FlagDefs>(def: CommandDef<F>): CommandDef<F & typeof HELP_FLAG> {
  return { ...def, flags: { ...def.flags, ...HELP_FLAG } };
}

/** The flags of a definition as `parseArgs` wants them (without the help-only fields). */
function parseOptions(flags: FlagDefs): Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean; default?: string | boolean }> {
  const out: ReturnType<typeof parseOptions> = {};
  for (const [name, f] of Object.entries(flags)) {
    out[name] = { type: f.type };
    if (f.short !== undefined) out[name].short = f.short;
    if (f.multiple) out[name].multiple = true;
    if (f.default !== undefined) out[name].default = f.default;
  }
  return out;
}

/** What `parseArgs` infers for a flag: string or boolean, an array when repeatable, never undefined with a default. */
type FlagValue<D extends FlagDef> = (D['type'] extends 'boolean' ? boolean : string) extends infer V
  ? D['multiple'] extends true
    ? V[]
    : V
  : never;
export type FlagValues<F extends FlagDefs> = { [K in keyof F]: F[K] extends { default: string | boolean } ? FlagValue<F[K]> : FlagValue<F[K]> | undefined };

export interface Parsed<F extends FlagDefs> {
  values: FlagValues<F>;
  positionals: string[];
  /** flags given on the command line (not filled in from a default) */
  given: Set<string>;
}

/**
 * Strict parsing: an unknown flag, a missing value or a value on a boolean is a usage error that
 * names the closest known flag and prints the command's help.
 */
export function parseCommand<F extends FlagDefs>(args: string[], def: CommandDef<F>): Parsed<F> {
  try {
    const r = parseArgs({ args, options: parseOptions(def.flags), strict: true, allowPositionals: true, tokens: true });
    const given = new Set(r.tokens.flatMap((t) => (t.kind === 'option' ? [t.name] : [])));
    return { values: r.values as FlagValues<F>, positionals: r.positionals, given };
  } catch (e) {
    const message = (e as Error).message;
    const unknown = /Unknown option '(-{1,2}[^']+)'/.exec(message)?.[1];
    const known = Object.keys(def.flags).map((n) => `--${n}`);
    const hint = unknown ? didYouMean(unknown, known).replace(/^; /, '') : '';
    throw new WinnowError('usage', hint ? `${message.split('. ')[0]}; ${hint}` : message, `winnow ${def.name} --help lists its flags`);
  }
}

/** The flag table and text of `winnow <name> --help`, built from the definition. */
export function helpText(def: CommandDef): string {
  const prefix = `usage: winnow ${def.name} `;
  const lines = def.synopsis.map((s, i) => (i === 0 ? prefix : ' '.repeat(prefix.length)) + s);
  if (def.about) lines.push('', def.about);
  const rows = Object.entries(def.flags).map(([name, f]) => {
    const left = `${f.short ? `-${f.short}, ` : ''}--${name}${f.type === 'string' ? ` ${f.arg ?? 'VALUE'}` : ''}`;
    const def_ = f.default !== undefined && f.default !== false ? ` (default ${String(f.default)})` : '';
    return [left, `${f.help}${def_}`] as const;
  });
  const width = Math.min(24, Math.max(...rows.map(([l]) => l.length)));
  lines.push('', 'flags:');
  for (const [left, text] of rows) {
    const [first, ...rest] = text.split('\n');
    if (left.length > width) lines.push(`  ${left}`, `  ${' '.repeat(width)}  ${first}`);
    else lines.push(`  ${left.padEnd(width)}  ${first}`);
    for (const r of rest) lines.push(`  ${' '.repeat(width)}  ${r}`);
  }
  if (def.notes) lines.push('', def.notes);
  return lines.join('\n');
}

/** Prints a command's help to stdout; the exit code of asking for help is 0. */
export function showHelp(def: CommandDef): number {
  process.stdout.write(`${helpText(def)}\n`);
  return 0;
}

/** An integer flag value: `fallback` when absent, else an integer >= `min` or a usage error. */
export function intFlag(value: string | undefined, name: string, fallback: number, min = 1, usage?: string): number {
  return value === undefined ? fallback : intArg(value, name, min, usage);
}

/** The integer value of a flag that has a declared default, so is always there. */
export function intArg(value: string, name: string, min = 1, usage?: string): number {
  return intAtLeast(Number(value.trim() === '' ? NaN : value), `--${name}`, { min, got: `"${value}"`, code: 'usage', hint: usage });
}

/** A number flag value (undefined when absent and without a default), or a usage error. */
export function numFlag(value: string, name: string): number;
export function numFlag(value: string | undefined, name: string): number | undefined;
export function numFlag(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new WinnowError('usage', `--${name} must be a number, got "${value}"`);
  return n;
}

export async function loadPlugins(files: string[] | undefined): Promise<void> {
  for (const f of files ?? []) await registry.loadPlugin(f);
}
