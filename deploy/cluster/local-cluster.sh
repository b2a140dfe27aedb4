#!/usr/bin/env bash
# N `winnow serve` replicas behind haproxy (deploy/haproxy/haproxy.cfg), loopback only, on free
# ports picked at start: a local trial of the replicated deployment, and what test/scale uses.
#
#   deploy/cluster/local-cluster.sh up [--replicas N] [--dir DIR] [--spec FILE] [-- SERVE_ARGS...]
#       N defaults to 3. Without --spec the replicas serve a BM25 cascade over the committed
#       test/fixtures/io/beir_small corpus: nothing to download, no model files. SERVE_ARGS go to
#       every `winnow serve` as they are (e.g. -- --drain-delay-ms 2000 --corpus path/corpus.jsonl).
#       Waits until every replica answers /ready and haproxy has marked every one UP, then prints
#       one NAME=value line per fact:
#         CLUSTER_DIR=...            state folder (pids, logs, generated config); give it to `down`
#         FRONT_URL=http://127.0.0.1:PORT      haproxy's address
#         REPLICA_URLS=url1,url2,...            replica rK is the K-th (haproxy's X-Served-By: rK)
#         REPLICA_PIDS=pid1,pid2,...
#         HAPROXY_PID=pid
#   deploy/cluster/local-cluster.sh down DIR
#       stops what `up` started, by the pids recorded in DIR (TERM, then KILL after 15 s), and
#       removes DIR
#
# Needs a built checkout (npm ci runs the build) and Debian's haproxy (tools/test-setup.sh).
set -euo pipefail

die() { echo "local-cluster.sh: $*" >&2; exit 1; }
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CFG=$ROOT/deploy/haproxy/haproxy.cfg

# HTTP status of a GET, 0 when nothing answers; node is always there, curl may not be
status_of() {
  node -e 'fetch(process.argv[1], { signal: AbortSignal.timeout(2000) }).then((r) => console.log(r.status), () => console.log(0))' "$1"
}

# how many servers of backend `replicas` haproxy reports UP, asked on its admin socket
servers_up() {
  node -e '
    const s = require("node:net").connect(process.argv[1]);
    let out = "";
    s.on("data", (d) => (out += d));
    s.on("error", () => console.log(0));
    s.on("end", () => {
      const rows = out.split("\n").map((l) => l.split(","));
      const status = rows[0].indexOf("status");
      console.log(rows.filter((r) => r[0] === "replicas" && /^r\d+$/.test(r[1]) && r[status] === "UP").length);
    });
    s.end("show stat\n");
  ' "$1"
}

