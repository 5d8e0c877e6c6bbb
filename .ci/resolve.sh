#!/usr/bin/env bash
# Peer balancing through the production resolver: runs the client factory's
# hosts-file scenario (services/kit/tests/balance.rs) in a private mount
# namespace whose /etc/hosts is a bind-mounted file the test rewrites, so the
# system resolver (getaddrinfo) gives the peer name 3, then 2, then 3 addresses.
# Needs root (unshare -m, mount --bind); the machine's /etc/hosts is untouched.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/douyin-target}"
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# Build outside the namespace, then run only the test binary inside it.
cargo test --workspace --test balance --no-run
hosts="$(mktemp)"
log="$(mktemp)"
trap 'rm -f "$hosts" "$log"' EXIT
printf '127.0.0.1 localhost\n' >"$hosts"
export DOUYIN_TEST_HOSTS_FILE="$hosts"
unshare -m bash -c '
  set -euo pipefail
  mount --bind "$DOUYIN_TEST_HOSTS_FILE" /etc/hosts
  grep -q "^hosts:.*files" /etc/nsswitch.conf || { echo "nsswitch.conf does not read files for hosts" >&2; exit 1; }
  cargo test --workspace --test balance -- --ignored --nocapture the_system_resolver_is_followed_through_a_hosts_file
' 2>&1 | tee "$log"
grep "resolve-figure:" "$log" >/dev/null || { echo "resolve: the hosts-file scenario did not run" >&2; exit 1; }
echo "resolve: the system resolver's answers are followed (hosts file in a private mount namespace)"
