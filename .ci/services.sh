#!/usr/bin/env bash
# Makes sure MariaDB (127.0.0.1:3306, root, empty password) and Redis
# (127.0.0.1:6379) answer: starts them when they are installed but down,
# installs them when they are missing. Sourced by .ci/run and the suites.
set -euo pipefail

svc_log() { printf '[services] %s\n' "$*"; }

wait_for() { # name, command
  local name=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  svc_log "$name did not come up"; return 1
}

mariadb_answers() { mariadb -h127.0.0.1 -uroot -e 'SELECT 1' >/dev/null 2>&1; }
redis_answers() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

ensure_mariadb() {
  if mariadb_answers; then return 0; fi
  if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
    svc_log "installing mariadb-server"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q mariadb-server >/dev/null
  fi
  svc_log "starting MariaDB"
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  wait_for MariaDB mariadb -uroot -e 'SELECT 1'
  if ! mariadb_answers; then
    mariadb -uroot -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket; FLUSH PRIVILEGES;"
  fi
  wait_for MariaDB mariadb_answers
}

ensure_redis() {
  if redis_answers; then return 0; fi
  if ! command -v redis-server >/dev/null 2>&1; then
    svc_log "installing redis-server"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null
  fi
  svc_log "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis redis_answers
}

ensure_mariadb
ensure_redis
# Schemas left behind by interrupted test runs: those whose tables are all older
# than two hours, so a test run going on beside this one keeps its schemas.
mariadb -h127.0.0.1 -uroot -N -e "SELECT s.schema_name FROM information_schema.schemata s
    JOIN information_schema.tables t ON t.table_schema = s.schema_name
    WHERE s.schema_name LIKE 'douyin\_test\_%' GROUP BY s.schema_name
    HAVING MAX(t.create_time) < NOW() - INTERVAL 2 HOUR" 2>/dev/null \
  | while read -r schema; do mariadb -h127.0.0.1 -uroot -e "DROP DATABASE \`$schema\`" || true; done
svc_log "MariaDB and Redis answer"
