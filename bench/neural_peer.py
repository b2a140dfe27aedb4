"""Peer timings for bench/neural.ts: sentence-transformers on PyTorch CPU (fp32).

Called by the TypeScript bench once per round (so machine load hits both sides alike), with
the same inputs it times itself. Prints one JSON object on stdout.

  --mode ce: `CrossEncoder(folder, max_length=L).predict(pairs, batch_size=B)` on the pairs
  --mode bi: `SentenceTransformer(folder).encode(docs, batch_size=B)` on the documents

Model loading and one warm-up call are not timed; `--repeats` timed calls follow. The
thread count is pinned with torch.set_num_threads (the same number Winnow is given).
"""
import argparse
import json
import sys
import time

try:
    import torch
    import sentence_transformers
    from sentence_transformers import CrossEncoder, SentenceTransformer
except ImportError as err:
    print(f"missing Python package: {err.name}", file=sys.stderr)
    sys.exit(3)


def peak(args):
    """GFLOP/s of one [M, K] x [K, N] MatMul: ONNX Runtime fp32 and dynamic int8, and numpy."""
    import os
    import tempfile

    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    m, k, n = (int(x) for x in args.shape.split(","))
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = (rng.standard_normal((k, n), dtype=np.float32) * 0.05).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["A", "B"], ["C"])],
        "mm",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["M", k])],
        [helper.make_tensor_value_info("C", TensorProto.FLOAT, ["M", n])],
        [numpy_helper.from_array(b, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9  # what the installed onnxruntime reads
    tmp = tempfile.mkdtemp()
    fp32 = os.path.join(tmp, "mm.onnx")
    int8 = os.path.join(tmp, "mm_q.onnx")
    onnx.save(model, fp32)
    quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8, per_channel=True)
    flop = 2.0 * m * k * n

    def best(fn, reps=7):
        fn()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        # the best run is the machine's capability; the median shows the load
        return min(ts), sorted(ts)[len(ts) // 2]

    out = {}
    for name, path in (("ort_fp32", fp32), ("ort_int8", int8)):
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        lo, med = best(lambda: s.run(None, {"A": a}))
        out[f"{name}_best_gflops"] = flop / lo / 1e9
        out[f"{name}_median_gflops"] = flop / med / 1e9
    try:
        from threadpoolctl import threadpool_info, threadpool_limits

        with threadpool_limits(args.threads):
            lo, med = best(lambda: a @ b)
        info = [f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')}" for i in threadpool_info() if i.get("user_api") == "blas"]
        out["numpy_sgemm_best_gflops"] = flop / lo / 1e9
        out["numpy_sgemm_median_gflops"] = flop / med / 1e9
        out["numpy_blas"] = "; ".join(info)
    except ImportError:
        pass
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["ce", "bi", "peak"], required=True)
    ap.add_argument("--shape", default="9600,384,1536", help="peak: M,K,N of the MatMul")
    ap.add_argument("--model", required=True)
    ap.add_argument("--inputs", required=True, help="JSON: {pairs: [[q, d], ...]} or {docs: [...]}")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()

    if args.mode == "peak":
        print(json.dumps(peak(args)))
        return
    torch.set_num_threads(args.threads)
    with open(args.inputs, encoding="utf-8") as f:
        inputs = json.load(f)
    times = []
    if args.mode == "ce":
        model = CrossEncoder(args.model, max_length=args.max_length, device="cpu", local_files_only=True)
        pairs = [tuple(p) for p in inputs["pairs"]]
        model.predict(pairs[:8], batch_size=args.batch_size, show_progress_bar=False)
        for _ in range(args.repeats):
            c0 = time.process_time()
            t0 = time.perf_counter()
            scores = model.predict(pairs, batch_size=args.batch_size, show_progress_bar=False)
            times.append({"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0})
        sample = [float(x) for x in scores[:10]]
        n = len(pairs)
    else:
        model = SentenceTransformer(args.model, device="cpu", local_files_only=True)
        docs = inputs["docs"]
        model.encode(docs[:8], batch_size=args.batch_size, show_progress_bar=False)
        for _ in range(args.repeats):
            c0 = time.process_time()
            t0 = time.perf_counter()
            emb = model.encode(docs, batch_size=args.batch_size, show_progress_bar=False)
            times.append({"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0})
        sample = [float(x) for x in emb[0][:8]]
        n = len(docs)
    print(
        json.dumps(
            {
                "system": f"sentence-transformers {sentence_transformers.__version__} / torch {torch.__version__}",
                "threads": torch.get_num_threads(),
                "items": n,
                "maxLength": model.max_seq_length if args.mode == "bi" else args.max_length,
                "times": times,
                "sample": sample,
            }
        )
    )


if __name__ == "__main__":
    main()
