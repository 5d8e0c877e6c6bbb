#!/usr/bin/env bash
# Zero-downtime operations in a cluster-shaped local test: every Deployment of
# `helm template` (2 replicas each, the gateway included) runs as processes of
# the douyin binary on their own loopback addresses, Service names resolve to the
# ready pods through a hosts file bind-mounted over /etc/hosts in a private mount
# namespace, and .ci/cluster_harness.py drives rolling updates, SIGKILLs and an
# outage under the bench's app mix. Backends: the machine's MariaDB (a database
# of this run), a private redis-server on a free port, S3 from .ci/s3.sh.
# Prints one `cluster-figure:` line. Needs root (unshare -m, mount --bind).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/douyin-target}"
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
source .ci/services.sh
eval "$(bash .ci/s3.sh)"

source .ci/tools.sh
install_tools

# Every binary at once, with the features `cargo test --workspace` resolves
# (building the tests unifies dev-dependency features too), so after the test
# build this only links what the tests did not.
cargo build --workspace --bins --tests
DOUYIN_BIN="${DOUYIN_BIN:-$CARGO_TARGET_DIR/debug/douyin}"
BENCH="$CARGO_TARGET_DIR/debug/douyin-bench"

WORK="$(mktemp -d /tmp/douyin-cluster.XXXXXX)"
DB="douyin_cluster_$$"
REDIS_PORT="$(python3 .ci/free_port.py)"
redis_pid=""
# Never fails the run: the harness's processes may still be writing their
# logs into $WORK for a moment after it returns, so the removal is tried again.
cleanup() {
  if [[ -n "$redis_pid" ]]; then kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null || true; fi
  mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS \`$DB\`" || true
  rm -rf "$WORK" 2>/dev/null || { sleep 1; rm -rf "$WORK"; } || true
}
trap cleanup EXIT
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --dir "$WORK" \
  --logfile "$WORK/redis.log" &
redis_pid=$!
for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
mariadb -h127.0.0.1 -uroot -e "CREATE DATABASE \`$DB\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
DATABASE_URL="mysql://root@127.0.0.1:3306/$DB"

# The example Secret the chart's default values name (dev-douyin-backends, as the
# operator's DouyinEnvironment "dev" writes it) and the JWT and service Secrets the hook Job makes.
USERS=200 VIDEOS=400
JWT="cluster-$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
SERVICE_SECRET="service-$(head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
python3 - "$WORK/secrets.json" <<PY
import json, sys
json.dump({
  "dev-douyin-backends": {
    "DOUYIN_DATABASE_URL": "$DATABASE_URL",
    "DOUYIN_REDIS_URL": "redis://127.0.0.1:$REDIS_PORT",
    "DOUYIN_S3_ENDPOINT": "$DOUYIN_TEST_S3_ENDPOINT",
    "DOUYIN_S3_BUCKET": "douyin-cluster-$$",
    "DOUYIN_S3_REGION": "us-east-1",
    "DOUYIN_S3_ACCESS_KEY": "$DOUYIN_TEST_S3_ACCESS_KEY",
    "DOUYIN_S3_SECRET_KEY": "$DOUYIN_TEST_S3_SECRET_KEY",
  },
  "douyin-jwt": {"DOUYIN_JWT_SECRET": "$JWT"},
  "douyin-service-auth": {"DOUYIN_SERVICE_SECRET": "$SERVICE_SECRET"},
}, open(sys.argv[1], "w"))
PY

# The chart's defaults (two replicas of every Deployment, probes, preStop, grace
# period, rolling strategy, PDBs); the load generator stands for the ingress
# controller, which connects from loopback here and names the client in
# X-Forwarded-For.
# The chart's own load generator runs too, as the pod it renders.
helm template douyin helm/douyin --namespace douyin \
  --set 'config.trustedProxies={127.0.0.0/8}' --set loadGenerator.enabled=true >"$WORK/rendered.yaml"

"$BENCH" seed --database-url "$DATABASE_URL" --data-dir "$WORK/seed" --douyin-bin "$DOUYIN_BIN" \
  --users "$USERS" --videos "$VIDEOS" --quiet >"$WORK/seed.log" 2>&1 || { cat "$WORK/seed.log"; exit 1; }

printf '127.0.0.1 localhost\n' >"$WORK/hosts"
export WORK DOUYIN_BIN BENCH DB USERS VIDEOS
set +e
unshare -m bash -c '
  set -euo pipefail
  mount --bind "$WORK/hosts" /etc/hosts
  # The hosts file is the cluster DNS: a name with no ready pod fails at once
  # (NXDOMAIN) instead of waiting for a nameserver this machine cannot reach.
  sed "s/^hosts:.*/hosts: files/" /etc/nsswitch.conf >"$WORK/nsswitch.conf"
  mount --bind "$WORK/nsswitch.conf" /etc/nsswitch.conf
  cd .ci
  exec python3 cluster_harness.py --rendered "$WORK/rendered.yaml" --hosts "$WORK/hosts" --bin "$DOUYIN_BIN" \
    --bench "$BENCH" --workdir "$WORK" --database "$DB" --secrets "$WORK/secrets.json" \
    --phase-file "$WORK/phase" --subnet $(( $$ % 200 + 20 )) --users "$USERS" --videos "$VIDEOS"
' 2>&1 | tee "$WORK/harness.log"
status=${PIPESTATUS[0]}
set -e
if [[ $status -ne 0 ]]; then
  keep="${TMPDIR:-/tmp}/douyin-cluster-logs"
  rm -rf "$keep" && mkdir -p "$keep" && cp "$WORK"/*.log "$WORK"/*.json "$keep"/ 2>/dev/null || true
  for log in "$WORK"/douyin-*.log; do echo "--- $log"; grep -iE "error|panic" "$log" | tail -n 3; done
  echo "cluster: pod logs and load figures kept in $keep" >&2
  exit "$status"
fi
grep -q "^cluster-figure:" "$WORK/harness.log" || { echo "cluster: no figure line" >&2; exit 1; }
