"""The local stack: nats-server, Prometheus and the five services as child processes.

Every process is started in its own process group and stopped (SIGTERM, then
SIGKILL) on exit, on an exception and on Ctrl-C, so a demo leaves nothing behind.
Prometheus scrapes the services and the release engine on ports reserved up front
(no reload, no 5 s discovery delay), with the project's alert rules loaded.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tidegate.config.loader import deep_merge
from tidegate.infra.nats_server import NatsServer
from tidegate.infra.process import ServerProcess, free_port
from tidegate.infra.prometheus_server import PrometheusServer

SERVICES = ("collector", "signal_engine", "ai_scorer", "executor", "risk")
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    workdir: Path
    config_overrides: dict[str, Any]
    scrape_interval: str = "1s"
    nats: NatsServer | None = None
    prometheus: PrometheusServer | None = None
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, ServerProcess] = field(default_factory=dict)
    config_path: Path | None = None

    def start_servers(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.nats = NatsServer(self.workdir / "nats").start()
        self.ports = {name: free_port() for name in (*SERVICES, "release")}
        jobs = {name: [port] for name, port in self.ports.items()}
        self.prometheus = PrometheusServer(self.workdir / "prometheus", slots=0, scrape_interval=self.scrape_interval,
                                           rule_files=[REPO / "config" / "prometheus" / "alerts.yml"],
                                           jobs=jobs).start()

    def write_config(self) -> Path:
        """config/app.yml with the demo's endpoints, registry and compressed timings."""
        assert self.nats is not None and self.prometheus is not None
        doc = yaml.safe_load((REPO / "config" / "app.yml").read_text())
        deep_merge(doc, {"nats": {"url": self.nats.url}, "prometheus": {"url": self.prometheus.url},
                         "risk": {"state_file": str(self.workdir / "risk_state.json")}})  # this run's own
        deep_merge(doc, self.config_overrides)
        self.config_path = self.workdir / "app.yml"
        self.config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return self.config_path

    def start_service(self, name: str, *, env: dict[str, str] | None = None) -> ServerProcess:
        assert self.config_path is not None
        if name in self.procs:
            self.procs[name].stop()
        penv = {**os.environ, "METRICS_PORT": str(self.ports[name]), "HEALTH_PORT": "0",
                "EXCHANGE_MODE": "paper", "PYTHONUNBUFFERED": "1", **(env or {})}
        proc = ServerProcess(name, [sys.executable, "-m", f"tidegate.services.{name}", "--config",
                                    str(self.config_path)], self.workdir / "logs" / f"{name}.log",
                             env=penv, cwd=REPO).start()
        self.procs[name] = proc
        return proc

    def start_services(self, timeout: float = 60.0) -> None:
        for name in SERVICES:
            self.start_service(name)
        deadline = time.monotonic() + timeout
        for name in SERVICES:
            self.procs[name].wait_ready(lambda n=name: self.healthy(n), max(1.0, deadline - time.monotonic()),
                                        "healthy (/healthz)")

    def healthy(self, name: str) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[name]}/healthz", timeout=1) as r:
            return r.status == 200

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()
        self.procs.clear()
        if self.prometheus is not None:
            self.prometheus.stop()
        if self.nats is not None:
            self.nats.stop()

