#!/usr/bin/env python3
"""Static int8 (calibrated activations) next to dynamic int8, for an ONNX text encoder: a measurement
tool, results in bench/results/static-int8.md (through ONNX Runtime it is slower than dynamic).

Writes MODEL_DIR/onnx/model_static_int8.onnx (QDQ, per-channel int8 weights, activation ranges from
calibration texts) and prints one JSON line comparing fp32, the folder's dynamic int8 (--dynamic,
e.g. the maven -q jar's file) and the static file on:
  - speed: median wall of one padded batch (--batch texts of --eval corpus, cut to --max-length),
    runs interleaved so load from other jobs hits all alike;
  - quality proxy: cosine of pooled embeddings (mean or CLS, --pooling) to fp32 over --n-eval
    documents that are not calibration texts. nDCG@10 on SciFact needs bench/quality.ts.

Calibration texts come from another corpus than the one evaluated (default Cranfield), so the
ranges are not fitted to the benchmark:

    .venv/models/bin/python tools/quantize_static.py --model-dir ~/.cache/winnow/models/maven--...-bge-small-en-v15 \\
        --dynamic ~/.cache/winnow/models/maven--...-bge-small-en-v15-q/onnx/model_quantized.onnx --pooling cls
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def read_texts(path: str, n: int, skip: int = 0) -> list[str]:
    out = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i < skip:
                continue
            d = json.loads(line)
            out.append(((d.get("title") or "") + " " + d["text"]).strip())
            if len(out) == n:
                break
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--dynamic", help="the dynamic int8 ONNX file to compare with")
    ap.add_argument("--calib", default="../shared/datasets/cranfield/corpus.jsonl")
    ap.add_argument("--eval", default="../shared/datasets/scifact/corpus.jsonl")
    ap.add_argument("--n-calib", type=int, default=64)
    ap.add_argument("--n-eval", type=int, default=64)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--pooling", choices=["mean", "cls"], default="mean")
    ap.add_argument("--method", choices=["minmax", "percentile", "entropy"], default="percentile")
    ap.add_argument("--activation", choices=["uint8", "int8"], default="uint8")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    import numpy as np
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from tokenizers import Tokenizer

    src = os.path.join(args.model_dir, "onnx", "model.onnx")
    out = os.path.join(args.model_dir, "onnx", "model_static_int8.onnx")
    tok = Tokenizer.from_file(os.path.join(args.model_dir, "tokenizer.json"))
    tok.enable_truncation(args.max_length)
    tok.enable_padding()
    names = [i.name for i in ort.InferenceSession(src, providers=["CPUExecutionProvider"]).get_inputs()]

    def feeds(texts: list[str]) -> dict:
        enc = tok.encode_batch(texts)
        arr = {
            "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
        }
        return {n: arr[n] for n in names}

    calib = read_texts(args.calib, args.n_calib)
    import onnx
    from onnx import version_converter

    model = onnx.load(src)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        # per-channel DequantizeLinear (axis attribute) needs opset 13; the maven jars are opset 11
        src13 = out + ".opset13.onnx"
        onnx.save(version_converter.convert_version(model, 13), src13)
        src_q = src13
    else:
        src_q = src

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([feeds(calib[i:i + 8]) for i in range(0, len(calib), 8)])

        def get_next(self):
            return next(self.batches, None)

    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy}[args.method]
    t = time.perf_counter()
    quantize_static(
        src_q, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8 if args.activation == "uint8" else QuantType.QInt8, weight_type=QuantType.QInt8,
        # only the weight MatMuls and the attention MatMuls: LayerNorm/Softmax/GELU stay fp32
        op_types_to_quantize=["MatMul"], calibrate_method=method,
        extra_options={"ActivationSymmetric": args.activation == "int8", "WeightSymmetric": True},
    )
    quant_s = time.perf_counter() - t
    if src_q != src:
        os.remove(src_q)

    files = {"fp32": src, **({"dynamic": args.dynamic} if args.dynamic else {}), "static": out}
    sessions = {}
    for k, f in files.items():
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        sessions[k] = ort.InferenceSession(f, so, providers=["CPUExecutionProvider"])

    ev = read_texts(args.eval, args.n_eval)
    pooled = {k: [] for k in sessions}
    for i in range(0, len(ev), 16):
        fd = feeds(ev[i:i + 16])
        mask = fd["attention_mask"][:, :, None].astype(np.float32)
        for k, s in sessions.items():
            h = s.run(None, fd)[0]
            v = h[:, 0] if args.pooling == "cls" else (h * mask).sum(1) / mask.sum(1)
            pooled[k].append(v / np.linalg.norm(v, axis=1, keepdims=True))
    pooled = {k: np.concatenate(v) for k, v in pooled.items()}
    cos = {k: (pooled[k] * pooled["fp32"]).sum(1) for k in sessions if k != "fp32"}

    bench = feeds(ev[: args.batch])
    walls = {k: [] for k in sessions}
    for _ in range(args.reps):
        for k, s in sessions.items():
            t = time.perf_counter()
            s.run(None, bench)
            walls[k].append(time.perf_counter() - t)
    res = {
        "model": args.model_dir, "method": args.method, "activation": args.activation, "calibration": f"{args.n_calib} texts of {args.calib}",
        "quantize_s": round(quant_s, 1), "batch": list(bench["input_ids"].shape), "loadavg": os.getloadavg(),
        "ms": {k: round(1000 * statistics.median(w), 1) for k, w in walls.items()},
        "cosine_to_fp32_min": {k: float(v.min()) for k, v in cos.items()},
        "cosine_to_fp32_mean": {k: float(v.mean()) for k, v in cos.items()},
    }
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
