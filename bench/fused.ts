/**
 * Does the offline-fused graph (Attention, SkipLayerNorm, EmbedLayerNorm from
 * onnxruntime.transformers.optimizer) run faster than the exported graph in Winnow's own path
 * (onnxruntime-node, CrossEncoder.scoreMany, length-sorted batches)? Same SciFact pairs as
 * bench/neural (test queries with their judged documents), both graphs loaded once, runs
 * interleaved with alternating order each round. Prints per-round walls, the median ratio, and
 * the max |score difference| between the graphs.
 *
 *   .venv/models/bin/python tools/make_bench_models.py
 *   .venv/models/bin/python tools/fuse_onnx.py bench/.work/minilm-l6-ce/onnx/model.onnx bench/.work/minilm-l6-ce/onnx/model.fused.onnx
 *   node dist/bench/fused.js [--model bench/.work/minilm-l6-ce] [--pairs 64] [--rounds 3]
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import type { Doc } from '../src/core/types.js';
import { CrossEncoder } from '../src/rerank/cross-encoder.js';
import { median, readJsonl } from './common.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'bench/.work/minilm-l6-ce' },
    dataset: { type: 'string', default: '../shared/datasets/scifact' },
    pairs: { type: 'string', default: '64' },
    rounds: { type: 'string', default: '3' },
    threads: { type: 'string', default: String(os.availableParallelism()) },
  },
});

async function main(): Promise<void> {
  const load0 = os.loadavg();
  const corpus = new Map(readJsonl<{ _id: string; title?: string; text: string }>(path.join(values.dataset!, 'corpus.jsonl')).map((d) => [d._id, d]));
  const queries = new Map(readJsonl<{ _id: string; text: string }>(path.join(values.dataset!, 'queries.jsonl')).map((q) => [q._id, q.text]));
  const qrels = (await import('node:fs')).readFileSync(path.join(values.dataset!, 'qrels', 'test.tsv'), 'utf8').trim().split('\n').slice(1);
  const requests: { query: string; docs: Doc[] }[] = [];
  for (const line of qrels) {
    const [qid, did] = line.split('\t');
    const q = queries.get(qid);
    const d = corpus.get(did);
    if (q && d && requests.length < Number(values.pairs)) requests.push({ query: q, docs: [{ id: d._id, title: d.title, text: d.text }] });
  }
  const threads = Number(values.threads);
  const graphs = { exported: 'onnx/model.onnx', fused: 'onnx/model.fused.onnx' };
  const ces = {
    exported: await CrossEncoder.load(values.model!, { threads, onnxFile: graphs.exported }),
    fused: await CrossEncoder.load(values.model!, { threads, onnxFile: graphs.fused }),
  };
  const walls: Record<string, number[]> = { exported: [], fused: [] };
  const scores: Record<string, Float32Array[]> = {};
  for (const ce of Object.values(ces)) await ce.scoreMany(requests.slice(0, 4));
  for (let r = 0; r < Number(values.rounds); r++) {
    for (const name of (r % 2 === 0 ? ['exported', 'fused'] : ['fused', 'exported']) as (keyof typeof ces)[]) {
      const t = performance.now();
      scores[name] = await ces[name].scoreMany(requests);
      walls[name].push((performance.now() - t) / 1000);
    }
    process.stdout.write(`round ${r + 1}: exported ${walls.exported[r].toFixed(2)} s, fused ${walls.fused[r].toFixed(2)} s\n`);
  }
  let diff = 0;
  scores.exported.forEach((s, i) => (diff = Math.max(diff, Math.abs(s[0] - scores.fused[i][0]))));
  const ratio = median(walls.exported.map((w, i) => w / walls.fused[i]));
  process.stdout.write(
    `node dist/bench/fused.js --model ${values.model} --pairs ${requests.length} --rounds ${values.rounds} --threads ${threads}\n` +
      `exported median ${median(walls.exported).toFixed(2)} s, fused median ${median(walls.fused).toFixed(2)} s, ` +
      `speed-up (median of per-round exported/fused) ${ratio.toFixed(3)}x, max |score diff| ${diff.toExponential(2)}\n` +
      `load average start ${load0.map((x) => x.toFixed(1)).join(' / ')}, end ${os.loadavg().map((x) => x.toFixed(1)).join(' / ')}\n`,
  );
  for (const ce of Object.values(ces)) await ce.close();
}

void main();
