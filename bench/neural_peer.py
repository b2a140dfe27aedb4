"""Peer timings for bench/neural.ts: the Python systems people use for CPU reranking/embedding.

Called by the TypeScript bench once per system per round (so machine load hits every side
alike), with the same inputs it times itself. Prints one JSON object on stdout.

  --mode ce: `CrossEncoder(folder, max_length=L).predict(pairs, batch_size=B)`, or fastembed
             `TextCrossEncoder.rerank_pairs(pairs, batch_size=B)`
  --mode bi: `SentenceTransformer(folder).encode(docs, batch_size=B)`, or fastembed
             `TextEmbedding.embed(docs, batch_size=B)`
  --backend torch      sentence-transformers on PyTorch (fp32)            .venv/models
  --backend onnx       sentence-transformers backend="onnx": fp32 = its export_optimized_onnx_model
                       (O3 by default), int8 = export_dynamic_quantized_onnx_model (avx512_vnni)
                                                                          .venv/neural-onnx
  --backend openvino   sentence-transformers backend="openvino": fp32 IR, int8 = static
                       post-training quantisation through optimum-intel's OVQuantizer (NNCF)
                                                                          .venv/neural-openvino
  --backend fastembed  fastembed on the very ONNX files Winnow loads (model.onnx / model_quantized.onnx)
                                                                          .venv/neural-onnx
Each backend's exports are made once into --work (a copy of the model folder without Winnow's
onnx/, so the peer exports with its own tooling). Model loading, exports and one warm-up call
are not timed; `--repeats` timed calls follow. Threads: torch.set_num_threads, ONNX Runtime
intra_op_num_threads (inter-op 1), OpenVINO INFERENCE_NUM_THREADS, fastembed threads= - all the
number Winnow is given.
"""
import argparse
import json
import sys
import time



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


def pin_threads(threads):
    # torch's own pool, and any OpenMP/BLAS pool a backend may pull in
    import os

    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import torch

    torch.set_num_threads(threads)


