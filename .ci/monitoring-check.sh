#!/usr/bin/env bash
# The chart's monitoring, offline and against a real Prometheus.
#
# Offline: the PrometheusRule rendered with helm/douyin/ci/monitoring-values.yaml
# passes `promtool check rules` and the rule tests in tests/prometheus/; every alert
# has summary, description and a runbook_url whose section exists in
# docs/runbooks.md; the dashboards are valid Grafana JSON (uid, title, a datasource
# variable every panel uses) and every expression of a panel or rule is valid PromQL
# naming only metrics the processes register (services/kit/src/metrics/), recorded
# by the rules, or from Prometheus and kube-state-metrics.
#
# Then (unless --offline): Debian's Prometheus scrapes a running mesh (seven
# processes of `douyin-bench mesh` on MariaDB, Redis and S3, scrape config derived
# from the rendered PodMonitor) under a short `douyin-bench load`, and every
# dashboard panel and rule expression returns data through its HTTP API; a panel
# naming a metric no process exports fails. Own ports, data dir and schema; stops
# what it started.
#
#   bash .ci/monitoring-check.sh             # both
#   bash .ci/monitoring-check.sh --offline   # the offline checks only
#
# Installs helm and the Python venv (.ci/tools.sh) and Debian's prometheus package
# (promtool, prometheus) when missing; builds the binaries (dev profile,
# $CARGO_TARGET_DIR) for the scrape.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source .ci/tools.sh
install_tools
mode=full
case "${1:-}" in
  --offline) mode=offline ;;
  "") ;;
  *) echo "usage: $0 [--offline]" >&2; exit 2 ;;
esac
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  echo "installing Debian's prometheus package (promtool, prometheus)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
started=$(date +%s)

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export HELM_CACHE_HOME="$WORK/helm/cache" HELM_CONFIG_HOME="$WORK/helm/config" HELM_DATA_HOME="$WORK/helm/data"

# Off by default: the default render has no monitoring objects.
helm template douyin helm/douyin --namespace douyin >"$WORK/default.yaml"
if grep -nE "monitoring.coreos.com|grafana_dashboard" "$WORK/default.yaml"; then
  echo "FAIL monitoring objects rendered with default values" >&2
  exit 1
fi
helm template douyin helm/douyin --namespace douyin -f helm/douyin/ci/monitoring-values.yaml >"$WORK/render.yaml"
# A latency threshold that is no bucket bound is refused.
if helm template douyin helm/douyin -f helm/douyin/ci/monitoring-values.yaml \
  --set-string monitoring.prometheusRule.slo.feedLatency.thresholdSeconds=0.3 >/dev/null 2>&1; then
  echo "FAIL a feed latency threshold between bucket bounds was accepted" >&2
  exit 1
fi

"$PY" .ci/monitoring_check.py "$WORK" services/kit/src/metrics docs/runbooks.md

promtool check rules "$WORK/rules.yaml" "$WORK/dashboard-exprs.yaml"
cp tests/prometheus/*.yaml "$WORK/"
tests=0
for t in tests/prometheus/*.yaml; do
  (cd "$WORK" && promtool test rules "$(basename "$t")")
  tests=$((tests + $("$PY" -c 'import sys, yaml; print(len(yaml.safe_load(open(sys.argv[1]))["tests"]))' "$t")))
done
cat "$WORK/figure"
alerts=$("$PY" -c 'import sys, yaml; print(sum(1 for g in yaml.safe_load(open(sys.argv[1]))["groups"] for r in g["rules"] if "alert" in r))' "$WORK/rules.yaml")
if [[ $mode == full ]]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/douyin-target}"
  export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
  source .ci/services.sh
  eval "$(bash .ci/s3.sh)"
  export DOUYIN_S3_ENDPOINT="$DOUYIN_TEST_S3_ENDPOINT" DOUYIN_S3_ACCESS_KEY="$DOUYIN_TEST_S3_ACCESS_KEY" \
    DOUYIN_S3_SECRET_KEY="$DOUYIN_TEST_S3_SECRET_KEY"
  export DOUYIN_TEST_DATABASE_URL=mysql://root@127.0.0.1:3306 DOUYIN_TEST_REDIS_URL=redis://127.0.0.1:6379
  # As .ci/run builds them (the test build's features), so nothing is built twice.
  cargo build -q --workspace --bins --tests
  "$PY" .ci/monitoring_scrape.py "$WORK" "$CARGO_TARGET_DIR/debug"
  echo "monitoring: $(cat "$WORK/figure.scrape"); $(cat "$WORK/figure.short"); $tests rule test groups, $alerts alerts tested ($(($(date +%s) - started))s)"
else
  echo "monitoring (offline): $(cat "$WORK/figure.short"), $tests rule test groups, $alerts alerts tested ($(($(date +%s) - started))s)"
fi
