#!/usr/bin/env bash
# Build kube-apiserver, kubectl and etcd (envtest layout) and helm from the Go
# module proxy into a cache directory outside the repository.
#
# Why a wrapper module: k8s.io/kubernetes pins its staging modules at v0.0.0 with
# local `replace` lines, so `go install` refuses it. We generate one replace per
# staging module (read from the pinned upstream go.mod, never hard-coded) that
# points at the published v0.<minor>.<patch> tag. Each binary is skipped when
# it already exists, so a warm run costs nothing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
. "$here/versions.env"

CACHE="${TIDEGATE_CACHE:-$HOME/.cache/tidegate}"
ASSETS="${KUBEBUILDER_ASSETS:-$CACHE/envtest/k8s-$K8S_VERSION}"
BIN="$CACHE/bin"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
mkdir -p "$ASSETS" "$BIN"

# build_k8s BIN...: the named k8s.io/kubernetes/cmd/* binaries, through the wrapper module.
build_k8s() {
  minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  stg="v0.${K8S_VERSION#v1.}"
  w="$(mktemp -d)"; trap 'rm -rf "$w"' EXIT
  pkgs=(); for b in "$@"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  ( cd "$w"
    go mod init local/k8sbins >/dev/null 2>&1
    up="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
          | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
    go mod edit -go="$(awk '/^go /{print $2}' "$up")"
    grep -E '^godebug ' "$up" >> go.mod || true
    for m in $(sed -nE 's#^[[:space:]]*(k8s\.io/[A-Za-z0-9._-]+) => \./staging/src/.*#\1#p' "$up"); do
      go mod edit -replace="$m=$m@$stg"
    done
    go get "k8s.io/kubernetes@$K8S_VERSION"
    ldf="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
         -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
         -X k8s.io/component-base/version.gitTreeState=clean"
    go build -trimpath -ldflags "$ldf" -o "$ASSETS/" "${pkgs[@]}" )
  rm -rf "$w"; trap - EXIT
}

# The control plane for the operator tests, then the node for the cluster tier
# (kubelet, scheduler, controller-manager: real pods, see docs/cluster-tests.md).
for group in "kube-apiserver kubectl" "kubelet kube-scheduler kube-controller-manager"; do
  missing=(); for b in $group; do [ -x "$ASSETS/$b" ] || missing+=("$b"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "[k8s] building ${missing[*]} $K8S_VERSION into $ASSETS (cold: ~15-25 min on 2 cores, warm: ~2 min)"
    build_k8s "${missing[@]}"
  else
    echo "[k8s] $group $K8S_VERSION present, skipped"
  fi
done

if [ ! -x "$ASSETS/etcd" ]; then
  echo "[etcd] building etcd $ETCD_VERSION into $ASSETS"
  w="$(mktemp -d)"; trap 'rm -rf "$w"' EXIT
  ( cd "$w"; go mod init local/etcdbin >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    go build -trimpath -ldflags "-s -w" -o "$ASSETS/etcd" go.etcd.io/etcd/server/v3 )
  rm -rf "$w"; trap - EXIT
else
  echo "[etcd] etcd $ETCD_VERSION present, skipped"
fi

if [ ! -x "$BIN/helm" ]; then
  echo "[helm] building helm $HELM_VERSION into $BIN"
  GOBIN="$BIN" go install -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
else
  echo "[helm] helm $HELM_VERSION present, skipped"
fi
CRDS="$CACHE/crds/prometheus-operator-$PROM_OPERATOR_VERSION"
if [ ! -f "$CRDS/monitoring.coreos.com_prometheusrules.yaml" ]; then
  # The real ServiceMonitor/PrometheusRule CRDs, so the chart's manifests can be
  # dry-run server-side against the test API server. The module zip carries them.
  echo "[crds] prometheus-operator $PROM_OPERATOR_VERSION CRDs into $CRDS"
  dir="$(go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROM_OPERATOR_VERSION" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  mkdir -p "$CRDS"
  cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" \
     "$dir/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml" "$CRDS/"
  chmod u+w "$CRDS"/*.yaml
else
  echo "[crds] prometheus-operator $PROM_OPERATOR_VERSION CRDs present, skipped"
fi
echo "$ASSETS"
