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
