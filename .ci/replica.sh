#!/usr/bin/env bash
# Read replica suite: starts its own MariaDB primary and replica (two
# mariadbd, each with its own data dir, socket and port under a temporary
# directory; binlog replication, the replica MASTER_DELAY seconds behind),
# runs the replica:: tests with DOUYIN_TEST_DATABASE_URL on the primary and
# DOUYIN_TEST_DATABASE_READ_URL on the replica, and prints the SELECT
# statements each server ran (Com_select). Stops what it started whatever
# happens; its cleanup never fails the run. Uses the machine's shared Redis
# when it answers, else the in-process cache.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/douyin-target}"
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
DELAY="${REPLICA_DELAY_SECS:-2}"

mariadbd_bin="$(command -v mariadbd || echo /usr/sbin/mariadbd)"
[ -x "$mariadbd_bin" ] || { echo "replica: mariadbd is not installed" >&2; exit 1; }

work="$(mktemp -d)"
pids=()
cleanup() {
  set +e
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  rm -rf "$work" 2>/dev/null || { sleep 1; rm -rf "$work" 2>/dev/null; }
  return 0
}
trap cleanup EXIT

ports="$(python3 .ci/free_port.py 2)"
primary_port="${ports%%$'\n'*}" replica_port="${ports##*$'\n'}"

# server name, server id, port
start_server() {
  local name=$1 id=$2 port=$3 dir="$work/$1"
  mkdir -p "$dir"
  mariadb-install-db --no-defaults --user="$(id -un)" --datadir="$dir/data" --auth-root-authentication-method=normal \
    --skip-test-db >"$dir/install.log" 2>&1 || { cat "$dir/install.log" >&2; return 1; }
  "$mariadbd_bin" --no-defaults --user="$(id -un)" --datadir="$dir/data" --socket="$dir/sock" \
    --pid-file="$dir/pid" --port="$port" --bind-address=127.0.0.1 --skip-name-resolve \
    --server-id="$id" --log-bin="$dir/data/binlog" --binlog-format=ROW --log-error="$dir/error.log" \
    --innodb-buffer-pool-size=64M --innodb-log-file-size=16M --max-connections=300 \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_bin >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    mariadb -h127.0.0.1 -P"$port" -uroot -e 'SELECT 1' >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "replica: the $name did not start" >&2; tail -20 "$dir/error.log" >&2; return 1
}

sql() { mariadb -h127.0.0.1 -P"$1" -uroot -N -e "$2"; }
slave_status() { mariadb -h127.0.0.1 -P"$replica_port" -uroot -e 'SHOW SLAVE STATUS\G'; }

start_server primary 1 "$primary_port"
start_server replica 2 "$replica_port"
sql "$primary_port" "CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY 'repl'; GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1';"
read -r binlog position < <(sql "$primary_port" "SHOW MASTER STATUS" | awk '{print $1, $2}')
sql "$replica_port" "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$primary_port, MASTER_USER='repl',
  MASTER_PASSWORD='repl', MASTER_LOG_FILE='$binlog', MASTER_LOG_POS=$position, MASTER_DELAY=$DELAY; START SLAVE;"
for _ in $(seq 1 50); do
  slave_status | grep -q 'Slave_IO_Running: Yes' && break
  sleep 0.2
done
slave_status | grep -E 'Slave_(IO|SQL)_Running:|SQL_Delay:' | sed 's/^ */replica: /' || true

redis=""
redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG && redis=redis://127.0.0.1:6379

selects() { sql "$1" "SHOW GLOBAL STATUS LIKE 'Com_select'" | awk '{print $2}'; }
before_primary=$(selects "$primary_port"); before_replica=$(selects "$replica_port")
log="$work/tests.log"
set +e
DOUYIN_TEST_DATABASE_URL="mysql://root@127.0.0.1:$primary_port" \
DOUYIN_TEST_DATABASE_READ_URL="mysql://root@127.0.0.1:$replica_port" \
DOUYIN_TEST_REDIS_URL="$redis" \
  cargo nextest run --workspace --run-ignored all --no-capture -E 'binary(it) & test(/^replica::/)' >"$log" 2>&1
status=$?
set -e
grep -E '^lag-tolerant reads' "$log" | sed 's/^/replica: /' || true
echo "replica: the whole run: $(( $(selects "$primary_port") - before_primary )) SELECTs on the primary," \
  "$(( $(selects "$replica_port") - before_replica )) on the replica (${DELAY} s behind)"
if [ "$status" -ne 0 ]; then
  grep -v "^{\"timestamp" "$log" | grep -v "^ *at \|^ *[0-9]*: " | tail -60 >&2
  echo "replica: the suite failed (exit $status)" >&2
  exit 1
fi
