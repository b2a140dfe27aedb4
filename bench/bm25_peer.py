"""Peer timing for bench/bm25.ts: the `bm25s` package on a BEIR dataset, single-threaded.

Called by the TypeScript bench (`node dist/bench/bm25.js`), which passes the same corpus and
queries and reads the JSON this prints on stdout. Mirrors bm25s's documented default usage:
`bm25s.tokenize(texts, stopwords="en")` (no stemmer), `BM25(method="lucene", k1=0.9, b=0.4)`,
`retrieve(..., k=k, n_threads=0)` (n_threads=0 is bm25s's plain sequential map, no pool).
"""
import argparse
import json
import statistics
import sys
import time

try:
    import bm25s
    import numpy as np
except ImportError as err:  # the TS bench turns this exit code into a setup hint
    print(f"missing Python package: {err.name}", file=sys.stderr)
    sys.exit(3)


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--ks", default="10,1000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--eval-ids", default="", help="file with query ids whose top-10 to return")
    args = ap.parse_args()

    corpus = read_jsonl(f"{args.dataset}/corpus.jsonl")
    queries = read_jsonl(f"{args.dataset}/queries.jsonl")
    doc_ids = [d["_id"] for d in corpus]
    texts = [(d.get("title") or "") + " " + d["text"] for d in corpus]
    query_texts = [q["text"] for q in queries]
    del corpus

    index_runs = []
    for _ in range(args.repeats):
        c0 = time.process_time()
        t0 = time.perf_counter()
        corpus_tokens = bm25s.tokenize(texts, stopwords="en", show_progress=False)
        t1 = time.perf_counter()
        retriever = bm25s.BM25(method="lucene", k1=0.9, b=0.4)
        retriever.index(corpus_tokens, show_progress=False)
        t2 = time.perf_counter()
        cpu = time.process_time() - c0
        index_runs.append({"tokenize_s": t1 - t0, "index_s": t2 - t1, "total_s": t2 - t0, "cpu_s": cpu})

    search = {}
    top10 = None
    for k in [int(x) for x in args.ks.split(",")]:
        runs = []
        for _ in range(args.repeats):
            c0 = time.process_time()
            t0 = time.perf_counter()
            query_tokens = bm25s.tokenize(query_texts, stopwords="en", show_progress=False)
            t1 = time.perf_counter()
            docs, scores = retriever.retrieve(query_tokens, k=k, n_threads=0, show_progress=False)
            t2 = time.perf_counter()
            cpu = time.process_time() - c0
            runs.append({"tokenize_s": t1 - t0, "retrieve_s": t2 - t1, "total_s": t2 - t0, "cpu_s": cpu})
        search[str(k)] = runs
        if top10 is None:
            top10 = {
                queries[i]["_id"]: [doc_ids[j] for j in docs[i][:10]] for i in range(len(queries))
            }

    eval_ids = set()
    if args.eval_ids:
        with open(args.eval_ids, encoding="utf-8") as f:
            eval_ids = {line.strip() for line in f if line.strip()}
    json.dump(
        {
            "system": "bm25s",
            "version": bm25s.__version__,
            "numpy": np.__version__,
            "python": sys.version.split()[0],
            "queries": len(query_texts),
            "docs": len(texts),
            "index": index_runs,
            "search": search,
            "median_index_s": statistics.median(r["total_s"] for r in index_runs),
            "top10": {q: ids for q, ids in (top10 or {}).items() if not eval_ids or q in eval_ids},
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
