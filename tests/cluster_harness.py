"""The cluster tier's environment: a real single-node Kubernetes (``tidegate.infra.kube_node``)
with NATS and Prometheus beside it on the namespace's loopback, the chart's images imported,
and the demo's models in a registry directory the pods mount.

NATS and Prometheus run beside the node rather than as pods: they are not ours (their
charts come from other repositories this machine cannot reach), the chart under test only
needs their URLs, and started here they keep the suite's readiness probes and logs. They
listen on the ports the chart's test values name (``values-node-test.yaml``), which is
possible because the whole node lives in a private network namespace.

Everything a test does to the cluster goes through the user's own tools, run inside the
namespace: ``helm``, ``kubectl`` (with the ``kubectl tidegate`` plugin) and ``tidegate``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tidegate.infra import binaries
from tidegate.infra.kube_node import KubeNode
from tidegate.infra.nats_server import NatsServer
from tidegate.infra.prometheus_server import PrometheusServer

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "tidegate"
TEST_VALUES = CHART / "values-node-test.yaml"
NAMESPACE = "tidegate"
RELEASE = "tg"
POD_UID = 10001
SERVICES = ("collector", "signal_engine", "ai_scorer", "executor", "risk")


def chart_ports() -> dict[str, dict[str, int]]:
    """Each Deployment's metrics/health ports from the test values (the Prometheus targets)."""
    values = yaml.safe_load(TEST_VALUES.read_text())
    out = {"operator": values["operator"]["ports"]}
    out.update({name: values["services"][name]["ports"] for name in SERVICES})
    return out


def demo_config(speed: float) -> dict[str, Any]:
    """The app.yml the chart renders for the tier: the demo's replay and risk settings."""
    from tidegate.demo.models import SYNTHETIC_REGIME, SYNTHETIC_SECONDS

    return {
        "symbols": ["BTCUSDT"],
        "rollout": {"mode": "canary", "canary_fraction": 0.10, "rng_seed": 1337},
        "executor": {"warmup_seconds": 3},
        "collector": {"speed": speed, "source": "auto", "loop": True, "synthetic_seconds": SYNTHETIC_SECONDS,
                      "synthetic_regime": SYNTHETIC_REGIME},
        "risk": {"publish_interval": 1.0, "window_candidates": 8000},
        "data": {"capture_dir": "/var/lib/tidegate/capture", "parquet_dir": "/tmp/parquet"},
    }


@dataclass
class Models:
    base: str
    healthy: str
    parity: str


