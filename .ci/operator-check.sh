#!/usr/bin/env bash
# Offline checks of the operator's manifests; no cluster needed.
#
#   bash .ci/operator-check.sh
#
# 1. k8s/operator/crd.yaml is what `crdgen` prints for the current types.
# 2. k8s/operator/*.yaml and k8s/examples/*.yaml pass kubernetes-validate --strict
#    for Kubernetes 1.34.
# 3. Every DouyinEnvironment in k8s/examples/ validates against the CRD's
#    openAPIV3Schema, with unknown fields refused (as `kubectl apply` does with
#    server-side field validation).
# 4. The CRD's CEL rules (x-kubernetes-validations), evaluated by a real CEL
#    implementation (kube-cel): the examples and operator/testdata/valid-*.yaml are
#    admitted, operator/testdata/invalid-*.yaml refused with their message, and
#    validate.rs agrees on each (`cargo test --test cel`).
# 5. `douyin-operator render` of each example: a YAML stream that passes
#    kubernetes-validate --strict, whose pods carry the labels the chart's
#    NetworkPolicy selects (part-of, instance, name, component, managed-by).
# 6. RBAC: the API calls the operator makes in its mocked-API tests (verb, group,
#    resource, namespaced or cluster-wide) against k8s/operator/rbac.yaml and the
#    chart's ClusterRole and Role: every call allowed, every rule used.
# 7. helm/douyin-operator: crds/ is k8s/operator/crd.yaml, helm lint --strict, and
#    helm template (cluster mode, namespace mode, registry/digest) passes
#    kubernetes-validate --strict with the expected RBAC kinds and image; bad
#    values are refused by values.schema.json.
#
# Builds with $CARGO_TARGET_DIR when set. helm and the Python tools come from
# .ci/tools.sh (installed into ${DOUYIN_TOOLS_DIR:-~/.cache/douyin-tools} if missing).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

passed=0
failed=0
failures=()
check() {
  local name="$1"
  shift
  echo "--- $name"
  if "$@" >"$WORK/check.log" 2>&1; then
    passed=$((passed + 1))
    echo "ok   $name"
  else
    failed=$((failed + 1))
    failures+=("$name")
    sed 's/^/     /' "$WORK/check.log" | tail -n 60
    echo "FAIL $name"
  fi
}

# ---- tools ---------------------------------------------------------------------------
source .ci/tools.sh
install_tools

# ---- 1. the committed CRD is current ---------------------------------------------------
# Every cargo step names --workspace (and tests), so cargo resolves the features
# `cargo test --workspace` did and compiles nothing already built.
cargo build --quiet --workspace --bins --tests
BIN_DIR="${CARGO_TARGET_DIR:-target}/debug"
crd_is_current() {
  "$BIN_DIR/crdgen" >"$WORK/crd.yaml"
  if ! diff -u k8s/operator/crd.yaml "$WORK/crd.yaml"; then
    echo "k8s/operator/crd.yaml is stale; regenerate it with:"
    echo "  cargo run -p douyin-operator --bin crdgen > k8s/operator/crd.yaml"
    return 1
  fi
}
check "k8s/operator/crd.yaml matches crdgen" crd_is_current

# ---- 2. manifests against the Kubernetes schemas ---------------------------------------
mapfile -t MANIFESTS < <(find k8s/operator k8s/examples -maxdepth 1 -type f -name '*.yaml' | sort)
validate_manifests() {
  "$VENV/bin/kubernetes-validate" -k "$KUBE_VERSION" --strict "${MANIFESTS[@]}"
}
check "kubernetes-validate -k $KUBE_VERSION --strict (${#MANIFESTS[@]} files)" validate_manifests

# ---- 3. example resources against the CRD's own schema ----------------------------------
examples_match_crd() {
  "$PY" - "$WORK" k8s/operator/crd.yaml k8s/examples <<'EOF'
import json, pathlib, sys, yaml

work, crd_path, examples = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
crd = yaml.safe_load(crd_path.read_text())
group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]

def closed(schema):
    """Refuse unknown fields, as the API server's strict field validation does."""
    if isinstance(schema, dict):
        if schema.get("type") == "object" and "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
        for value in schema.values():
            closed(value)
    elif isinstance(schema, list):
        for value in schema:
            closed(value)
    return schema

schemas = {}
for version in crd["spec"]["versions"]:
    schema = version["schema"]["openAPIV3Schema"]
    # Implicit in every custom resource, so CRDs leave them out of the schema.
    schema.setdefault("properties", {}).update(
        apiVersion={"type": "string"}, kind={"type": "string"}, metadata={"type": "object"})
    schema = closed(schema)
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    path = work / f"schema-{version['name']}.json"
    path.write_text(json.dumps(schema))
    schemas[f"{group}/{version['name']}"] = path

count = 0
for path in sorted(examples.glob("*.yaml")):
    for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
        if not isinstance(doc, dict) or doc.get("kind") != kind:
            continue
        schema = schemas.get(doc.get("apiVersion"))
        if schema is None:
            sys.exit(f"{path}: apiVersion {doc.get('apiVersion')} is not served by the CRD")
        instance = work / f"{path.stem}-{i}.json"
        instance.write_text(json.dumps(doc))
        print(f"{path}#{i} -> {schema.name}")
        with open(work / "pairs", "a") as pairs:
            pairs.write(f"{schema}\t{instance}\n")
        count += 1
