#!/usr/bin/env python3
"""Which fusions ONNX Runtime applies to an encoder graph, against the offline transformer optimizer.

For each ONNX file given, prints (and with --json writes) the operator counts of:
  - original:   the file as exported / pulled;
  - runtime:    what an ORT CPU session at ORT_ENABLE_ALL actually runs (saved through
                optimized_model_filepath; this is what Winnow's sessions execute, they use 'all');
  - runtime-ext: the same at ORT_ENABLE_EXTENDED (no layout transforms: a portable file);
  - offline:    onnxruntime.transformers.optimizer.optimize_model(model_type='bert') (the
                Python-only fusions: Attention, SkipLayerNormalization, BiasGelu, EmbedLayerNorm...);
and, with --time, the median wall time of one padded batch through each variant
(--batch x --seq tokens, intra-op threads --threads), with the max |diff| of the outputs to the
original, so a fusion that changes results shows.

    .venv/models/bin/python tools/inspect_fusions.py FILE.onnx [...] [--time] [--batch 32 --seq 128]
        [--heads 12 --hidden 384] [--json bench/results/fusions.json]
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import tempfile
import time

KEY_OPS = [
    "Attention", "MultiHeadAttention", "QAttention", "SkipLayerNormalization", "SkipSimplifiedLayerNormalization",
    "LayerNormalization", "EmbedLayerNormalization", "BiasGelu", "FastGelu", "Gelu", "Erf", "Softmax",
    "MatMul", "FusedMatMul", "MatMulInteger", "DynamicQuantizeMatMul", "DynamicQuantizeLinear", "QuantizeLinear",
    "DequantizeLinear", "QLinearMatMul", "MatMulIntegerToFloat", "Add", "Mul", "Div", "Transpose", "Reshape",
]


def op_counts(path: str) -> dict[str, int]:
    import onnx

    model = onnx.load(path, load_external_data=False)
    return dict(collections.Counter(n.op_type for n in model.graph.node))


def runtime_optimized(src: str, out: str, level) -> None:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = level
    so.optimized_model_filepath = out
    ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def offline_optimized(src: str, out: str, heads: int, hidden: int) -> None:
    from onnxruntime.transformers.optimizer import optimize_model

    # opt_level 0: only the Python fusions; the runtime applies its own on top at load time
    m = optimize_model(src, model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0)
    m.save_model_to_file(out)


def feeds_for(path: str, batch: int, seq: int):
    import numpy as np
    import onnxruntime as ort

    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    lengths = np.linspace(seq, max(2, seq // 3), batch).astype(int)
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)
    feeds = {}
    for i in s.get_inputs():
        if i.name == "input_ids":
            ids = rng.integers(1000, 29000, size=(batch, seq)).astype(np.int64)
            ids[:, 0] = 101
            feeds[i.name] = ids * mask
        elif i.name == "attention_mask":
            feeds[i.name] = mask
        else:
            feeds[i.name] = np.zeros((batch, seq), dtype=np.int64)
    return feeds


def time_variants(paths: dict, feeds, threads: int, reps: int):
    """Median wall per variant, the variants' runs interleaved so load from other jobs hits all alike."""
    import numpy as np
    import onnxruntime as ort

    sessions = {}
    for name, path in paths.items():
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sessions[name] = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    outs = {n: np.asarray(s.run([s.get_outputs()[0].name], feeds)[0], dtype=np.float32) for n, s in sessions.items()}
    walls = {n: [] for n in sessions}
    for _ in range(reps):
        for n, s in sessions.items():
            t = time.perf_counter()
            s.run([s.get_outputs()[0].name], feeds)
            walls[n].append(time.perf_counter() - t)
    return {n: statistics.median(w) for n, w in walls.items()}, outs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--time", action="store_true")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    import onnxruntime as ort

    print(f"onnxruntime {ort.__version__}; load average {os.getloadavg()}", file=sys.stderr)
    report = {"onnxruntime": ort.__version__, "loadavg_start": os.getloadavg(), "files": {}}
    tmp = tempfile.mkdtemp(prefix="fusions-")
    for f in args.files:
        base = os.path.join(tmp, os.path.basename(os.path.dirname(os.path.dirname(os.path.abspath(f)))) + "-" + os.path.basename(f))
        variants = {"original": f}
        variants["runtime"] = base + ".runtime-all.onnx"
        runtime_optimized(f, variants["runtime"], ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        variants["runtime-ext"] = base + ".runtime-ext.onnx"
        runtime_optimized(f, variants["runtime-ext"], ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)
        try:
            variants["offline"] = base + ".offline.onnx"
            offline_optimized(f, variants["offline"], args.heads, args.hidden)
            variants["offline+runtime"] = base + ".offline-runtime.onnx"
            runtime_optimized(variants["offline"], variants["offline+runtime"], ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        except Exception as e:  # the optimizer refuses some graphs; say so and go on
            print(f"{f}: offline optimizer failed: {e}", file=sys.stderr)
            variants.pop("offline", None)
            variants.pop("offline+runtime", None)
        entry = {}
        for name, p in variants.items():
            counts = op_counts(p)
            entry[name] = {"nodes": sum(counts.values()), "ops": {k: counts[k] for k in KEY_OPS if k in counts},
                           "other": {k: v for k, v in counts.items() if k not in KEY_OPS}}
        if args.time:
            feeds = feeds_for(f, args.batch, args.seq)
            timed = {n: variants[n] for n in ("original", "offline") if n in variants}
            walls, outs = time_variants(timed, feeds, args.threads, args.reps)
            for name in timed:
                entry[name]["ms"] = round(walls[name] * 1000, 1)
                entry[name]["max_abs_diff"] = float(abs(outs[name] - outs["original"]).max())
        report["files"][f] = entry
        print(f"\n== {f}")
        for name, e in entry.items():
            ops = ", ".join(f"{k} {v}" for k, v in e["ops"].items())
            timing = f"  [{e['ms']} ms, max|diff| {e['max_abs_diff']:.2e}]" if "ms" in e else ""
            print(f"  {name:16s} {e['nodes']:4d} nodes: {ops}{timing}")
    report["loadavg_end"] = os.getloadavg()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
