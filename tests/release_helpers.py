"""Shared pieces for the release tests: a real tiny ONNX registry and a scripted exporter.

The exporter serves the seed's guard-rail series with prometheus_client on a
port Prometheus scrapes (a ``prom_slot``); a test moves the numbers (healthy,
win-rate drop, parity increment, drift) and the real Prometheus sees them on its
next scrape, exactly as it would see the risk service and the ai_scorer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from tidegate.metrics import spec as metric_spec
from tidegate.registry import Registry

HEALTHY: dict[str, float] = {"winrate_canary": 0.56, "winrate_baseline_active": 0.55, "sample_canary": 500,
                             "fill_rate": 0.40, "markout": 1.5, "ece": 0.02, "psi": 0.05, "ks": 0.05}


def tiny_onnx(path: Path, weight: float) -> None:
    """A real ONNX graph p = sigmoid(x . w): enough for the registry's sha256/schema checks."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((4, 1), weight, dtype=np.float32), name="w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["z"]), helper.make_node("Sigmoid", ["z"], ["p"])],
        "scorer", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, [None, 1])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    from tidegate.features.schema import schema_hash

    helper.set_model_props(model, {"schema_hash": schema_hash()})  # as real exports carry it (validation reads it)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def make_registry(root: Path, ids: tuple[str, ...] = ("old-1", "cand-1"), *, active: str | None = "old-1",
                  metrics: dict[str, dict[str, float]] | None = None) -> Registry:
    from tidegate.features.schema import schema_hash

    reg = Registry(root)
    for i, model_id in enumerate(ids):
        src = root.parent / f"src-{model_id}"
        tiny_onnx(src / "model.onnx", 0.1 * (i + 1))
        sha = hashlib.sha256((src / "model.onnx").read_bytes()).hexdigest()
        meta = {"id": model_id, "created_at": "2026-01-01T00:00:00+00:00", "schema_hash": schema_hash(),
                "feature_names": ["a", "b", "c", "d"], "thresholds": {"tau_entry": 0.6, "tau_hold": 0.5},
                "metrics": (metrics or {}).get(model_id, {"pr_auc": 0.31, "precision": 0.58}),
                "regimes": ["normal", "event", "high-vol"], "sha256": sha}
        (src / "model.json").write_text(json.dumps(meta))
        reg.register(src)
    if active:
        reg.set_slot("active", active, reason="initial")
    return reg


class Exporter:
    """The guard-rail series, served on a Prometheus slot; ``set`` scripts them.

    The win-rate gate reads trade *counters* over the canary stage (``increase()``), so the
    exporter runs a scripted trade flow: ``sample_canary=N`` means the candidate's canary closes
    N/10 trades per second (the active model's other routes nine times as many), winning
    ``winrate_canary`` (``winrate_baseline_active``) of them; every trade is its own cluster.
    The seed's gauges are served with the same numbers for dashboards and reports.
    """

    FLOW = 0.1   # canary trades per second per unit of sample_canary

    def __init__(self, port: int, *, candidate: str = "cand-1", active: str = "old-1"):
        self.registry = CollectorRegistry()

        def gauge(name: str) -> Gauge:
            s = metric_spec(name)
            return Gauge(s.client_name, s.help, s.labels, registry=self.registry)

        def counter(name: str) -> Counter:
            s = metric_spec(name)
            return Counter(s.client_name, s.help, s.labels, registry=self.registry)

        self.winrate_canary = gauge("winrate_canary")
        self.winrate_baseline = gauge("winrate_baseline_active")
        self.sample_canary = gauge("sample_canary")
        self.fill_rate = gauge("fill_rate_rolling")
        self.markout = gauge("avg_markout_1000ms")
        self.ece = gauge("ece_online")
        self.psi = gauge("psi_feature")
        self.ks = gauge("ks_feature")
        self.closed = counter("trades_closed_total")
        self.won = counter("trades_won_total")
        self.clusters = counter("trade_clusters_total")
        s = metric_spec("onnx_parity_fail_total")
        self.parity = Counter(s.client_name, s.help, registry=self.registry)
        self.parity.inc(0)
        self.arms = {"canary": ("canary", candidate), "baseline": ("paper", active)}
        self.flow = {"canary": [0.0, 0.0], "baseline": [0.0, 0.0]}      # trades/s, win fraction
        self.done = {"canary": [0, 0], "baseline": [0, 0]}              # trades, wins exported
        self.exact = {"canary": [0.0, 0.0], "baseline": [0.0, 0.0]}
        for route, model in self.arms.values():
            self.closed.labels(route=route, model=model)
            self.won.labels(route=route, model=model)
            for stat in ("clusters", "trades", "wins", "trades_sq", "wins_sq", "wins_trades"):
                self.clusters.labels(route=route, model=model, stat=stat)
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.set(**HEALTHY)
        self.server, self.thread = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        self.ticker = threading.Thread(target=self._run, name="exporter-flow", daemon=True)
        self.ticker.start()

    def _run(self) -> None:
        last = time.monotonic()
        while not self.stopped.wait(0.05):
            now = time.monotonic()
            self._advance(now - last)
            last = now

    def _advance(self, dt_s: float) -> None:
        with self.lock:
            for arm, (rate, win) in self.flow.items():
                exact = self.exact[arm]
                exact[0] += rate * dt_s
                exact[1] += rate * dt_s * win
                n, w = int(exact[0]), min(int(exact[0]), round(exact[1]))
                dn, dw = n - self.done[arm][0], max(0, w - self.done[arm][1])
                if dn <= 0:
                    continue
                dw = min(dw, dn)
                route, model = self.arms[arm]
                self.closed.labels(route=route, model=model).inc(dn)
                self.won.labels(route=route, model=model).inc(dw)
                for stat, amount in (("clusters", dn), ("trades", dn), ("trades_sq", dn), ("wins", dw),
                                     ("wins_sq", dw), ("wins_trades", dw)):
                    self.clusters.labels(route=route, model=model, stat=stat).inc(amount)
                self.done[arm] = [n, self.done[arm][1] + dw]

    def set(self, **values: float) -> None:
        with self.lock:
            for key, value in values.items():
                if key == "winrate_canary":
                    self.winrate_canary.set(value)
                    self.flow["canary"][1] = value
                elif key == "winrate_baseline_active":
                    self.winrate_baseline.set(value)
                    self.flow["baseline"][1] = value
                elif key == "sample_canary":
                    self.sample_canary.set(value)
                    self.flow["canary"][0] = value * self.FLOW
                    self.flow["baseline"][0] = 9 * value * self.FLOW
                elif key == "fill_rate":
                    self.fill_rate.labels(route="canary").set(value)
                elif key == "markout":
                    self.markout.labels(route="canary").set(value)
                elif key == "ece":
                    self.ece.set(value)
                elif key in ("psi", "ks"):
                    g = self.psi if key == "psi" else self.ks
                    g.labels(feature="spread_bps").set(value)
                    g.labels(feature="ofi_1s").set(value / 2)
                else:
                    raise KeyError(key)

    def close(self) -> None:
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()