if count == 0:
    sys.exit(f"no {kind} in {examples}")
EOF
  local schema instance
  while IFS=$'\t' read -r schema instance; do
    "$VENV/bin/check-jsonschema" --schemafile "$schema" "$instance"
  done <"$WORK/pairs"
}
check "k8s/examples DouyinEnvironments validate against the CRD schema" examples_match_crd

# ---- 4. CEL rules against example specs -------------------------------------------------
cel_rules() {
  cargo test --quiet --workspace --test cel
}
check "CRD CEL rules admit the valid and refuse the invalid environments (kube-cel)" cel_rules

# ---- 5. render ----------------------------------------------------------------------------
render_examples() {
  local bin="$BIN_DIR/douyin-operator" example out
  for example in k8s/examples/dev-environment.yaml k8s/examples/staging-external.yaml; do
    out="$WORK/render-$(basename "$example")"
    "$bin" render -f "$example" >"$out"
    "$VENV/bin/kubernetes-validate" -k "$KUBE_VERSION" --strict "$out"
  done
  "$PY" - "$WORK"/render-*.yaml <<'EOF'
import sys, yaml
ports = {"mysql": 3306, "redis": 6379, "minio": 9000}
components = {"mysql": "database", "redis": "cache", "minio": "object-storage"}
for path in sys.argv[1:]:
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    assert docs, f"{path}: empty render"
    pods = 0
    for d in docs:
        if d["kind"] not in ("StatefulSet", "Job"):
            continue
        pods += 1
        env = d["metadata"]["ownerReferences"][0]["name"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        name = labels.get("app.kubernetes.io/name")
        assert name in ports, f"{d['metadata']['name']}: app.kubernetes.io/name {name!r}"
        expected = {
            "app.kubernetes.io/part-of": "douyin",
            "app.kubernetes.io/managed-by": "douyin-operator",
            "app.kubernetes.io/instance": env,
            "app.kubernetes.io/component": "bucket-setup" if d["kind"] == "Job" else components[name],
        }
        missing = {k: v for k, v in expected.items() if labels.get(k) != v}
        assert not missing, f"{path}: {d['kind']}/{d['metadata']['name']} pods lack {missing}: {labels}"
        if d["kind"] == "StatefulSet":
            served = {p["containerPort"] for c in d["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
            assert ports[name] in served, f"{d['metadata']['name']} does not serve {ports[name]}"
    assert pods, f"{path}: no pods rendered"
    print(f"{path}: {len(docs)} objects, {pods} pod templates labelled")
EOF
}
check "douyin-operator render: valid objects, pods labelled as the chart selects them" render_examples

# ---- 6. RBAC against the calls made in the mocked-API tests -------------------------------
HELM="${HELM:-$TOOLS/bin/helm}"
export HELM_CACHE_HOME="$WORK/helm/cache" HELM_CONFIG_HOME="$WORK/helm/config" HELM_DATA_HOME="$WORK/helm/data"
rbac_matches_calls() {
  rm -f "$WORK/calls.jsonl"
  DOUYIN_RBAC_AUDIT="$WORK/calls.jsonl" cargo nextest run --workspace --no-fail-fast --status-level fail \
    -E 'package(douyin-operator) & kind(lib)' 
  "$HELM" template op helm/douyin-operator --namespace douyin-operator >"$WORK/rbac-cluster.yaml"
  "$HELM" template op helm/douyin-operator --namespace douyin-operator --set 'watchNamespaces={douyin,staging}' \
    >"$WORK/rbac-namespaced.yaml"
  "$PY" - "$WORK/calls.jsonl" k8s/operator/rbac.yaml "$WORK/rbac-cluster.yaml" "$WORK/rbac-namespaced.yaml" <<'EOF'
import json, sys, yaml
calls = {tuple(json.loads(l)[k] for k in ("verb", "group", "resource", "namespaced")) for l in open(sys.argv[1])}
assert calls, "the tests recorded no API call"
# Granted for a check of the API server, not for a call: blockOwnerDeletion on owner
# references needs update on the owner's finalizers (OwnerReferencesPermissionEnforcement).
NOT_CALLS = {("update", "douyin.rs", "douyinenvironments/finalizers")}
def rules(path, kind, count=1):
    docs = [d for d in yaml.safe_load_all(open(path)) if d and d["kind"] == kind]
    assert len(docs) == count, f"{path}: expected {count} {kind}, found {len(docs)}"
    grants = [{(v, g, r) for rule in d["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
              for d in docs]
    assert all("resourceNames" not in r for d in docs for r in d["rules"]), "resourceNames are not modelled here"
    assert all(g == grants[0] for g in grants), f"{path}: the {kind}s differ"
    return grants[0]
def compare(name, granted, used):
    assert not any("*" in part for grant in granted for part in grant), f"{name}: wildcard rule"
    denied = sorted(used - granted)
    unused = sorted(granted - used - NOT_CALLS)
    print(f"{name}: {len(used)} distinct calls, {len(granted)} grants")
    assert not denied, f"{name}: calls not allowed: {denied}"
    assert not unused, f"{name}: rules no call uses: {unused}"
every = {(v, g, r) for v, g, r, _ in calls}
namespaced = {(v, g, r) for v, g, r, ns in calls if ns}
compare("k8s/operator/rbac.yaml ClusterRole", rules(sys.argv[2], "ClusterRole"), every)
compare("chart ClusterRole (every namespace)", rules(sys.argv[3], "ClusterRole"), every)
compare("chart Role in each of watchNamespaces", rules(sys.argv[4], "Role", count=2), namespaced)
cluster_wide = [d["kind"] for d in yaml.safe_load_all(open(sys.argv[4])) if d and d["kind"].startswith("Cluster")]
assert not cluster_wide, f"namespace mode grants cluster-wide: {cluster_wide}"
EOF
}
check "RBAC rules = API calls of the mocked-API tests (k8s/operator and the chart)" rbac_matches_calls

# ---- 7. the operator chart ----------------------------------------------------------------
chart_crd_is_the_crd() {
  if ! diff -u k8s/operator/crd.yaml helm/douyin-operator/crds/douyinenvironments.douyin.rs.yaml; then
    echo "helm/douyin-operator/crds/ differs from k8s/operator/crd.yaml; copy it:"
    echo "  cp k8s/operator/crd.yaml helm/douyin-operator/crds/douyinenvironments.douyin.rs.yaml"
    return 1
  fi
}
check "helm/douyin-operator/crds/ is k8s/operator/crd.yaml" chart_crd_is_the_crd

chart_lints_and_validates() {
  "$HELM" lint --strict helm/douyin-operator --namespace douyin-operator
  "$HELM" lint --strict helm/douyin-operator --namespace douyin-operator --set 'watchNamespaces={douyin}'
  local name args
  for name in default namespaced registry; do
    case "$name" in
      default) args=() ;;
      namespaced) args=(--set 'watchNamespaces={douyin,staging}'
        --set otlpEndpoint=http://otel-collector.observability.svc:4317) ;;
      registry) args=(--set global.imageRegistry=registry.example:5000 --set image.registry=ignored.example
        --set image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef) ;;
    esac
    "$HELM" template op helm/douyin-operator --namespace douyin-operator --include-crds "${args[@]}" \
      >"$WORK/chart-$name.yaml"
    "$VENV/bin/kubernetes-validate" -k "$KUBE_VERSION" --strict "$WORK/chart-$name.yaml"
  done
  "$PY" - "$WORK" <<'EOF'
import sys, yaml, pathlib
work = pathlib.Path(sys.argv[1])
def docs(name):
    return [d for d in yaml.safe_load_all((work / f"chart-{name}.yaml").read_text()) if d]
def container(name):
    deploy = [d for d in docs(name) if d["kind"] == "Deployment"][0]
    return deploy["spec"]["template"]["spec"]["containers"][0]
c = container("default")
assert c["image"] == "douyin-operator:0.1.0", c["image"]
kinds = sorted(d["kind"] for d in docs("default"))
assert kinds == ["ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Deployment", "Service",
                 "ServiceAccount"], kinds
env = {e["name"]: e for e in c["env"]}
assert "DOUYIN_OPERATOR_NAMESPACE" not in env and "POD_NAME" in env, env
env = {e["name"]: e.get("value") for e in container("namespaced")["env"]}
assert env["DOUYIN_OPERATOR_NAMESPACE"] == "douyin,staging", env
roles = sorted((d["kind"], d["metadata"]["namespace"]) for d in docs("namespaced") if d["kind"] in ("Role", "RoleBinding"))
assert roles == [("Role", "douyin"), ("Role", "staging"), ("RoleBinding", "douyin"), ("RoleBinding", "staging")], roles
assert not [d for d in docs("namespaced") if d["kind"].startswith("Cluster") and d["kind"] != "CustomResourceDefinition"]
for binding in (d for d in docs("namespaced") if d["kind"] == "RoleBinding"):
    assert binding["subjects"][0]["namespace"] == "douyin-operator", binding
image = container("registry")["image"]
assert image == "registry.example:5000/douyin-operator@sha256:" + "0123456789abcdef" * 4, image
print("chart: kinds, namespace mode and image references ok")
EOF
  # Bad values are refused by values.schema.json.
  local bad
  for bad in 'watchNamespaces={Not_A_Namespace}' 'watchNamespaces={a,a}' image.digest=latest logFormat=xml \
    otlpEndpoint=collector:4317; do
    if "$HELM" template op helm/douyin-operator --set "$bad" >"$WORK/bad.out" 2>&1; then
      echo "helm template accepted --set $bad"
      return 1
    fi
  done
}
check "helm/douyin-operator lints, renders valid objects in both RBAC modes, refuses bad values" chart_lints_and_validates

echo
echo "operator-check: $passed passed, $failed failed"
if ((failed)); then
  printf 'failed: %s\n' "${failures[@]}"
  exit 1
fi
