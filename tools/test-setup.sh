#!/usr/bin/env bash
# Installs what the test suite needs beyond npm packages, once (npm runs this before `npm test`):
# - Debian's chromium, for the report test that renders the HTML report headless;
# - a Python venv with the cohere SDK and schemathesis, for the client and fuzz tests of `winnow serve`;
# - Debian's redis-server and haproxy, for the shared-cache and replica tests (test/scale).
# - a JDK and Maven, and the OpenSearch launcher built from Maven Central once
#   (deploy/cluster/opensearch.sh build), for test/retrieve/opensearch.test.ts.
# Without root (a developer machine) it says what is missing and those tests skip; under CI they fail.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test-setup: installing chromium (Debian package)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "test-setup: chromium not found; the report rendering test needs it (apt-get install -y chromium)"
  fi
fi

if ! command -v redis-server >/dev/null 2>&1 || ! command -v haproxy >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test-setup: installing redis-server and haproxy (Debian packages)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server haproxy >/dev/null
  else
    echo "test-setup: redis-server or haproxy not found; the test/scale tests need them (apt-get install -y redis-server haproxy)"
  fi
fi

if [ ! -x .venv/serve/bin/schemathesis ] || ! .venv/serve/bin/python -c 'import cohere' 2>/dev/null; then
  echo "test-setup: creating .venv/serve (tools/requirements-serve.txt)"
  python3 -m venv .venv/serve
  .venv/serve/bin/pip install -q --disable-pip-version-check -r tools/requirements-serve.txt
fi

if ! command -v javac >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test-setup: installing a JDK and Maven (Debian packages) for the OpenSearch tests"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jdk-headless maven curl >/dev/null
  else
    echo "test-setup: javac/mvn not found; the OpenSearch tests skip (apt-get install -y openjdk-17-jdk-headless maven)"
  fi
fi
if command -v javac >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1; then
  # Downloads OpenSearch and the k-NN plugin from Maven Central on the first run only.
  bash deploy/cluster/opensearch.sh build
fi

# The GGUF backend's end-to-end test: node-llama-cpp (optional peer, linked into node_modules)
# and PyPI's gemma3-270m GGUF (a base model: plumbing only). Without them that one test skips.
if ! bash tools/fetch-gguf.sh >/dev/null 2>/tmp/winnow-fetch-gguf.log; then
  echo "test-setup: tools/fetch-gguf.sh failed (see /tmp/winnow-fetch-gguf.log); the GGUF test will skip"
fi
