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
#
# Builds with $CARGO_TARGET_DIR when set. Python tools live in the venv shared with
# .ci/k8s-check.sh: ${DOUYIN_TOOLS_DIR:-~/.cache/douyin-tools}/venv (created if missing).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

KUBE_VERSION=1.34
TOOLS="${DOUYIN_TOOLS_DIR:-$HOME/.cache/douyin-tools}"
VENV="$TOOLS/venv"

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
ensure_venv() {
  if ! command -v python3 >/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null
  fi
  if [[ ! -x "$VENV/bin/python" ]]; then
    mkdir -p "$TOOLS"
    python3 -m venv "$VENV"
  fi
  # Same pins as .ci/k8s-check.sh, so both scripts agree on one venv.
  local missing=()
  "$VENV/bin/python" -c 'import yaml' 2>/dev/null || missing+=(PyYAML==6.0.3)
  [[ -x "$VENV/bin/kubernetes-validate" ]] || missing+=(kubernetes-validate==1.37.0)
  [[ -x "$VENV/bin/check-jsonschema" ]] || missing+=(check-jsonschema==0.39.0)
  if ((${#missing[@]})); then
    echo "installing ${missing[*]} into $VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "${missing[@]}"
  fi
}
ensure_venv
PY="$VENV/bin/python"

# ---- 1. the committed CRD is current ---------------------------------------------------
crd_is_current() {
  cargo run --quiet -p douyin-operator --bin crdgen >"$WORK/crd.yaml"
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

echo
echo "operator-check: $passed passed, $failed failed"
if ((failed)); then
  printf 'failed: %s\n' "${failures[@]}"
  exit 1
fi
