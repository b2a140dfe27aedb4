import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { ScoreCache } from '../cascade/cache.js';
import { WinnowEnv } from '../cascade/env.js';
import { runExperiment } from '../eval/experiment.js';
import { loadBeir } from '../eval/io/beir.js';
import { formatExperiment } from '../eval/table.js';
import { parseFlags } from './args.js';
import { cascadeFromFlags } from './eval.js';

const USAGE = 'usage: winnow demo\n\nRuns a complete cascade over the Cranfield collection bundled with Winnow and prints the eval table.';

/** The bundled collection: gzipped BEIR files and the sha256 of each uncompressed file. */
const BUNDLE = {
  dir: new URL('../../../data/cranfield/', import.meta.url),
  files: {
    'corpus.jsonl': '9cd7529db77a591c645494e2683ee47c88863a287bdd7b631d98bcb5bb638ea3',
    'queries.jsonl': '1b002b3d7baf35eccc5d7f04fc6697cde20bbc79d18ceeb81e7dba149c494673',
    'qrels/test.tsv': 'df2819294f47ee6cc2d18b50ff863e244ef4dde30fdd1c21a1aaed1600bf96a4',
  } as Record<string, string>,
};

export function winnowHome(): string {
  return process.env.WINNOW_HOME ?? path.join(os.homedir(), '.cache', 'winnow');
}

/** Unpacks the bundled Cranfield once into the Winnow home, checking every file's hash. */
export function unpackCranfield(): string {
  const target = path.join(winnowHome(), 'datasets', 'cranfield');
  for (const [name, sha] of Object.entries(BUNDLE.files)) {
    const out = path.join(target, name);
    if (existsSync(out) && sha256(readFileSync(out)) === sha) continue;
    const data = gunzipSync(readFileSync(new URL(`${name}.gz`, BUNDLE.dir)));
    if (sha256(data) !== sha) throw new Error(`bundled ${name} does not match its recorded sha256; the package is damaged`);
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(`${out}.tmp`, data);
    renameSync(`${out}.tmp`, out);
  }
  return target;
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export async function demoCommand(args: string[]): Promise<number> {
  const { values } = parseFlags(args, { help: { type: 'boolean', short: 'h' } }, USAGE);
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const dir = unpackCranfield();
  const ds = await loadBeir(dir, 'test');
  const env = await WinnowEnv.create({ corpus: ds.corpusFile, indexCacheDir: path.join(winnowHome(), 'indexes') });
  const finalK = 10;
  const pipeline = await cascadeFromFlags({ firstPass: 'bm25', firstK: 1000, stage1: 'bm25', poolSize: 100, finalK }, env);
  console.log(`Winnow demo: Cranfield (${env.docs.size} documents, ${ds.queries.length} queries), data/cranfield/SOURCE.md\n`);
  const result = await runExperiment({
    pipeline,
    queries: ds.queries,
    qrels: ds.qrels,
    docs: env.lookup,
    cache: new ScoreCache(),
    finalK,
    progress: true,
  });
  console.log(formatExperiment(result, finalK));
  return 0;
}
