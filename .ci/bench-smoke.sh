#!/usr/bin/env bash
# A few seconds of the benchmark harness so it never rots: tiny SQLite data,
# every workload against `douyin serve all` and the feed against the baseline.
# Fails when any request fails or the counts disagree with the rows.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/douyin-target}"
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
DOUYIN_BIN="${DOUYIN_BIN:-$CARGO_TARGET_DIR/debug/douyin}"
cargo build --workspace --bins --tests
workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
timeout 60 "$CARGO_TARGET_DIR/debug/douyin-bench" suite --smoke --douyin-bin "$DOUYIN_BIN" --workdir "$workdir"

# The chart's load generator (`douyin-bench traffic`) against a fresh `serve all`
# with nothing seeded: it registers its accounts, finds videos in the feed and
# does every action of its mix without a failure.
data="$workdir/traffic"
mkdir -p "$data"
read -r port admin_port <<<"$(python3 .ci/free_port.py 2 | xargs)"
DOUYIN_DATA_DIR="$data" DOUYIN_HTTP_ADDR="127.0.0.1:$port" DOUYIN_ADMIN_ADDR="127.0.0.1:$admin_port" \
  DOUYIN_LOG_FORMAT=json "$DOUYIN_BIN" serve all >"$data/serve.log" 2>&1 &
serve=$!
trap 'kill "$serve" 2>/dev/null; rm -rf "$workdir"' EXIT
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
timeout 60 "$CARGO_TARGET_DIR/debug/douyin-bench" traffic --url "http://127.0.0.1:$port" \
  --rate 60 --accounts 4 --duration 8 --report-secs 4 >"$data/figures.jsonl"
python3 - "$data/figures.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
last = lines[-1]
ok = {a: t["ok"] for a, t in last["by_action"].items()}
print(f"traffic: {last['actions']} actions in {last['seconds']} s on {last['accounts']} registered accounts, "
      f"{last['failed']} failed, {last['videos_seen']} videos seen; ok per action {ok}")
missing = [a for a in ("feed-anon", "feed-token", "like", "follow", "comment", "chat") if not ok.get(a)]
if last["failed"] or missing or len(lines) < 2 or last["actions"] < 200:
    sys.exit(f"traffic: failures {last['first_errors']}, actions never done {missing}, {len(lines)} figure lines")
PY
