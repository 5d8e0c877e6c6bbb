#!/usr/bin/env bash
# Hardening suite: schemathesis against /openapi.json of a running
# `douyin serve all`, then the abuse, fault and rate-limit tests (the
# `hardening` and `limits` modules of services/douyin/tests/it, ignored ones
# included, one process each) against MariaDB and Redis. Ends with one line of figures, e.g.
#   hardening: 1412 fuzz cases, 0 5xx, 37/37 forged tokens refused, 20/20 internal calls
#   without a valid service credential refused, 6/6 tokens refused after their account
#   changed or was deleted, 13/13 invisible or look-alike names refused, …, 0 leaks, …
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/douyin-target}"
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
source .ci/services.sh

tools="${DOUYIN_TOOLS_DIR:-$HOME/.cache/douyin-tools}"
if [ ! -x "$tools/venv/bin/st" ]; then
  echo "installing schemathesis into $tools/venv" >&2
  mkdir -p "$tools"
  [ -x "$tools/venv/bin/pip" ] || python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install -q schemathesis
fi
bin="${DOUYIN_BIN:-$CARGO_TARGET_DIR/debug/douyin}"
[ -x "$bin" ] || cargo build --workspace --bins --tests
[ -x "$bin" ] || { echo "no douyin binary at $bin" >&2; exit 1; }

work="$(mktemp -d)"
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  [ -n "${HARDENING_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

# --- 1. schemathesis on a running `serve all` (SQLite, fresh data dir, limits off)
read -r http_port grpc_port admin_port <<<"$(python3 .ci/free_port.py 3 | xargs)"
base="http://127.0.0.1:$http_port"
env DOUYIN_HTTP_ADDR="127.0.0.1:$http_port" DOUYIN_GRPC_ADDR="127.0.0.1:$grpc_port" \
    DOUYIN_ADMIN_ADDR="127.0.0.1:$admin_port" DOUYIN_DATA_DIR="$work/data" DOUYIN_DEMO_CONTENT=true \
    DOUYIN_RATE_LIMIT_IP_PER_SEC=0 DOUYIN_RATE_LIMIT_USER_PER_SEC=0 \
    DOUYIN_RATE_LIMIT_REGISTER_PER_MIN=0 DOUYIN_RATE_LIMIT_PUBLISH_PER_MIN=0 \
    DOUYIN_RATE_LIMIT_LOGIN_FAILURES_PER_ACCOUNT=0 DOUYIN_RATE_LIMIT_LOGIN_FAILURES_PER_IP=0 \
    DOUYIN_RATE_LIMIT_CONNECTIONS_PER_SEC=0 DOUYIN_HTTP_MAX_CONNECTIONS_PER_ADDRESS=0 \
    "$bin" serve all >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 120); do
  curl -fsS "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.5
done
curl -fsS "http://127.0.0.1:$admin_port/readyz" >/dev/null || { echo "server not ready" >&2; tail -50 "$work/server.log" >&2; exit 1; }

# A real user, so operations sent without a token field act as someone.
token="$(curl -fsS -X POST "$base/douyin/user/register/?username=fuzzer&password=fuzzer123" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"

set +e
timeout "${HARDENING_FUZZ_TIMEOUT:-600}" "$tools/venv/bin/st" run "$base/openapi.json" \
  --checks not_a_server_error,response_schema_conformance \
  --max-examples "${HARDENING_MAX_EXAMPLES:-25}" --workers 2 --request-timeout 30 \
  --header "Authorization: Bearer $token" --seed 1 --no-color \
  --report ndjson --report-ndjson-path "$work/events.ndjson" >"$work/st.log" 2>&1
st_status=$?
set -e
tail -25 "$work/st.log"
read -r fuzz_cases fuzz_5xx schema_bad < <(python3 - "$work/events.ndjson" <<'EOF'
import json, sys
cases = server_errors = schema = 0
seen = set()
def walk(node):
    global cases, server_errors, schema
    if isinstance(node, dict):
        interactions = node.get("interactions")
        if isinstance(interactions, dict):
            for key, interaction in interactions.items():
                response = (interaction or {}).get("response") or {}
                rid = (key, response.get("elapsed"), json.dumps(interaction.get("request"), sort_keys=True)[:200])
                if rid in seen:
                    continue
                seen.add(rid)
                cases += 1
                if int(response.get("status_code", 0)) >= 500:
                    server_errors += 1
        checks = node.get("checks")
        if isinstance(checks, dict):
            for group in checks.values():
                for check in group if isinstance(group, list) else []:
                    if check.get("name") == "response_schema_conformance" and check.get("status") in ("failure", "FAILURE"):
                        schema += 1
        for value in node.values():
            walk(value)
    elif isinstance(node, list):
        for value in node:
            walk(value)
with open(sys.argv[1]) as f:
    for line in f:
        line = line.strip()
        if line:
            walk(json.loads(line))
print(cases, server_errors, schema)
EOF
)
# schemathesis' own count of generated cases, when it printed one.
logged="$(grep -oE '[0-9]+ generated' "$work/st.log" | head -1 | awk '{print $1}')"
fuzz_cases="${logged:-$fuzz_cases}"
kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; server=""
if [ "$st_status" -ne 0 ] || [ "$fuzz_5xx" -ne 0 ] || [ "$schema_bad" -ne 0 ]; then
  echo "schemathesis: exit $st_status, $fuzz_5xx responses 5xx, $schema_bad schema violations (log: above)" >&2
  exit 1
fi

# --- 2. the abuse, fault and rate-limit tests against MariaDB and Redis
export DOUYIN_TEST_DATABASE_URL="${DOUYIN_TEST_DATABASE_URL:-mysql://root@127.0.0.1:3306}"
export DOUYIN_TEST_REDIS_URL="${DOUYIN_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
cargo nextest run --workspace --run-ignored all --no-capture -E 'binary(it) & test(/^(hardening|limits)::/)' 2>&1 | tee "$work/tests.log"
figure() { grep -o "hardening-figure: $1 .*" "$work/tests.log" | awk '{print $3}'; }
forged="$(figure forged | head -1)"
leaks="$(figure leaks | awk '{s+=$1} END {print s+0}')"
faults="$(grep -c 'hardening-figure: fault ' "$work/tests.log" || true)"
scenario="$(figure scenario-refused | head -1)"
flood="$(figure flood-limited | head -1)"
grpc_refused="$(figure grpc-refused | head -1)"
ratio() { figure "$1" | awk -F/ '{a+=$1; b+=$2} END {if (b) print a "/" b}'; }
account_refused="$(ratio account-refused)"
names_refused="$(ratio names-refused)"
filter_refused="$(ratio filter-refused)"
upload_refused="$(ratio upload-refused)"
upload_caps="$(ratio upload-cap-refused)"
connections_refused="$(ratio connections-refused)"
echo "hardening: $fuzz_cases fuzz cases, $fuzz_5xx 5xx, ${forged:-0/0} forged tokens refused, ${grpc_refused:-0/0} internal calls without a valid service credential refused, ${account_refused:-0/0} tokens refused after their account changed or was deleted, ${names_refused:-0/0} invisible or look-alike names refused, ${filter_refused:-0/0} disguised words refused, ${upload_refused:-0/0} uploads refused before their uploader was known, ${upload_caps:-0/0} uploads over a cap refused, ${connections_refused:-0/0} idle, dripping or excess connections closed, $leaks leaks, $faults faults survived, app scenario at the default limits ${scenario:-?} refused, flood ${flood:-?} limited"