def release_doc(name: str, *, model_id: str = "cand-1", prometheus_url: str, port: int | None = None,
                stages: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    """A compressed release: seconds instead of hours, 0.5 s analysis interval."""
    doc: dict[str, Any] = {
        "apiVersion": "tidegate.dev/v1alpha1", "kind": "ModelRelease", "metadata": {"name": name},
        "spec": {"modelId": model_id, "validations": {"skip": True},
                 "stages": stages or [{"name": "shadow", "weight": 0, "duration": 1},
                                      {"name": "canary", "weight": 10, "duration": 2, "maxDuration": 30},
                                      {"name": "ramp-25", "weight": 25, "duration": 1},
                                      {"name": "ramp-50", "weight": 50, "duration": 1},
                                      {"name": "full", "weight": 100}],
                 "analysis": {"interval": 0.5, "staleAfter": 5,
                              "prometheus": {"url": prometheus_url, "timeout": 2},
                              "windows": {"parity": 10, "drift": 10},
                              **({"labels": {"instance": f"127.0.0.1:{port}"}} if port else {})},
                 "guardRails": {"winrateDeltaPP": 5, "minSample": 200, "psiBlock": 0.3, "ksBlock": 0.2,
                                "onUnavailable": {"action": "hold", "maxHold": 30, "then": "rollback"}},
                 "cooldown": 60}}
    for key, value in spec.items():
        if isinstance(value, dict) and isinstance(doc["spec"].get(key), dict):
            doc["spec"][key] = {**doc["spec"][key], **value}
        else:
            doc["spec"][key] = value
    return doc


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout:g}s")
        await asyncio.sleep(0.05)


async def control_events(nats_url: str, release: str) -> list[dict[str, Any]]:
    """Every MODE_SWITCH control event of one release, from the JetStream CONTROL stream."""
    import nats

    from tidegate.bus.subjects import CONTROL

    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        stream = await js.find_stream_name_by_subject(CONTROL)
        info = await js.stream_info(stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                msg = await js.get_msg(stream, seq)
            except Exception:
                continue
            if msg.subject != CONTROL:
                continue
            doc = json.loads(msg.data)
            if doc.get("kind") == "MODE_SWITCH" and doc.get("release") == release:
                out.append(doc)
        return out
    finally:
        await nc.close()


def seconds_between(a: str, b: str) -> float:
    return (dt.datetime.fromisoformat(b) - dt.datetime.fromisoformat(a)).total_seconds()
