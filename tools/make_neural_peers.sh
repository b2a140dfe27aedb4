#!/usr/bin/env bash
# Creates the Python venvs of bench/neural.ts's peers (tooling only; Winnow itself is TypeScript):
#   .venv/models          sentence-transformers on PyTorch (tools/requirements-models.txt)
#   .venv/neural-onnx     sentence-transformers backend="onnx" + fastembed (tools/requirements-neural-onnx.txt)
#   .venv/neural-openvino sentence-transformers backend="openvino" (tools/requirements-neural-openvino.txt)
# Separate venvs because optimum-onnx and optimum-intel pin different optimum / transformers
# versions. Only PyPI is used. A venv built from the same requirements file is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
make_venv() {
  local dir=$1 req=$2 sum
  sum=$(sha256sum "$req" | cut -d' ' -f1)
  if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.requirements.sha256" 2>/dev/null)" = "$sum" ]; then
    return
  fi
  echo "make_neural_peers: $dir <- $req" >&2
  [ -x "$dir/bin/python" ] || python3 -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check -r "$req"
  echo "$sum" > "$dir/.requirements.sha256"
}
make_venv .venv/models tools/requirements-models.txt
make_venv .venv/neural-onnx tools/requirements-neural-onnx.txt
make_venv .venv/neural-openvino tools/requirements-neural-openvino.txt
