"""Prometheus on loopback, scraping targets whose ports are reserved up front.

Prometheus 2.42 scrapes nothing for about 5 s after a start or a reload (target
discovery is throttled), so it is started once with a pool of reserved target
ports ("slots"). A test or a service claims a slot, listens on its port, and is
scraped on the next interval, with no reload and no 5 s wait.

A slot is reused by unrelated tests under the same ``instance`` label, so a claim first
deletes the slot's history (the admin API, loopback only). Without it, increments the
previous owner counted inside a gate's window stay in the same series, and ``increase()``
reads across the "reset" to the new owner's counter and adds them: a healthy exporter once
failed the parity gate on another test's two failures (CI, stop 21). Staleness markers do
not help: range queries still see the samples before them.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

from tidegate.infra import binaries
from tidegate.infra.process import ServerProcess, free_port


class PrometheusServer:
    def __init__(self, workdir: Path, *, slots: int = 24, scrape_interval: str = "500ms",
                 rule_files: Iterable[Path] = (), jobs: Mapping[str, Iterable[int]] | None = None,
                 binary: Path | None = None):
        self.workdir = workdir
        self.binary = binary or binaries.require("prometheus")
        self.port = free_port()
        self.scrape_interval = scrape_interval
        self.rule_files = [Path(p).resolve() for p in rule_files]
        self.slot_ports = [free_port() for _ in range(slots)]
        self._free_slots = list(self.slot_ports)
        self.jobs = {name: list(ports) for name, ports in (jobs or {}).items()}
        self._proc: ServerProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict:
        interval = self.scrape_interval
        scrape_configs = [{
            "job_name": "slots",
            "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in self.slot_ports]}],
        }]
        for name, ports in self.jobs.items():
            scrape_configs.append({"job_name": name,
                                   "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in ports]}]})
        return {
            "global": {"scrape_interval": interval, "scrape_timeout": interval,
                       "evaluation_interval": interval},
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": scrape_configs,
        }

    def _ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
            return r.status == 200

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "prometheus.yml"
        cfg.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        argv = [self.binary, f"--config.file={cfg}", f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle",
                "--log.level=warn"]
        if self.slot_ports:
            argv.append("--web.enable-admin-api")   # claim_slot forgets a slot's history
        self._proc = ServerProcess("prometheus", argv, self.workdir / "prometheus.log").start()
        self._proc.wait_ready(self._ready, timeout)
        return self

    def stop(self) -> None:
        if self._proc:
            self._proc.stop()

    def alive(self) -> bool:
        return self._proc is not None and self._proc.alive()

    def claim_slot(self) -> int:
        """A reserved target port that Prometheus already scrapes; release it when done."""
        if not self._free_slots:
            raise RuntimeError(f"all {len(self.slot_ports)} Prometheus target slots are in use")
        port = self._free_slots.pop(0)
        self.forget(port)
        return port

    def forget(self, port: int) -> None:
        """Delete every series scraped from ``127.0.0.1:port`` (up to now); the next owner starts clean."""
        match = urllib.parse.urlencode({"match[]": f'{{instance="127.0.0.1:{port}"}}'})
        req = urllib.request.Request(f"{self.url}/api/v1/admin/tsdb/delete_series?{match}", method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            if r.status != 204:
                raise RuntimeError(f"could not forget slot {port}: HTTP {r.status}")

    def release_slot(self, port: int) -> None:
        if port in self.slot_ports and port not in self._free_slots:
            self._free_slots.append(port)

    def query(self, promql: str) -> list[dict]:
        """Instant query through the HTTP API (the release engine uses prometheus-api-client)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.loads(r.read())
        if body.get("status") != "success":
            raise RuntimeError(f"query failed: {body}")
        return list(body["data"]["result"])

    def wait_up(self, port: int, timeout: float = 20.0) -> None:
        """Block until the target on ``port`` has been scraped successfully."""
        deadline = time.monotonic() + timeout
        promql = f'up{{instance="127.0.0.1:{port}"}} == 1'
        while time.monotonic() < deadline:
            if self.query(promql):
                return
            time.sleep(0.1)
        raise TimeoutError(f"target 127.0.0.1:{port} not scraped within {timeout:.0f}s")
