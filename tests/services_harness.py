"""Run the trading services as real subprocesses for integration tests and benchmarks.

Each service is started exactly as an operator would (``python -m
tidegate.services.<name> --config FILE``) with ``METRICS_PORT`` set to a port
Prometheus scrapes; readiness is its own ``/healthz``. The config file is
written per test with a unique NATS namespace and KV bucket, so tests sharing
one nats-server never see each other's streams.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from tidegate.config.loader import deep_merge

REPO = Path(__file__).resolve().parents[1]
CAPTURE_DIR = (REPO / ".." / "shared" / "data" / "capture").resolve()
CAPTURE_FILE = "binance_usdm_btcusdt_20240808.gz"


def unique_names(prefix: str) -> tuple[str, str]:
    """(namespace, kv bucket) unique to one test run."""
    tag = f"{prefix}{uuid.uuid4().hex[:8]}"
    return tag, f"{tag}_rollout"


def write_config(path: Path, *, nats_url: str, namespace: str, kv_bucket: str, registry_root: Path,
                 overrides: dict[str, Any] | None = None) -> Path:
    """A complete config file (no ``${}``), deep-merged with ``overrides``."""
    source = "capture" if (CAPTURE_DIR / CAPTURE_FILE).is_file() else "synthetic"
    doc: dict[str, Any] = {
        "symbols": ["BTCUSDT"],
        "exchange": {"mode": "paper", "markets_file": str(REPO / "config" / "markets" / "bybit_v5_linear.json")},
        "nats": {"url": nats_url, "kv_bucket": kv_bucket, "namespace": namespace},
        "collector": {"source": source, "capture_file": CAPTURE_FILE, "speed": 0.0},
        "executor": {"warmup_seconds": 0.0},
        "risk": {"publish_interval": 0.25, "gap_scan_interval": 3600},
        "ai_scorer": {"registry_poll_interval": 0.3},
        "registry": {"root": str(registry_root)},
        "data": {"capture_dir": str(CAPTURE_DIR), "parquet_dir": str(path.parent / "parquet")},
    }
    deep_merge(doc, overrides or {})
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path



class Services:
    """The service processes of one test: start, health, logs, SIGTERM on exit."""

    def __init__(self, workdir: Path, config: Path):
        self.workdir = workdir
        self.config = config
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}

    def start(self, name: str, port: int, *, env: dict[str, str] | None = None, key: str | None = None) -> None:
        key = key or name
        log = open(self.workdir / f"{key}.log", "wb")
        full_env = {**os.environ, "METRICS_PORT": str(port), "PYTHONUNBUFFERED": "1", **(env or {})}
        full_env.pop("HEALTH_PORT", None)
        self.procs[key] = subprocess.Popen(
            [sys.executable, "-m", f"tidegate.services.{name}", "--config", str(self.config)],
            cwd=REPO, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        self.ports[key] = port

    def health(self, key: str) -> dict[str, Any] | None:
        """The /healthz document when it answers 200, else None."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[key]}/healthz", timeout=1) as r:
                return dict(json.loads(r.read()))
        except Exception:
            return None

    def wait_healthy(self, keys: Iterable[str], timeout: float = 30.0) -> None:
        pending = set(keys)
        deadline = time.monotonic() + timeout
        while pending:
            for key in list(pending):
                if self.procs[key].poll() is not None:
                    raise RuntimeError(f"{key} exited with {self.procs[key].returncode}:\n{self.log(key)[-3000:]}")
                if self.health(key) is not None:
                    pending.discard(key)
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"not healthy within {timeout:g}s: {sorted(pending)}\n"
                                   + "\n".join(self.log(k)[-1500:] for k in pending))
            time.sleep(0.1)

    def alive(self, key: str) -> bool:
        return self.procs[key].poll() is None

    def log(self, key: str) -> str:
        path = self.workdir / f"{key}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, key: str, timeout: float = 20.0, *, signalled: bool = False) -> int:
        proc = self.procs[key]
        if proc.poll() is None:
            if not signalled:  # a second SIGTERM after the handlers are gone would kill it mid-exit
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return int(proc.returncode)

    def stop_all(self) -> dict[str, int]:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        return {key: self.stop(key, signalled=True) for key in list(self.procs)}


def metrics(port: int) -> dict[str, float]:
    """A service's /metrics as {series: value}, read from the process (no Prometheus needed)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out
