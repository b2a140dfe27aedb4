#!/usr/bin/env bash
# Local Redis for tests and trials, on loopback only, on free ports picked at start.
#
#   deploy/cluster/redis.sh up [--cluster] [--port N] [--dir DIR]
#       standalone (default): one redis-server; --port reuses a port (a restart in a test)
#       --cluster: three masters (redis-server --cluster-enabled yes) joined by
#                  `redis-cli --cluster create`, waited for until every node says cluster_state:ok
#     prints one NAME=value line per fact, for `eval`-ing or parsing:
#       REDIS_DIR=...      state folder (pids, logs, node configs); give it to `down`
#       REDIS_URL=redis://127.0.0.1:PORT          (cluster: the first node)
#       REDIS_CLUSTER=127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3   (cluster only)
#       REDIS_PIDS=pid[,pid,pid]
#   deploy/cluster/redis.sh down DIR
#       stops the servers `up` started (by the pids in DIR/pids: TERM, then KILL after 5 s)
#       and removes DIR
#
# Needs Debian's redis-server and redis-cli (tools/test-setup.sh installs them). Persistence is
# off and memory is capped with LRU eviction: this Redis is a cache, as Winnow uses it. DEBUG is
# allowed from loopback so tests can stall the server (DEBUG SLEEP).
set -euo pipefail

die() { echo "redis.sh: $*" >&2; exit 1; }
command -v redis-server >/dev/null || die "redis-server not found (apt-get install -y redis-server)"
command -v redis-cli >/dev/null || die "redis-cli not found (apt-get install -y redis-server)"

# Starts one node on $1 in state folder $2 with extra args; prints its pid, or nothing when the
# port was taken (another process won the race for it) or the server died at start.
start_node() {
  local port=$1 dir=$2
  shift 2
  mkdir -p "$dir/node-$port"
  redis-server --bind 127.0.0.1 --port "$port" --dir "$dir/node-$port" \
    --save '' --appendonly no --maxmemory 256mb --maxmemory-policy allkeys-lru --enable-debug-command local \
    --logfile "$dir/node-$port/redis.log" --daemonize no "$@" </dev/null >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do
    if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ]; then
      # the answer must come from our process, not from someone else's server on that port
      if redis-cli -h 127.0.0.1 -p "$port" info server 2>/dev/null | tr -d '\r' | grep -qx "process_id:$pid"; then echo "$pid"; fi
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.05
  done
  kill "$pid" 2>/dev/null || true
}

# Starts a node on a random free-looking port, retrying on collisions; prints "port pid".
# Ports stay below 55535 so a cluster node's bus port (port + 10000) is valid too.
start_free_node() {
  local dir=$1
  shift
  for _ in $(seq 1 30); do
    local port=$((20000 + RANDOM % 35000))
    local pid
    pid=$(start_node "$port" "$dir" "$@")
    if [ -n "$pid" ]; then echo "$port $pid"; return 0; fi
  done
  die "no free port found after 30 tries"
}

up() {
  local cluster=0 port="" dir=""
  while [ $# -gt 0 ]; do
    case $1 in
      --cluster) cluster=1 ;;
      --port) port=${2:?--port needs a number}; shift ;;
      --dir) dir=${2:?--dir needs a folder}; shift ;;
      *) die "unknown option $1 (up [--cluster] [--port N] [--dir DIR])" ;;
    esac
    shift
  done
  [ -n "$dir" ] || dir=$(mktemp -d "${TMPDIR:-/tmp}/winnow-redis.XXXXXX")
  mkdir -p "$dir"
  touch "$dir/.winnow-redis"
  # a restart into the same folder: forget servers that are gone, so `down` kills only live ones
  if [ -f "$dir/pids" ]; then
    local live=""
    for pid in $(cat "$dir/pids"); do kill -0 "$pid" 2>/dev/null && live="$live$pid"$'\n'; done
    printf '%s' "$live" >"$dir/pids"
  fi
  local pids=() ports=()
  if [ "$cluster" = 0 ]; then
    if [ -n "$port" ]; then
      local pid
      pid=$(start_node "$port" "$dir")
      [ -n "$pid" ] || die "could not start redis-server on port $port (in use?)"
      ports=("$port"); pids=("$pid")
    else
      read -r p pid < <(start_free_node "$dir")
      ports=("$p"); pids=("$pid")
    fi
  else
    [ -z "$port" ] || die "--port is for standalone mode"
    for _ in 1 2 3; do
      read -r p pid < <(start_free_node "$dir" --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000)
      ports+=("$p"); pids+=("$pid")
      echo "$pid" >>"$dir/pids"
    done
    local nodes=()
    for p in "${ports[@]}"; do nodes+=("127.0.0.1:$p"); done
    redis-cli --cluster create "${nodes[@]}" --cluster-yes >"$dir/cluster-create.log" 2>&1 ||
      die "redis-cli --cluster create failed: $(tail -3 "$dir/cluster-create.log")"
    local ok=0
    for _ in $(seq 1 200); do
      ok=1
      for p in "${ports[@]}"; do
        redis-cli -h 127.0.0.1 -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || ok=0
      done
      [ "$ok" = 1 ] && break
      sleep 0.05
    done
    [ "$ok" = 1 ] || die "cluster did not reach cluster_state:ok in 10 s (see $dir)"
  fi
  [ "$cluster" = 1 ] || echo "${pids[0]}" >>"$dir/pids"
  echo "REDIS_DIR=$dir"
  echo "REDIS_URL=redis://127.0.0.1:${ports[0]}"
  if [ "$cluster" = 1 ]; then
    local list
    list=$(printf '127.0.0.1:%s,' "${ports[@]}")
    echo "REDIS_CLUSTER=${list%,}"
  fi
  local plist
  plist=$(printf '%s,' "${pids[@]}")
  echo "REDIS_PIDS=${plist%,}"
}

down() {
  local dir=${1:?down needs the REDIS_DIR that up printed}
  [ -f "$dir/.winnow-redis" ] || die "$dir is not a folder redis.sh up made"
  if [ -f "$dir/pids" ]; then
    local pids
    # only our servers: a pid recorded long ago may have been reused by another process
    pids=$(for pid in $(cat "$dir/pids"); do grep -qs redis-server "/proc/$pid/cmdline" && echo "$pid"; done)
    for pid in $pids; do kill "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 100); do
      local alive=0
      for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive=1; done
      [ "$alive" = 0 ] && break
      sleep 0.05
    done
    for pid in $pids; do kill -9 "$pid" 2>/dev/null || true; done
  fi
  rm -rf "$dir"
}

case ${1:-} in
  up) shift; up "$@" ;;
  down) shift; down "$@" ;;
  *) die "usage: redis.sh up [--cluster] [--port N] [--dir DIR] | down DIR" ;;
esac
