/**
 * The PyPI source's export step for real: a tiny random BERT (made here, no download) goes
 * through tools/export_onnx.py and the result is opened with onnxruntime-node. Skipped when no
 * Python with torch is around (see findTorchPython), since that is an optional tool.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { findTorchPython, pythonExporter } from '../../src/models/sources/index.js';

let python: string | undefined;
let dir = '';

const MAKE_TINY_BERT = `
import sys, os, torch
from transformers import BertConfig, BertModel, BertTokenizerFast
out = sys.argv[1]
torch.manual_seed(0)
cfg = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=32, max_position_embeddings=64)
BertModel(cfg).save_pretrained(out)
words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + "the a cat dog sat on mat what is of capital france how do vaccines work query passage short one third text with numbers and".split()
with open(os.path.join(out, "vocab.txt"), "w") as f:
    f.write("\\n".join(words) + "\\n")
BertTokenizerFast(vocab_file=os.path.join(out, "vocab.txt")).save_pretrained(out)
`;

before(async () => {
  try {
    python = await findTorchPython();
  } catch {
    python = undefined;
  }
  if (!python) return;
  dir = await mkdtemp(path.join(os.tmpdir(), 'winnow-export-'));
  const made = spawnSync(python, ['-c', MAKE_TINY_BERT, dir], { encoding: 'utf8' });
  assert.equal(made.status, 0, made.stderr);
});

after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('export_onnx.py: exports, verifies against PyTorch, quantizes; the graph has the agreed names', async (t) => {
  if (!python) return t.skip('no Python with torch, transformers, onnx and onnxruntime');
  const lines: string[] = [];
  await pythonExporter(dir, { quantize: true, log: (l) => lines.push(l) });
  assert.ok(lines.some((l) => /^verified: max \|onnx - torch\| = /.test(l)), lines.join('\n'));
  for (const file of ['onnx/model.onnx', 'onnx/model_quantized.onnx']) {
    const session = await ort.InferenceSession.create(path.join(dir, file));
    assert.deepEqual([...session.inputNames], ['input_ids', 'attention_mask', 'token_type_ids'], file);
    assert.deepEqual([...session.outputNames], ['last_hidden_state'], file);
    // Dynamic batch and sequence: a 2x5 batch runs and comes back as [2, 5, hidden].
    const ids = BigInt64Array.from([2n, 5n, 6n, 7n, 3n, 2n, 8n, 3n, 0n, 0n]);
    const mask = BigInt64Array.from([1n, 1n, 1n, 1n, 1n, 1n, 1n, 1n, 0n, 0n]);
    const out = await session.run({
      input_ids: new ort.Tensor('int64', ids, [2, 5]),
      attention_mask: new ort.Tensor('int64', mask, [2, 5]),
      token_type_ids: new ort.Tensor('int64', new BigInt64Array(10), [2, 5]),
    });
    assert.deepEqual(out.last_hidden_state.dims, [2, 5, 16]);
    await session.release();
  }
});

test('export_onnx.py: an export outside the tolerance is rejected and removed', (t) => {
  if (!python) return t.skip('no Python with torch, transformers, onnx and onnxruntime');
  const out = path.join(dir, 'strict', 'model.onnx');
  const res = spawnSync(python, [path.resolve('tools/export_onnx.py'), '--model-dir', dir, '--output', out, '--atol', '0'], { encoding: 'utf8' });
  // float32 ONNX and PyTorch kernels never agree to the last bit on a random model.
  assert.equal(res.status, 1, res.stderr);
  assert.match(res.stderr, /export rejected/);
  assert.ok(!existsSync(out) && !existsSync(`${out}.tmp`));
});
