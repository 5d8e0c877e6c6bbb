#!/usr/bin/env bash
# The mesh suite: every role as its own process of the douyin binary, against
# MariaDB, Redis and a real S3-API server (the ignored tests of the `mesh`
# module of services/douyin/tests/it). Prints which roles ran where.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/douyin-target}"
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
source .ci/services.sh
if [ -f .ci/s3.sh ]; then
  eval "$(bash .ci/s3.sh)"
  export DOUYIN_TEST_S3_ENDPOINT DOUYIN_TEST_S3_ACCESS_KEY DOUYIN_TEST_S3_SECRET_KEY
fi
export DOUYIN_TEST_DATABASE_URL=mysql://root@127.0.0.1:3306
export DOUYIN_TEST_REDIS_URL=redis://127.0.0.1:6379
cargo test --workspace --test it -- --ignored --nocapture --test-threads=1 mesh::
