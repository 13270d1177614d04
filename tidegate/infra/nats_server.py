"""nats-server with JetStream on loopback, with a readiness probe and restart support.

Restart keeps the same ports and store directory, which is what the reconnect tests
need: clients reconnect to the same URL and JetStream keeps its messages on disk.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from tidegate.infra import binaries
from tidegate.infra.process import ServerProcess, free_port


class NatsServer:
    def __init__(self, workdir: Path, *, binary: Path | None = None):
        self.workdir = workdir
        self.binary = binary or binaries.require("nats-server")
        self.port = free_port()
        self.monitor_port = free_port()
        self.store_dir = workdir / "jetstream"
        self._proc: ServerProcess | None = None
        self._started = False

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _healthy(self) -> bool:
        url = f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true"
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(json.loads(r.read()).get("status") == "ok")

    def start(self, timeout: float = 20.0, *, attempts: int = 3) -> NatsServer:
        """Start on the chosen ports; if another process grabbed one meanwhile, pick new ones
        (only on the first start: a restart must keep its URL for reconnecting clients)."""
        for attempt in range(attempts):
            argv = [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port),
                    "-m", str(self.monitor_port), "-sd", str(self.store_dir)]
            self._proc = ServerProcess("nats-server", argv, self.workdir / "nats-server.log").start()
            try:
                self._proc.wait_ready(self._healthy, timeout)
                self._started = True
                return self
            except RuntimeError:
                if self._started or attempt == attempts - 1 or "address already in use" not in self._proc.log_tail():
                    raise
                self.port, self.monitor_port = free_port(), free_port()
        return self

    def stop(self) -> None:
        if self._proc:
            self._proc.stop()

    def restart(self, down_for: float = 0.0) -> None:
        import time

        self.stop()
        if down_for:
            time.sleep(down_for)
        self.start()

    def version(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_port}/varz", timeout=2) as r:
            return str(json.loads(r.read())["version"])