@dataclass
class Cluster:
    node: KubeNode
    nats: NatsServer
    prometheus: PrometheusServer
    workdir: Path
    registry: Path
    capture: Path
    models: Models | None = None
    timings: dict[str, float] = field(default_factory=dict)

    # ---- tools, inside the namespace
    def env(self) -> dict[str, str]:
        venv_bin = str(Path(sys.executable).parent)
        return {**self.node.env(), "PATH": f"{venv_bin}:{self.node.env()['PATH']}"}

    def tool(self, *cmd: str | os.PathLike[str], check: bool = True, timeout: float = 180,
             input: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.node.ns.argv(cmd), capture_output=True, text=True, timeout=timeout,
                              env=self.env(), input=input)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}")
        return proc

    def kubectl(self, *args: str, check: bool = True, timeout: float = 120,
                input: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.tool(self.node.bins["kubectl"], "-n", NAMESPACE, *args, check=check, timeout=timeout,
                         input=input)

    def helm(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self.tool(binaries.require("helm"), "-n", NAMESPACE, *args, timeout=timeout)

    def values_file(self, speed: float = 4.0, **config: Any) -> Path:
        """The per-run values on top of values-node-test.yaml: host paths and the app config."""
        from tidegate.config.loader import deep_merge

        cfg = demo_config(speed)
        deep_merge(cfg, config)
        test_values = yaml.safe_load(TEST_VALUES.read_text())
        volumes = [dict(v) for v in test_values["extraVolumes"]]
        for v in volumes:
            if v["name"] == "capture":
                v["hostPath"] = {"path": str(self.capture), "type": "DirectoryOrCreate"}
        path = self.workdir / f"values-{time.monotonic_ns()}.yaml"
        path.write_text(yaml.safe_dump({"modelRegistry": {"hostPath": str(self.registry)},
                                        "extraVolumes": volumes, "config": cfg}))
        return path

    def install(self, *, upgrade: bool = False, speed: float = 4.0, **config: Any) -> None:
        verb = "upgrade" if upgrade else "install"
        extra = [] if upgrade else ["--create-namespace"]
        values = self.values_file(speed, **config)
        self.helm(verb, RELEASE, str(CHART), *extra, "-f", str(TEST_VALUES), "-f", str(values),
                  "--wait", "--timeout", "240s")

    # ---- reading the cluster
    def get(self, kind: str, name: str | None = None) -> Any:
        args = ["get", kind, *([name] if name else []), "-o", "json"]
        return json.loads(self.kubectl(*args).stdout)

    def release_status(self, name: str) -> dict[str, Any]:
        return dict(self.get("modelrelease", name).get("status") or {})

    def wait_for(self, what: str, probe: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            time.sleep(every)
        raise AssertionError(f"{what}: not within {timeout:.0f}s (last: {last!r})")

    def wait_phase(self, name: str, phases: tuple[str, ...], timeout: float) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            st = self.release_status(name)
            done = st.get("phase") in phases and not st.get("pendingEffects")
            return st if done else None
        try:
            return self.wait_for(f"release {name} in {phases}", probe, timeout)
        except AssertionError as exc:
            st = self.release_status(name)
            raise AssertionError(f"{exc}; status {json.dumps(st)[:3000]}\n{self.operator_logs()}") from None

    def operator_logs(self, lines: int = 60) -> str:
        out = self.kubectl("logs", "-l", "app.kubernetes.io/component=operator", f"--tail={lines}", check=False)
        return out.stdout + out.stderr

    def query(self, promql: str) -> list[dict[str, Any]]:
        return self.node.ns.run(self.prometheus.query, promql)

    def rollout_state(self) -> dict[str, Any]:
        """The stored rollout (NATS KV) as ``tidegate rollout show`` prints it."""
        cfg = self.workdir / "cli-app.yml"
        if not cfg.exists():
            cfg.write_text(yaml.safe_dump({"nats": {"url": self.nats.url}, "prometheus": {"url": self.prometheus.url}}))
        out = self.tool(Path(sys.executable).parent / "tidegate", "rollout", "show", "--config", str(cfg))
        return dict(json.loads(out.stdout))

    def registry_slot(self, slot: str) -> str | None:
        link = self.registry / slot
        return Path(os.readlink(link)).name if link.is_symlink() else None

    def wait_settled_features(self, timeout: float = 120) -> None:
        """Start a release once live drift is measurable and calm (as the demo does)."""
        def calm() -> bool:
            p = self.query("max(max_over_time(psi_feature[15s]))")
            k = self.query("max(max_over_time(ks_feature[15s]))")
            return bool(p and k and float(p[0]["value"][1]) < 0.2 and float(k[0]["value"][1]) < 0.15)
        self.wait_for("live features settled (PSI < 0.2, KS < 0.15)", calm, timeout)


def train_models(registry_root: Path, capture: Path, work: Path) -> Models:
    """The demo's baseline and healthy retrain, plus a candidate whose reference artifact is
    another model's (the parity fault), in a registry the pods' user owns."""
    from tidegate.demo.models import register_pair, swap_reference_model, train_pair, training_table
    from tidegate.demo.run import MARKET
    from tidegate.pipeline.train import TrainParams, train_model
    from tidegate.registry import Registry

    registry = Registry(registry_root)
    work.mkdir(parents=True, exist_ok=True)
    table, _source = training_table(capture if capture.is_dir() else None, work, market=MARKET)
    base_dir, cand_dir = train_pair(table, work / "models", tag="k8s", inject=None)
    base, healthy = register_pair(registry, base_dir, cand_dir)
    par_dir = train_model(table, work / "models" / "parity-k8s", model_id="parity-k8s", params=TrainParams(seed=23),
                          notes="cluster tier: reference artifact swapped after registration (parity fault)")
    parity = registry.register(par_dir, replace=True).id
    swap_reference_model(registry.model_dir(parity), registry.model_dir(base))
    chown_tree(registry_root, POD_UID)
    return Models(base, healthy, parity)


def chown_tree(root: Path, uid: int) -> None:
    """hostPath volumes ignore fsGroup: the pods' user must own the registry to switch slots."""
    os.chown(root, uid, uid)
    for p in root.rglob("*"):
        os.chown(p, uid, uid, follow_symlinks=False)


def start_cluster(workdir: Path, capture: Path) -> Cluster:
    from tidegate.infra import images

    t0 = time.monotonic()
    built = images.build(bundle=True)
    assert built.bundle is not None
    t_images = time.monotonic() - t0
    node = KubeNode(workdir / "node", images=[built.bundle.path], pause_image=built.images["pause"].name)
    node.start()
    ports = chart_ports()
    try:
        nats = NatsServer(workdir / "nats")
        nats.port, nats.monitor_port = 4222, 8222            # the chart's test values name these
        node.ns.run(nats.start)
        jobs = {name: [p["metrics"]] for name, p in ports.items()}
        prom = PrometheusServer(workdir / "prometheus", slots=0, scrape_interval="1s", jobs=jobs,
                                rule_files=[REPO / "config" / "prometheus" / "alerts.yml"])
        prom.port = 9090
        node.ns.run(prom.start)
    except BaseException:
        node.stop()
        raise
    registry = workdir / "registry"
    registry.mkdir()
    cluster = Cluster(node, nats, prom, workdir, registry, capture)
    cluster.timings = {"images_s": t_images, **node.timings, "ready_s": time.monotonic() - t0}
    return cluster


def stop_cluster(cluster: Cluster) -> str:
    """Tear everything down; returns a description of what was left behind ('' when nothing)."""
    with_pods = cluster.node.procs.get("kubelet") is not None
    if with_pods:
        cluster.kubectl("delete", "deployments,jobs,pods", "--all", "--wait=false", check=False, timeout=30)
    for server in (cluster.prometheus, cluster.nats):
        try:
            cluster.node.ns.run(server.stop)
        except RuntimeError:
            server.stop()
    leftovers = cluster.node.stop()
    shutil.rmtree(cluster.workdir / "node" / "containerd" / "root", ignore_errors=True)
    return "" if not leftovers else str(leftovers)
