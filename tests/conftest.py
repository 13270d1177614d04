"""Fixtures that start real servers on loopback, once per test run.

Outside CI, a missing binary skips the tests that need it, with a reason naming
the setup step that provides it. With CI=true it fails them instead: CI must
never turn a missing component into a green run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidegate.infra import binaries

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REPO = Path(__file__).resolve().parents[1]


def need_binary(name: str) -> Path:
    found = binaries.find(name)
    if isinstance(found, binaries.Missing):
        if IN_CI:
            pytest.fail(f"CI=true and {found}", pytrace=False)
        pytest.skip(str(found))
    return found


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from tidegate.infra.nats_server import NatsServer

    server = NatsServer(tmp_path_factory.mktemp("nats"), binary=need_binary("nats-server")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One Prometheus for the whole run with reserved target slots (see PrometheusServer)."""
    from tidegate.infra.prometheus_server import PrometheusServer

    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"), binary=need_binary("prometheus"),
                              scrape_interval="500ms").start()
    yield server
    server.stop()


@pytest.fixture
def prom_slot(prometheus) -> Iterator[int]:  # type: ignore[no-untyped-def]
    """A target port Prometheus already scrapes; the test serves /metrics on it."""
    port = prometheus.claim_slot()
    yield port
    prometheus.release_slot(port)


@pytest.fixture(scope="session")
def promtool() -> Path:
    return need_binary("promtool")


@pytest.fixture(scope="session")
def kubectl() -> Path:
    return need_binary("kubectl")


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """kube-apiserver + etcd; KUBECONFIG is exported for kubectl, the client and kopf."""
    need_binary("kube-apiserver")
    need_binary("etcd")
    from tidegate.infra.kube_control_plane import KubeControlPlane

    plane = KubeControlPlane(tmp_path_factory.mktemp("kube")).start()
    old = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(plane.kubeconfig)
    yield plane
    plane.stop()
    if old is None:
        os.environ.pop("KUBECONFIG", None)
    else:
        os.environ["KUBECONFIG"] = old


@pytest.fixture(scope="module")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real single-node cluster in a loopback-only network namespace (tests/cluster_harness.py).

    Started once for the tier and stopped with its module, so the node's pods never load the rest
    of the suite; its teardown fails the run if a process, mount, cgroup or the
    namespace outlives it, or if the host's interfaces changed."""
    import subprocess

    for name in ("kubelet", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd", "kubectl",
                 "helm", "containerd", "ctr", "runc", "containerd-shim-runc-v2", "nats-server", "prometheus"):
        need_binary(name)
    if os.geteuid() != 0:
        pytest.fail("the cluster tier runs kubelet and containerd, which need root", pytrace=False) if IN_CI \
            else pytest.skip("the cluster tier needs root (kubelet, containerd)")
    from cluster_harness import start_cluster, stop_cluster

    from tidegate.config import load_config

    before = subprocess.run(["ip", "-brief", "addr"], capture_output=True, text=True, check=True).stdout
    capture = (REPO / load_config(REPO / "config" / "app.yml").data.capture_dir).resolve()
    cluster = start_cluster(tmp_path_factory.mktemp("cluster"), capture)
    try:
        yield cluster
    finally:
        left = stop_cluster(cluster)
        after = subprocess.run(["ip", "-brief", "addr"], capture_output=True, text=True, check=True).stdout
        assert not left, f"the cluster tier left {left}"
        assert after == before, f"host interfaces changed:\nbefore\n{before}\nafter\n{after}"
