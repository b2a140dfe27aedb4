/**
 * fastembed's npm port as a peer of bench/neural, in its own process: it brings its own
 * onnxruntime-node (1.21), whose binding cannot load next to the onnxruntime-node Winnow has
 * already loaded in the bench's process (the shared library's symbol versions differ). Same
 * protocol as bench/neural_peer.py: model load and a warm-up call untimed, then one timed
 * embedding of every document; one JSON line on stdout.
 *
 *   node dist/bench/neural_fastembed.js --model DIR --model-file onnx/model.onnx --inputs bi.json --work DIR [--batch-size 32]
 *
 * fastembed (npm) has no thread option: ONNX Runtime's default is one thread per core, which is
 * the bench's --threads on this 2-core machine.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

/** the slice of fastembed's npm port the bench uses */
interface FastembedJs {
  embed(texts: string[], batchSize?: number): AsyncGenerator<number[][]>;
}

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    'model-file': { type: 'string' },
    inputs: { type: 'string' },
    work: { type: 'string' },
    'batch-size': { type: 'string', default: '32' },
  },
});

/**
 * EmbeddingModel.CUSTOM with modelAbsoluteDirPath. It insists on special_tokens_map.json, which
 * a folder pulled from a registry may lack; then a folder of links plus that map, written from
 * tokenizer_config.json's tokens, is staged under --work.
 */
async function load(dir: string, modelName: string, work: string): Promise<FastembedJs> {
  const fe = (await import('fastembed')) as unknown as {
    EmbeddingModel: { CUSTOM: string };
    FlagEmbedding: { init(o: Record<string, unknown>): Promise<FastembedJs> };
  };
  let folder = dir;
  if (!fs.existsSync(path.join(dir, 'special_tokens_map.json'))) {
    folder = path.join(work, 'fastembed-js-bi');
    fs.mkdirSync(folder, { recursive: true });
    for (const f of fs.readdirSync(dir)) if (!fs.existsSync(path.join(folder, f))) fs.symlinkSync(path.join(dir, f), path.join(folder, f));
    const tc = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    const map: Record<string, unknown> = {};
    for (const k of ['cls_token', 'sep_token', 'pad_token', 'unk_token', 'mask_token']) if (typeof tc[k] === 'string') map[k] = tc[k];
    fs.writeFileSync(path.join(folder, 'special_tokens_map.json'), JSON.stringify(map));
  }
  return fe.FlagEmbedding.init({ model: fe.EmbeddingModel.CUSTOM, modelAbsoluteDirPath: folder, modelName, maxLength: 512, showDownloadProgress: false });
}

async function embedAll(fe: FastembedJs, texts: string[], batchSize: number): Promise<number[]> {
  let first: number[] = [];
  for await (const batch of fe.embed(texts, batchSize)) if (first.length === 0) first = batch[0];
  return first;
}

async function main(): Promise<void> {
  const docs = (JSON.parse(fs.readFileSync(values.inputs!, 'utf8')) as { docs: string[] }).docs;
  const batchSize = Number(values['batch-size']);
  const fe = await load(values.model!, values['model-file']!, values.work!);
  await embedAll(fe, docs.slice(0, 8), batchSize);
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const first = await embedAll(fe, docs, batchSize);
  const c = process.cpuUsage(c0);
  const out = { system: 'fastembed-js', threads: 0, items: docs.length, times: [{ wall_s: (performance.now() - t0) / 1000, cpu_s: (c.user + c.system) / 1e6 }], sample: first.slice(0, 5) };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).message}\n`);
  process.exit(1);
});
