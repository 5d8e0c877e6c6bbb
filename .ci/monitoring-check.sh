#!/usr/bin/env bash
# Offline checks of the chart's monitoring: the PrometheusRule rendered with
# helm/douyin/ci/monitoring-values.yaml passes `promtool check rules` and the rule
# tests in tests/prometheus/; every alert has summary, description and a runbook_url
# whose section exists in docs/runbooks.md; the dashboards are valid Grafana JSON
# (uid, title, a datasource variable every panel uses) and every expression of a
# panel or rule is valid PromQL naming only metrics the processes export
# (services/kit/src/metrics/), recorded by the rules, or from Prometheus and
# kube-state-metrics.
#
#   bash .ci/monitoring-check.sh
#   bash .ci/monitoring-check.sh --scrape   # also: a real Prometheus scrapes a running
#                                           # process under load ($DOUYIN_BIN)
#
# Needs helm and the Python venv .ci/k8s-check.sh installs; installs Debian's
# prometheus package (promtool) when promtool is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TOOLS="${DOUYIN_TOOLS_DIR:-$HOME/.cache/douyin-tools}"
export PATH="$TOOLS/bin:$TOOLS/venv/bin:$PATH"
PY="$TOOLS/venv/bin/python"
if ! command -v helm >/dev/null || [[ ! -x "$PY" ]]; then
  echo "helm or $PY missing: run bash .ci/k8s-check.sh first" >&2
  exit 1
fi
if ! command -v promtool >/dev/null; then
  echo "installing Debian's prometheus package (promtool)"
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
if [[ "${1:-}" == --scrape ]]; then
  [[ -x "${DOUYIN_BIN:-}" ]] || { echo "--scrape needs DOUYIN_BIN (cargo build -p douyin)" >&2; exit 1; }
  "$PY" .ci/monitoring_scrape.py "$WORK" "$DOUYIN_BIN"
fi
echo "monitoring: $(cat "$WORK/figure.short"), $tests rule test groups passed ($(($(date +%s) - started))s)"
