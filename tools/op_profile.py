#!/usr/bin/env python3
"""Where an ONNX encoder's time goes: share of kernel time per operator type, from ONNX Runtime's
own profiler (CPU provider, ORT_ENABLE_ALL, as Winnow's sessions run), on a batch of random token
ids with a full attention mask. Used for the per-op tables in bench/results/fusions.md.

    .venv/models/bin/python tools/op_profile.py MODEL.onnx [--batch 8] [--seq 384] [--threads 1] [--reps 4]
"""
import argparse
import collections
import json
import os

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--seq", type=int, default=384)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--reps", type=int, default=4)
ap.add_argument("--top", type=int, default=12)
a = ap.parse_args()

import numpy as np
import onnxruntime as ort

so = ort.SessionOptions()
so.intra_op_num_threads = a.threads
so.enable_profiling = True
so.profile_file_prefix = os.path.join("/tmp", "winnow-op-profile")
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
s = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
rng = np.random.default_rng(0)
shape = (a.batch, a.seq)
feed = {"input_ids": rng.integers(1000, 20000, shape).astype(np.int64), "attention_mask": np.ones(shape, np.int64), "token_type_ids": np.zeros(shape, np.int64)}
feed = {i.name: feed[i.name] for i in s.get_inputs()}
for _ in range(a.reps):
    s.run(None, feed)
trace = s.end_profiling()
with open(trace) as f:
    events = json.load(f)
os.remove(trace)
per_op = collections.Counter()
for e in events:
    if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
        per_op[e["args"]["op_name"]] += e["dur"]
total = sum(per_op.values())
print(f"{a.model}: batch {a.batch} x {a.seq}, {a.threads} thread(s), onnxruntime {ort.__version__}")
for op, us in per_op.most_common(a.top):
    print(f"  {op:26s} {100 * us / total:5.1f}%")
