import { readFileSync, writeFileSync } from 'node:fs';
import { WinnowError } from '../core/errors.js';
import { buildReport } from '../report/html.js';
import { parseFlags } from './args.js';

export const REPORT_USAGE = `usage: winnow report <eval.json|tune.json> -o report.html

Writes one self-contained HTML file (charts as inline SVG, no scripts, no network) from the
JSON of winnow tune --json or winnow eval --json.`;

const FLAGS = {
  out: { type: 'string', short: 'o' },
  help: { type: 'boolean', short: 'h' },
} as const;

export async function reportCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags(args, FLAGS, REPORT_USAGE);
  if (values.help) {
    console.log(REPORT_USAGE);
    return 0;
  }
  if (positionals.length !== 1) throw new WinnowError('usage', 'give one JSON file', REPORT_USAGE);
  if (!values.out) throw new WinnowError('usage', 'give -o report.html', REPORT_USAGE);
  const file = positionals[0];
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new WinnowError('not_found', `file not found: ${file}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new WinnowError('bad_input', `${file}: not valid JSON: ${(e as Error).message}`);
  }
  writeFileSync(values.out, await buildReport(json, file));
  console.log(`wrote ${values.out}`);
  return 0;
}
