#!/usr/bin/env bash
# Fault suite: every role its own process against MariaDB (a schema of this
# run) and a private redis-server on a free port, one worker per user running
# the app's reads and writes while the test injects faults one after another:
# the counter role hung (SIGSTOP) and killed, Redis hung and killed, the chat
# role killed, each for 6 s (longer than a call's deadline). Never touches the
# machine's shared Redis. Ends with one line:
#   faults: 5 injected, R requests, F failed, 0 committed-but-refused writes,
#   0 API counts disagreeing with rows 5 s after recovery, 0 messages stored but not pushed
# and fails unless all three figures are 0. Before it, the timeline of the
# faults and each refused-but-committed write and unpushed message, with
# when it was sent.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/douyin-target}"
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
source .ci/services.sh
command -v redis-server >/dev/null || { echo "faults: redis-server is not on PATH" >&2; exit 1; }

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
DOUYIN_TEST_DATABASE_URL="${DOUYIN_TEST_DATABASE_URL:-mysql://root@127.0.0.1:3306}" \
  cargo nextest run --workspace --run-ignored all --no-capture -E 'binary(it) & test(/^faults::/)' >"$log" 2>&1
status=$?
set -e
# The timeline of faults, and any write refused though it committed or
# message never pushed, with when it was sent.
grep -E '^faults: ' "$log" | grep -vE '^faults: [0-9]+ injected' >&2 || true
line="$(grep -E '^faults: [0-9]+ injected' "$log" | tail -1 || true)"
if [ "$status" -ne 0 ] || [ -z "$line" ]; then
  grep -v '^{"timestamp' "$log" | tail -40 >&2
  echo "faults: the suite failed (exit $status)" >&2
  exit 1
fi
echo "$line"
