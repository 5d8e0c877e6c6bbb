#!/usr/bin/env bash
# Redis Cluster: three masters and a replica of each from the machine's
# redis-server on free loopback ports (own config and data dir each, under a
# mktemp dir, no persistence), made a cluster with `redis-cli --cluster
# create`. Runs the tests that need it (DOUYIN_TEST_REDIS_CLUSTER): the cache
# suite, counts, flags and pushes through the app, then alone the failover
# test, which kills masters and restarts them (it finds each node's config
# under DOUYIN_TEST_REDIS_CLUSTER_DIR). Prints the commands each node served.
# Always stops what it started (by the pids in its pidfiles); cleanup never
# fails the run. `bash .ci/redis-cluster.sh --keep` leaves the cluster up
# and prints its environment instead of running the tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/douyin-target}"
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
command -v redis-server >/dev/null || { echo "redis-cluster: redis-server is not on PATH" >&2; exit 1; }
keep="${1:-}"

dir="$(mktemp -d)"
mapfile -t ports < <(python3 .ci/free_port.py 6)

stop() {
  for pidfile in "$dir"/*/redis.pid; do
    [ -f "$pidfile" ] || continue
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for _ in $(seq 50); do
    alive=0
    for pidfile in "$dir"/*/redis.pid; do
      [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile" 2>/dev/null || echo 0)" 2>/dev/null && alive=1
    done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  rm -rf "$dir" 2>/dev/null || true
}
[ "$keep" = "--keep" ] || trap 'stop || true' EXIT

nodes=()
for port in "${ports[@]}"; do
  mkdir -p "$dir/$port"
  cat >"$dir/$port.conf" <<EOF
port $port
bind 127.0.0.1
dir $dir/$port
daemonize yes
pidfile $dir/$port/redis.pid
logfile $dir/$port/redis.log
cluster-enabled yes
cluster-config-file nodes.conf
cluster-node-timeout 1000
cluster-replica-validity-factor 0
save ""
appendonly no
EOF
  redis-server "$dir/$port.conf"
  nodes+=("127.0.0.1:$port")
done
for port in "${ports[@]}"; do
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
done
redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 \
  || { cat "$dir/create.log" >&2; exit 1; }
for _ in $(seq 200); do
  ok=1
  for port in "${ports[@]}"; do
    redis-cli -p "$port" cluster info | grep -q 'cluster_state:ok' || ok=0
  done
  [ "$ok" = 1 ] && break
  sleep 0.1
done
[ "$ok" = 1 ] || { echo "redis-cluster: the cluster never became ok" >&2; exit 1; }

export DOUYIN_TEST_REDIS_CLUSTER
DOUYIN_TEST_REDIS_CLUSTER="$(printf 'redis://127.0.0.1:%s,' "${ports[@]:0:3}")"
DOUYIN_TEST_REDIS_CLUSTER="${DOUYIN_TEST_REDIS_CLUSTER%,}"
export DOUYIN_TEST_REDIS_CLUSTER_DIR="$dir"
if [ "$keep" = "--keep" ]; then
  echo "export DOUYIN_TEST_REDIS_CLUSTER=$DOUYIN_TEST_REDIS_CLUSTER DOUYIN_TEST_REDIS_CLUSTER_DIR=$dir"
  exit 0
fi

commands() {
  for port in "${ports[@]}"; do
    role="$(redis-cli -p "$port" role 2>/dev/null | head -1 || echo down)"
    calls="$(redis-cli -p "$port" info commandstats 2>/dev/null \
      | sed -n 's/^cmdstat_\([a-z|]*\):calls=\([0-9]*\).*/\2/p' | paste -sd+ - | bc 2>/dev/null || echo 0)"
    echo "redis-cluster: node $port ($role): ${calls:-0} commands"
  done
}

# Not here: the tests that need one Redis (DOUYIN_TEST_REDIS_URL).
DOUYIN_TEST_DATABASE_URL="${DOUYIN_TEST_DATABASE_URL:-mysql://root@127.0.0.1:3306}" \
  cargo nextest run --workspace --run-ignored all --no-fail-fast \
    -E 'binary(it) & (test(/^rcluster::/) | test(/^(interaction|relation)::/)) & !test(/killed_restarted/)
        & !test(/redis_cache_passes|a_message_a_killed_chat|a_catch_up_longer/)'
commands
DOUYIN_TEST_DATABASE_URL="${DOUYIN_TEST_DATABASE_URL:-mysql://root@127.0.0.1:3306}" \
  cargo nextest run --workspace --run-ignored all --no-fail-fast --no-capture \
    -E 'binary(it) & test(/^rcluster::/) & test(/killed_restarted/)' 2>&1 | grep -v '^{"timestamp'
commands
