#!/usr/bin/env bash
# Schema-driven fuzzing of `winnow serve`: starts the server from examples/cascade.yaml over the
# Cranfield corpus on a free loopback port, points schemathesis at its /openapi.json with a fixed
# seed and a bounded number of examples, and fails on any 5xx, crash or schema violation.
#
#   tools/fuzz_serve.sh [MAX_EXAMPLES] [SEED]
#
# Needs `npx tsc` output in dist/ and .venv/serve (tools/requirements-serve.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
MAX_EXAMPLES="${1:-50}"
SEED="${2:-1}"
ST=.venv/serve/bin/schemathesis
if [ ! -x "$ST" ]; then
  python3 -m venv .venv/serve
  .venv/serve/bin/pip install -q -r tools/requirements-serve.txt
fi
CORPUS="${WINNOW_FUZZ_CORPUS:-../shared/datasets/cranfield/corpus.jsonl}"
LOG="$(mktemp)"
node --input-type=module -e "import('./dist/src/cli/serve.js').then((m) => m.serveCommand(process.argv.slice(1))).then((c) => process.exit(c), (e) => { console.error(e.message); process.exit(1); })" \
  -- --spec examples/cascade.yaml --corpus "$CORPUS" --port 0 --max-docs 200 --deadline-ms 5000 >"$LOG" 2>&1 &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -f "$LOG"' EXIT
for _ in $(seq 1 100); do
  URL=$(grep -o '"url":"[^"]*"' "$LOG" | head -1 | cut -d'"' -f4 || true)
  [ -n "$URL" ] && break
  kill -0 $SERVER 2>/dev/null || { cat "$LOG"; exit 1; }
  sleep 0.2
done
[ -n "$URL" ] || { echo "server did not start"; cat "$LOG"; exit 1; }
echo "fuzzing $URL (seed $SEED, max examples $MAX_EXAMPLES)"
set +e
"$ST" --config-file tools/schemathesis-serve.toml run "$URL/openapi.json" --seed "$SEED" --max-examples "$MAX_EXAMPLES" --workers 1 \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance
STATUS=$?
set -e
# A crash would have killed the server; it must still answer.
curl -sf "$URL/health" >/dev/null || { echo "server died during fuzzing"; cat "$LOG"; exit 1; }
echo "responses logged: $(grep -c '"status":' "$LOG" || true); 504 (deadline passed, documented): $(grep -c '"status":504' "$LOG" || true); other 5xx: $(grep '"status":5' "$LOG" | grep -vc '"status":504' || true)"
exit $STATUS
