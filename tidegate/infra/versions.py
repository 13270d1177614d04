"""Print the version of every server binary the setup installs or builds."""

from __future__ import annotations

import subprocess

from tidegate.infra import binaries

_VERSION_ARGS = {
    "nats-server": ["--version"],
    "prometheus": ["--version"],
    "promtool": ["--version"],
    "kube-apiserver": ["--version"],
    "etcd": ["--version"],
    "kubectl": ["version", "--client"],
    "helm": ["version", "--short"],
}


def server_versions() -> dict[str, str]:
    out = {}
    for name, args in _VERSION_ARGS.items():
        found = binaries.find(name)
        if isinstance(found, binaries.Missing):
            out[name] = f"MISSING: {found}"
            continue
        res = subprocess.run([str(found), *args], capture_output=True, text=True, timeout=30, check=False)
        text = (res.stdout or res.stderr).strip().splitlines()
        out[name] = f"{text[0] if text else '?'}  ({found})"
    return out


if __name__ == "__main__":
    for name, version in server_versions().items():
        print(f"{name:15s} {version}")
