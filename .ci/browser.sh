#!/usr/bin/env bash
# End-to-end browser test: starts `douyin serve all` on free loopback ports with a
# fresh data dir, then drives the web client in headless Chromium
# (tests/browser/e2e.mjs). Installs Chromium, ffmpeg and node_modules when missing.
#
# Env: DOUYIN_BIN (default $CARGO_TARGET_DIR/debug/douyin), CARGO_TARGET_DIR
# (default $HOME/.cache/douyin-target), ARTIFACTS_DIR (default a temp dir; screenshots
# and the server log go there), NPM_CACHE (default $HOME/.npm).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/douyin-target}"
DOUYIN_BIN="${DOUYIN_BIN:-$CARGO_TARGET_DIR/debug/douyin}"
ARTIFACTS_DIR="${ARTIFACTS_DIR:-$(mktemp -d -t douyin-browser-XXXXXX)}"
export ARTIFACTS_DIR
mkdir -p "$ARTIFACTS_DIR"

log() { printf '[browser] %s\n' "$*"; }

# ---- tools ---------------------------------------------------------------
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium chromium-driver)
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q "${missing[@]}" >/dev/null
fi

log "npm ci (tests/browser)"
(cd "$ROOT/tests/browser" && npm ci --prefer-offline --no-audit --no-fund --loglevel=error \
  --cache "${NPM_CACHE:-$HOME/.npm}" >/dev/null)

# ---- server --------------------------------------------------------------
if [ ! -x "$DOUYIN_BIN" ]; then
  log "no douyin binary at $DOUYIN_BIN (build it with: cargo build -p douyin)" >&2
  exit 1
fi

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
HTTP_PORT="$(free_port)"
GRPC_PORT="$(free_port)"
ADMIN_PORT="$(free_port)"
while [ "$GRPC_PORT" = "$HTTP_PORT" ]; do GRPC_PORT="$(free_port)"; done
while [ "$ADMIN_PORT" = "$HTTP_PORT" ] || [ "$ADMIN_PORT" = "$GRPC_PORT" ]; do ADMIN_PORT="$(free_port)"; done

DATA_DIR="$(mktemp -d -t douyin-data-XXXXXX)"
SERVER_LOG="$ARTIFACTS_DIR/server.log"
SERVER_PID=""

cleanup() {
  local rc=$?
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [ "$rc" -ne 0 ] && [ -f "$SERVER_LOG" ]; then
    log "last lines of $SERVER_LOG:"
    tail -n 40 "$SERVER_LOG" | sed 's/^/[server] /'
  fi
  rm -rf "$DATA_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "starting $DOUYIN_BIN serve all on 127.0.0.1:$HTTP_PORT"
DOUYIN_DATA_DIR="$DATA_DIR" \
DOUYIN_HTTP_ADDR="127.0.0.1:$HTTP_PORT" \
DOUYIN_GRPC_ADDR="127.0.0.1:$GRPC_PORT" \
DOUYIN_ADMIN_ADDR="127.0.0.1:$ADMIN_PORT" \
  "$DOUYIN_BIN" serve all >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!

BASE="http://127.0.0.1:$HTTP_PORT"
deadline=$((SECONDS + 60))
until curl -fs -o /dev/null --max-time 2 "$BASE/healthz"; do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    log "server exited before answering /healthz" >&2
    exit 1
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    log "server did not answer $BASE/healthz within 60 s" >&2
    exit 1
  fi
  sleep 0.2
done
log "server ready at $BASE"

# ---- test ----------------------------------------------------------------
cd "$ROOT/tests/browser"
DOUYIN_URL="$BASE" node e2e.mjs