# waits up to $2 tenths of a second for the command in $3.. to print $1; pid $PID_ALIVE must live
wait_for() {
  local want=$1 tries=$2
  shift 2
  for _ in $(seq 1 "$tries"); do
    [ "$("$@")" = "$want" ] && return 0
    [ -z "${PID_ALIVE:-}" ] || kill -0 "$PID_ALIVE" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

up() {
  local n=3 dir="" spec=""
  while [ $# -gt 0 ]; do
    case $1 in
      --replicas) n=${2:?--replicas needs a number}; shift ;;
      --dir) dir=${2:?--dir needs a folder}; shift ;;
      --spec) spec=${2:?--spec needs a file}; shift ;;
      --) shift; break ;;
      *) die "unknown option $1 (up [--replicas N] [--dir DIR] [--spec FILE] [-- SERVE_ARGS...])" ;;
    esac
    shift
  done
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "--replicas must be a positive integer, got $n"
  command -v haproxy >/dev/null || die "haproxy not found (apt-get install -y haproxy, or bash tools/test-setup.sh)"
  [ -f "$ROOT/dist/src/cli/main.js" ] || die "no build in $ROOT/dist (npm ci, or npx tsc -p tsconfig.json)"
  [ -n "$dir" ] || dir=$(mktemp -d "${TMPDIR:-/tmp}/winnow-cluster.XXXXXX")
  mkdir -p "$dir"
  touch "$dir/.winnow-cluster"
  : >"$dir/pids"
  # a failed start (die, or a failing command under set -e) stops what it had started already
  STATE_DIR=$dir
  trap '[ "${STARTED:-0}" = 1 ] || down "$STATE_DIR" >/dev/null 2>&1 || true' EXIT

  local serve_args=("$@")
  if [ -z "$spec" ]; then
    spec=$dir/bm25.yaml
    printf 'name: bm25\nstages:\n  - rerank: bm25\n' >"$spec"
    local has_corpus=0
    for a in "${serve_args[@]}"; do [ "$a" = --corpus ] && has_corpus=1; done
    [ "$has_corpus" = 1 ] || serve_args+=(--corpus "$ROOT/test/fixtures/io/beir_small/corpus.jsonl")
  fi

  local urls=() pids=()
  for i in $(seq 1 "$n"); do
    node "$ROOT/bin/winnow.js" serve --spec "$spec" --host 127.0.0.1 --port 0 "${serve_args[@]}" \
      </dev/null >"$dir/replica-$i.log" 2>&1 &
    pids+=($!)
    echo "$!" >>"$dir/pids"
  done
  for i in $(seq 1 "$n"); do
    local pid=${pids[$((i - 1))]} url=""
    for _ in $(seq 1 600); do
      url=$(sed -n 's/.*"event":"listening","url":"\([^"]*\)".*/\1/p' "$dir/replica-$i.log")
      [ -n "$url" ] && break
      kill -0 "$pid" 2>/dev/null || die "replica $i exited at start: $(tail -3 "$dir/replica-$i.log")"
      sleep 0.1
    done
    [ -n "$url" ] || die "replica $i did not listen within 60 s: $(tail -3 "$dir/replica-$i.log")"
    PID_ALIVE=$pid wait_for 200 600 status_of "$url/ready" || die "replica $i never became ready: $(tail -3 "$dir/replica-$i.log")"
    urls+=("$url")
  done

  # The committed config names three servers; for another N, the same file with N server lines.
  local cfg=$CFG
  if [ "$n" != 3 ]; then
    cfg=$dir/haproxy.cfg
    grep -Ev '^\s*server r[0-9]+ ' "$CFG" >"$cfg"
    for i in $(seq 1 "$n"); do echo "    server r$i \"\${WINNOW_REPLICA_$i}\"" >>"$cfg"; done
  fi
  for i in $(seq 1 "$n"); do export "WINNOW_REPLICA_$i=${urls[$((i - 1))]#http://}"; done
  # admin socket for the wait below; noreuseport so a port another haproxy holds fails the bind
  printf 'global\n    stats socket %s mode 600 level admin\n    noreuseport\n' "$dir/haproxy.sock" >"$dir/local.cfg"

  local lb_pid="" port=""
  for _ in $(seq 1 30); do
    port=$((20000 + RANDOM % 35000))
    export WINNOW_LB_BIND=127.0.0.1:$port
    rm -f "$dir/haproxy.sock"
    haproxy -db -f "$cfg" -f "$dir/local.cfg" </dev/null >"$dir/haproxy.log" 2>&1 &
    lb_pid=$!
    # the socket appears once the listeners are bound; a taken port ends the process instead
    if PID_ALIVE=$lb_pid wait_for yes 100 sh -c "[ -S '$dir/haproxy.sock' ] && echo yes"; then break; fi
    kill "$lb_pid" 2>/dev/null || true
    lb_pid=""
  done
  [ -n "$lb_pid" ] || die "haproxy did not start: $(tail -3 "$dir/haproxy.log")"
  echo "$lb_pid" >>"$dir/pids"
  PID_ALIVE=$lb_pid wait_for "$n" 300 servers_up "$dir/haproxy.sock" ||
    die "haproxy did not mark all $n replicas UP within 30 s: $(tail -3 "$dir/haproxy.log")"
  STARTED=1

  echo "CLUSTER_DIR=$dir"
  echo "FRONT_URL=http://127.0.0.1:$port"
  local list
  list=$(printf '%s,' "${urls[@]}")
  echo "REPLICA_URLS=${list%,}"
  list=$(printf '%s,' "${pids[@]}")
  echo "REPLICA_PIDS=${list%,}"
  echo "HAPROXY_PID=$lb_pid"
}

down() {
  local dir=${1:?down needs the CLUSTER_DIR that up printed}
  [ -f "$dir/.winnow-cluster" ] || die "$dir is not a folder local-cluster.sh up made"
  if [ -f "$dir/pids" ]; then
    local pids
    # only our processes: a pid recorded long ago may have been reused by another one
    pids=$(for pid in $(cat "$dir/pids"); do grep -qsaE 'winnow|haproxy' "/proc/$pid/cmdline" && echo "$pid"; done)
    for pid in $pids; do kill "$pid" 2>/dev/null || true; done
    # a replica keeps answering for its --drain-delay-ms, then finishes its requests
    for _ in $(seq 1 150); do
      local alive=0
      for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive=1; done
      [ "$alive" = 0 ] && break
      sleep 0.1
    done
    for pid in $pids; do kill -9 "$pid" 2>/dev/null || true; done
  fi
  rm -rf "$dir"
}

case ${1:-} in
  up) shift; up "$@" ;;
  down) shift; down "$@" ;;
  *) die "usage: local-cluster.sh up [--replicas N] [--dir DIR] [--spec FILE] [-- SERVE_ARGS...] | down DIR" ;;
esac
