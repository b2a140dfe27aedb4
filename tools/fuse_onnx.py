#!/usr/bin/env python3
"""Writes the offline-fused variant of an fp32 BERT-family ONNX graph (onnxruntime.transformers.optimizer,
model_type bert: Attention, SkipLayerNormalization, EmbedLayerNormalization, BiasGelu), for bench/fused.ts.
Not for int8 graphs: on pre-quantised graphs the optimizer's output is wrong (bench/results/fusions.md).

    .venv/models/bin/python tools/fuse_onnx.py IN.onnx OUT.onnx [--heads 12 --hidden 384]
"""
import argparse

ap = argparse.ArgumentParser()
ap.add_argument("src")
ap.add_argument("dest")
ap.add_argument("--heads", type=int, default=12)
ap.add_argument("--hidden", type=int, default=384)
a = ap.parse_args()
from onnxruntime.transformers.optimizer import optimize_model

optimize_model(a.src, model_type="bert", num_heads=a.heads, hidden_size=a.hidden, opt_level=0).save_model_to_file(a.dest)
