"""Checks the rendered monitoring objects (see monitoring-check.sh).

Usage: monitoring_check.py WORK METRICS_DIR RUNBOOKS_MD
Reads WORK/render.yaml, writes WORK/rules.yaml (the PrometheusRule spec) and
WORK/dashboard-exprs.yaml (every panel expression as a recording rule, so promtool
parses it), and WORK/figure*. Exits non-zero naming every problem.
"""
import json
import pathlib
import re
import sys

import yaml

from monitoring_promql import metric_names

work, metrics_rs, runbooks_md = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
errors = []
docs = [d for d in yaml.safe_load_all((work / "render.yaml").read_text()) if d]


def exported_metrics(src):
    """Series names one file of services/kit/src/metrics/ registers (prometheus-client naming)."""
    kinds = {}
    for var, decl in re.findall(r"let (\w+)\s*(?::[^=;]+)?=\s*([^;]+);", src):
        kinds[var] = "counter" if "Counter" in decl else "histogram" if "histogram" in decl.lower() else "gauge"
    names = set()
    for name, var in re.findall(r'registry\.register\(\s*"(\w+)",\s*"[^"]*",\s*(\w+)\.clone\(\)', src, re.S):
        names.add(name + "_total" if kinds.get(var) == "counter" else name)
    for name, unit, var in re.findall(r'register_with_unit\(\s*"(\w+)",\s*"[^"]*",\s*Unit::(\w+),\s*(\w+)\.clone\(\)', src, re.S):
        base = f"{name}_{unit.lower()}"
        if kinds.get(var) == "histogram":
            names.update(base + s for s in ("_bucket", "_sum", "_count"))
        else:
            names.add(base + ("_total" if kinds.get(var) == "counter" else ""))
    return names


exported = set()
for rs in sorted(metrics_rs.glob("*.rs")):
    exported |= exported_metrics(rs.read_text())
if not exported:
    errors.append(f"no metric names found in {metrics_rs}")
# From Prometheus itself and from kube-state-metrics (alerts only).
external = {"up", "kube_pod_status_ready", "kube_pod_status_phase"}

rules = [d for d in docs if d["kind"] == "PrometheusRule"]
if len(rules) != 1:
    errors.append(f"expected one PrometheusRule, got {len(rules)}")
spec = rules[0]["spec"] if rules else {"groups": []}
(work / "rules.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
recorded = {r["record"] for g in spec["groups"] for r in g["rules"] if "record" in r}
alerts = [r for g in spec["groups"] for r in g["rules"] if "alert" in r]
known = exported | recorded | external

anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
           for h in re.findall(r"^#+ (.+)$", runbooks_md.read_text(), re.M)} if runbooks_md.exists() else set()
for a in alerts:
    ann = a.get("annotations", {})
    for key in ("summary", "description", "runbook_url"):
        if not ann.get(key):
            errors.append(f"alert {a['alert']}: no {key}")
    anchor = ann.get("runbook_url", "").partition("#")[2]
    if anchor not in anchors:
        errors.append(f"alert {a['alert']}: runbook_url anchor #{anchor} is no heading of {runbooks_md}")
    if "severity" not in a.get("labels", {}):
        errors.append(f"alert {a['alert']}: no severity label")

for g in spec["groups"]:
    for r in g["rules"]:
        unknown = metric_names(r["expr"]) - known
        if unknown:
            errors.append(f"rule {r.get('record') or r.get('alert')}: unknown metrics {sorted(unknown)}")

# Dashboards: one ConfigMap per file, labelled for the sidecar.
maps = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
files = sorted(pathlib.Path("helm/douyin/dashboards").glob("*.json"))
if len(maps) != len(files) or not files:
    errors.append(f"{len(files)} dashboard files but {len(maps)} ConfigMaps labelled grafana_dashboard=1")
panels_checked = 0
exprs = []
uids = set()


def substitute(expr):
    """Grafana variables replaced by values PromQL accepts."""
    expr = expr.replace("$__rate_interval", "5m").replace("${__rate_interval}", "5m")
    return re.sub(r"\$\{?(\w+)\}?", r"x", expr)


for cm in maps:
    for key, text in cm["data"].items():
        where = f"{cm['metadata']['name']}/{key}"
        try:
            dash = json.loads(text)
        except json.JSONDecodeError as e:
            errors.append(f"{where}: not JSON: {e}")
            continue
        for field in ("uid", "title"):
            if not dash.get(field):
                errors.append(f"{where}: no {field}")
        if dash.get("uid") in uids:
            errors.append(f"{where}: uid {dash.get('uid')} used twice")
        uids.add(dash.get("uid"))
        variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
        if variables.get("datasource", {}).get("type") != "datasource" or variables["datasource"].get("query") != "prometheus":
            errors.append(f"{where}: no datasource variable of type datasource for prometheus")
        for v in variables.values():
            if v.get("type") == "query":
                q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
                m = re.match(r"label_values\((.+),\s*\w+\)$", q)
                if not m:
                    errors.append(f"{where}: variable {v['name']}: expected label_values(selector, label)")
                else:
                    exprs.append((f"{where} variable {v['name']}", substitute(m.group(1))))
        if not dash.get("panels"):
            errors.append(f"{where}: no panels")
        for p in dash.get("panels", []):
            pw = f"{where} panel {p.get('title')!r}"
            panels_checked += 1
            if not p.get("title") or "gridPos" not in p:
                errors.append(f"{pw}: no title or gridPos")
            if p.get("datasource", {}).get("uid") != "${datasource}":
                errors.append(f"{pw}: datasource is not ${{datasource}}")
            if not p.get("targets"):
                errors.append(f"{pw}: no targets")
            for t in p.get("targets", []):
                if t.get("datasource", {}).get("uid") != "${datasource}":
                    errors.append(f"{pw} target {t.get('refId')}: datasource is not ${{datasource}}")
                exprs.append((pw, substitute(t["expr"])))

for where, expr in exprs:
    unknown = metric_names(expr) - known
    if unknown:
        errors.append(f"{where}: names metrics no process exports and no rule records: {sorted(unknown)}")
# promtool parses every dashboard expression as a recording rule
(work / "dashboard-exprs.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": [
    {"record": f"dashboard:expr_{i}", "expr": e} for i, (_, e) in enumerate(exprs)]}]}))

if errors:
    print("\n".join(f"FAIL {e}" for e in errors), file=sys.stderr)
    sys.exit(1)
n_rules = sum(len(g["rules"]) for g in spec["groups"])
short = (f"{n_rules} rules ({len(recorded)} recording, {len(alerts)} alerts), "
         f"{len(maps)} dashboards, {panels_checked} panels / {len(exprs)} expressions checked")
(work / "figure.short").write_text(short)
(work / "figure").write_text(f"exported metrics: {', '.join(sorted(exported))}\n")
