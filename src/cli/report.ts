import { readFileSync, writeFileSync } from 'node:fs';
import { WinnowError } from '../core/errors.js';
import { buildReport } from '../report/html.js';
import { command, helpText, parseCommand, showHelp } from './args.js';

export const REPORT_COMMAND = command({
  name: 'report',
  synopsis: ['<eval.json|tune.json> -o report.html'],
  about: `Writes one self-contained HTML file (charts as inline SVG, no scripts, no network) from the
JSON of winnow tune --json or winnow eval --json.`,
  flags: {
    out: { type: 'string', short: 'o', arg: 'FILE', help: 'the HTML file to write' },
  },
});

export async function reportCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommand(args, REPORT_COMMAND);
  if (values.help) return showHelp(REPORT_COMMAND);
  if (positionals.length !== 1) throw new WinnowError('usage', 'give one JSON file', helpText(REPORT_COMMAND));
  if (!values.out) throw new WinnowError('usage', 'give -o report.html', helpText(REPORT_COMMAND));
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
