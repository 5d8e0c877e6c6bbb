#!/usr/bin/env bash
# Ensures an S3-API server answers on 127.0.0.1:${DOUYIN_S3_PORT:-9000} for tests:
# s3s-fs (checks request signatures), installed into ~/.cargo/bin when missing,
# or moto when s3s-fs cannot be installed. Leaves it running in the background
# and prints the environment the tests read, so a caller can do
#
#   eval "$(.ci/s3.sh)"
#   cargo test --workspace --test it -- --include-ignored video:: media:: s3::
#
# Logs go to stderr; only `export` lines go to stdout.
#
# Env: DOUYIN_S3_PORT (default 9000), DOUYIN_S3_DIR (object directory of s3s-fs,
# default $TMPDIR/douyin-s3-<port>), DOUYIN_S3_KEY / DOUYIN_S3_SECRET (credentials
# s3s-fs accepts; default douyin / douyin-secret-key).
set -euo pipefail

HOST=127.0.0.1
PORT="${DOUYIN_S3_PORT:-9000}"
KEY="${DOUYIN_S3_KEY:-douyin}"
SECRET="${DOUYIN_S3_SECRET:-douyin-secret-key}"
DIR="${DOUYIN_S3_DIR:-${TMPDIR:-/tmp}/douyin-s3-$PORT}"
LOG="$DIR.log"
S3S_VERSION=0.14.1
S3S_BIN="${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs"

log() { printf '[s3] %s\n' "$*" >&2; }

answers() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }

wait_for_port() {
  local deadline=$((SECONDS + 30))
  until answers; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "nothing answers on $HOST:$PORT after 30 s; last lines of $LOG:"
      tail -n 20 "$LOG" >&2 || true
      return 1
    fi
    sleep 0.2
  done
}

print_env() {
  cat <<EOF
export DOUYIN_TEST_S3_ENDPOINT=http://$HOST:$PORT
export DOUYIN_TEST_S3_ACCESS_KEY=$KEY
export DOUYIN_TEST_S3_SECRET_KEY=$SECRET
EOF
}

if answers; then
  log "an S3 server already answers on $HOST:$PORT"
  print_env
  exit 0
fi

mkdir -p "$DIR"

if [ ! -x "$S3S_BIN" ]; then
  log "installing s3s-fs $S3S_VERSION (build dir /tmp/s3s-build)"
  # Its own target dir, so the build never waits on the workspace's lock.
  if ! CARGO_TARGET_DIR=/tmp/s3s-build nice cargo install "s3s-fs@$S3S_VERSION" \
      --features binary --locked --quiet >&2; then
    log "could not install s3s-fs"
  fi
fi

# The server outlives the checkout that started it, so it runs in its own
# directory: one whose working directory was a deleted clone fails every request.
if [ -x "$S3S_BIN" ]; then
  log "starting s3s-fs on $HOST:$PORT over $DIR"
  (cd "$DIR" && exec setsid nohup "$S3S_BIN" --host "$HOST" --port "$PORT" \
    --access-key "$KEY" --secret-key "$SECRET" "$DIR" >"$LOG" 2>&1 </dev/null) &
else
  if ! command -v moto_server >/dev/null 2>&1; then
    log "installing moto[server]"
    pip install --quiet 'moto[server]' >&2
  fi
  log "starting moto on $HOST:$PORT"
  (cd "$DIR" && exec setsid nohup moto_server -H "$HOST" -p "$PORT" >"$LOG" 2>&1 </dev/null) &
fi
echo $! >"$DIR.pid"

wait_for_port
log "S3 server ready on $HOST:$PORT (pid $(cat "$DIR.pid"), log $LOG)"
print_env
