#!/usr/bin/env bash
# The cluster tier's images without an engine or a registry (docs/cluster-tests.md):
#   1. the pod sandbox binary from scripts/setup/pause (static Go, no dependencies) into
#      <cache>/bin/tidegate-pause, skipped when present;
#   2. the pause, services and operator OCI image-layout tars into <cache>/images
#      (python -m tidegate.infra.images build): cold ~minutes (pip), warm seconds.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
CACHE="${TIDEGATE_CACHE:-$HOME/.cache/tidegate}"
BIN="$CACHE/bin"
mkdir -p "$BIN"

if [ ! -x "$BIN/tidegate-pause" ]; then
  echo "[pause] building $BIN/tidegate-pause"
  ( cd "$here/pause"
    CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod go build -trimpath -ldflags '-s -w' \
      -o "$BIN/tidegate-pause" . )
else
  echo "[pause] $BIN/tidegate-pause present, skipped"
fi

cd "$repo"
.venv/bin/python -m tidegate.infra.images build