def ort_session_options(threads):
    """What Winnow and fastembed give ONNX Runtime: the same intra-op thread count, one inter-op."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return so


def st_model(args, kind):
    """sentence-transformers on a local copy of the model folder (its exports are written next to
    the copy's weights, as `save_pretrained` + `export_*` would for a user), cached in --work."""
    import os
    import shutil

    from sentence_transformers import CrossEncoder, SentenceTransformer

    cls = CrossEncoder if kind == "ce" else SentenceTransformer
    common = dict(device="cpu", local_files_only=True)
    if kind == "ce":
        common["max_length"] = args.max_length
    if args.backend == "torch":
        return cls(args.model, **common), "torch fp32"
    work = os.path.join(args.work, f"{kind}-{args.backend}")
    if not os.path.exists(os.path.join(work, "config.json")):
        # a copy without Winnow's own onnx/ export, so the peer exports with its own tooling
        shutil.copytree(args.model, work, ignore=shutil.ignore_patterns("onnx", "openvino", "*.onnx", "winnow-model.json"), dirs_exist_ok=True)
    if args.backend == "onnx":
        from sentence_transformers import export_dynamic_quantized_onnx_model, export_optimized_onnx_model

        so = ort_session_options(args.threads)
        kw = {"provider": "CPUExecutionProvider", "session_options": so}
        if not os.path.exists(os.path.join(work, "onnx", "model.onnx")):
            base = cls(work, backend="onnx", model_kwargs=dict(kw), **common)
            base.save_pretrained(work)
        if args.precision == "fp32":
            # the ONNX Runtime graph optimisations sentence-transformers documents: O1-O3 run on CPU
            # (O4 adds fp16, GPU only); O3 = O2's fusions + fast GELU approximation
            name = f"model_{args.optimization}.onnx"
            if not os.path.exists(os.path.join(work, "onnx", name)):
                export_optimized_onnx_model(cls(work, backend="onnx", model_kwargs=dict(kw), **common), args.optimization, work)
            kw["file_name"] = f"onnx/{name}"
            label = f"onnx {args.optimization}"
        else:
            # its documented int8 path: dynamic quantisation with the config for this CPU
            name = f"model_qint8_{args.quant_config}.onnx"
            if not os.path.exists(os.path.join(work, "onnx", name)):
                export_dynamic_quantized_onnx_model(cls(work, backend="onnx", model_kwargs=dict(kw), **common), args.quant_config, work)
            kw["file_name"] = f"onnx/{name}"
            label = f"onnx qint8 {args.quant_config}"
        return cls(work, backend="onnx", model_kwargs=kw, **common), label
    # openvino
    ov_config = {"INFERENCE_NUM_THREADS": str(args.threads)}
    kw = {"ov_config": ov_config}
    if not os.path.exists(os.path.join(work, "openvino", "openvino_model.xml")):
        cls(work, backend="openvino", model_kwargs=dict(kw), **common).save_pretrained(work)
    if args.precision == "fp32":
        # OpenVINO runs an fp32 model in bf16 on CPUs with AVX512_BF16 or AMX unless told not
        # to: "fp32" here means fp32 arithmetic, like every other fp32 row
        ov_config["INFERENCE_PRECISION_HINT"] = "f32"
        return cls(work, backend="openvino", model_kwargs=kw, **common), "openvino fp32"
    if args.precision == "bf16":
        return cls(work, backend="openvino", model_kwargs=kw, **common), "openvino fp32 model, default inference precision (bf16 where the CPU has it)"
    name = "openvino_model_qint8_quantized.xml"
    if not os.path.exists(os.path.join(work, "openvino", name)):
        ov_static_int8(cls(work, backend="openvino", model_kwargs=dict(kw), **common), kind, args, work)
    kw["file_name"] = f"openvino/{name}"
    return cls(work, backend="openvino", model_kwargs=kw, **common), "openvino static int8 (NNCF)"


def ov_static_int8(model, kind, args, work):
    """sentence-transformers' export_static_quantized_openvino_model with the calibration set given
    locally: that function loads a Hub dataset (GLUE sst2 by default), which this machine cannot
    reach, so this runs its body (OVQuantizer + default OVQuantizationConfig = NNCF post-training
    static int8, inputs padded to 384 like it does, saved under the same file name) on the texts
    in --calib: SciFact pairs / documents that follow the timed ones."""
    from datasets import Dataset
    from optimum.intel.openvino import OVConfig, OVQuantizationConfig, OVQuantizer
    from sentence_transformers.backend.utils import save_or_push_to_hub_model

    with open(args.calib, encoding="utf-8") as f:
        calib = json.load(f)
    tok = model.tokenizer
    if kind == "ce":
        ds = Dataset.from_dict({"q": [p[0] for p in calib["pairs"]], "d": [p[1] for p in calib["pairs"]]})
        prep = lambda ex: tok(ex["q"], ex["d"], padding="max_length", max_length=384, truncation=True)
    else:
        ds = Dataset.from_dict({"t": calib["docs"]})
        prep = lambda ex: tok(ex["t"], padding="max_length", max_length=384, truncation=True)
    ds = ds.map(prep, batched=True, remove_columns=ds.column_names)
    qc = OVQuantizationConfig(num_samples=len(ds))
    ov_config = OVConfig(quantization_config=qc)
    quantizer = OVQuantizer.from_pretrained(model.transformers_model)
    save_or_push_to_hub_model(
        export_function=lambda save_dir: quantizer.quantize(ds, save_directory=save_dir, ov_config=ov_config),
        export_function_name="export_static_quantized_openvino_model",
        config=ov_config.quantization_config,
        model_name_or_path=work,
        push_to_hub=False,
        create_pr=False,
        file_suffix="qint8_quantized",
        backend="openvino",
        model=model,
    )


def fastembed_model(args, kind):
    """fastembed's TextCrossEncoder / TextEmbedding on the same ONNX files Winnow loads, registered
    as custom models and read from the local folder (specific_model_path: nothing is downloaded)."""
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType
    from fastembed.rerank.cross_encoder import TextCrossEncoder

    file = "onnx/model.onnx" if args.precision == "fp32" else "onnx/model_quantized.onnx"
    name = f"winnow-bench/{kind}-{args.precision}"
    src = ModelSource(hf=name)
    if kind == "ce":
        TextCrossEncoder.add_custom_model(model=name, model_file=file, sources=src, size_in_gb=0.1)
        m = TextCrossEncoder(model_name=name, specific_model_path=args.model, threads=args.threads, lazy_load=False)
    else:
        TextEmbedding.add_custom_model(model=name, pooling=PoolingType.MEAN, normalization=True, sources=src, dim=384, model_file=file, size_in_gb=0.1)
        m = TextEmbedding(model_name=name, specific_model_path=args.model, threads=args.threads, lazy_load=False)
    return m, f"{args.precision} {file}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["ce", "bi", "peak"], required=True)
    ap.add_argument("--backend", choices=["torch", "onnx", "openvino", "fastembed"], default="torch")
    ap.add_argument("--precision", choices=["fp32", "bf16", "int8"], default="fp32", help="bf16: openvino only, its default on CPUs with AVX512_BF16/AMX")
    ap.add_argument("--optimization", default="O3", help="onnx fp32: sentence-transformers optimisation level")
    ap.add_argument("--quant-config", default="avx512_vnni", help="onnx int8: arm64 | avx2 | avx512 | avx512_vnni")
    ap.add_argument("--work", default="bench/.work/peers", help="where peer exports are cached")
    ap.add_argument("--calib", help="openvino int8: JSON of calibration pairs/docs (not the timed ones)")
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
    if args.backend == "torch" and args.precision != "fp32":
        ap.error("--backend torch runs fp32 only")
    pin_threads(args.threads)
    with open(args.inputs, encoding="utf-8") as f:
        inputs = json.load(f)
    kind = args.mode
    if args.backend == "fastembed":
        import fastembed

        model, variant = fastembed_model(args, kind)
        system = f"fastembed {fastembed.__version__} ({variant})"
        if kind == "ce":
            pairs = [tuple(p) for p in inputs["pairs"]]
            run = lambda xs: list(model.rerank_pairs(xs, batch_size=args.batch_size))
        else:
            docs = inputs["docs"]
            run = lambda xs: list(model.embed(xs, batch_size=args.batch_size))
    else:
        import sentence_transformers

        model, variant = st_model(args, kind)
        system = f"sentence-transformers {sentence_transformers.__version__} ({variant})"
        if kind == "ce":
            pairs = [tuple(p) for p in inputs["pairs"]]
            run = lambda xs: model.predict(xs, batch_size=args.batch_size, show_progress_bar=False)
        else:
            docs = inputs["docs"]
            run = lambda xs: model.encode(xs, batch_size=args.batch_size, show_progress_bar=False)
    items = pairs if kind == "ce" else docs
    run(items[:8])
    times = []
    for _ in range(args.repeats):
        c0 = time.process_time()
        t0 = time.perf_counter()
        out = run(items)
        times.append({"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0})
    sample = [float(x) for x in out[:10]] if kind == "ce" else [float(x) for x in out[0][:8]]
    max_len = args.max_length
    if kind == "bi" and hasattr(model, "max_seq_length"):
        max_len = model.max_seq_length
    print(json.dumps({"system": system, "threads": args.threads, "items": len(items), "maxLength": max_len, "times": times, "sample": sample}))


if __name__ == "__main__":
    try:
        main()
    except ImportError as err:
        print(f"missing Python package: {err.name} (create the venvs with tools/make_neural_peers.sh)", file=sys.stderr)
        sys.exit(3)
