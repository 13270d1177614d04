"""What every service process shares: arguments, config, metrics/health endpoints, NATS, shutdown.

A service is one ``async def serve(ctx)`` coroutine; ``run_service`` wraps it:

- ``--config PATH`` (default ``config/app.yml``, or env ``TIDEGATE_CONFIG``) is
  loaded and validated; a bad file exits with status 2 and every problem listed.
- ``/metrics`` (the service's catalogue metrics, tidegate.metrics) and
  ``/healthz`` are served on 127.0.0.1 (``--host`` to change) at the ports from
  env ``METRICS_PORT`` / ``HEALTH_PORT``, else the service's config section;
  a health port of 0 means "on the metrics port".
- ``/healthz`` answers 200 once the service reports ready and NATS is connected,
  503 otherwise (a reconnecting service is alive but not healthy).
- SIGTERM and SIGINT set ``ctx.stop``; the service returns from ``serve``, the
  runtime flushes pending JetStream publishes, drains NATS and exits 0.
- ``EXCHANGE_MODE`` is honoured through the config (``exchange.mode``).

Logs are one line per important event: ``<time> <service> <level> <message>``.

Garbage collection: once a service reports ready, everything allocated so far
(modules, ONNX sessions, models, metric families) is collected once and frozen
(``gc.freeze``), and the young-generation threshold is raised. The collector
then never walks those long-lived objects again: a full collection of a
service's start-up heap (about 130k objects) took tens of milliseconds, paid by
whichever message was in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from tidegate import metrics as catalogue
from tidegate.bus.connection import Bus
from tidegate.bus.consumer import MessageCounters
from tidegate.bus.subjects import Subjects
from tidegate.config import ConfigError, load_config
from tidegate.config.schema import AppConfig

REPO = Path(__file__).resolve().parents[2]
GC_THRESHOLDS = (10_000, 20, 20)   # gen0 allocations, gen0 runs per gen1, gen1 runs per gen2


@dataclass
class ServiceContext:
    name: str
    cfg: AppConfig
    config_path: Path
    registry: CollectorRegistry
    metrics: dict[str, Any]
    subjects: Subjects
    counters: MessageCounters
    log: logging.Logger
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    bus: Bus | None = None
    ready: bool = False
    started_at: float = field(default_factory=time.monotonic)
    status: dict[str, Any] = field(default_factory=dict)

    def healthy(self) -> bool:
        return self.ready and self.bus is not None and self.bus.connected

    def resolve(self, path: str) -> Path:
        """A path from the config, relative to the repository root when not absolute."""
        p = Path(path)
        return p if p.is_absolute() else (REPO / p)

    async def connect(self) -> Bus:
        def on_state(state: str) -> None:
            self.status["nats"] = state

        self.bus = await Bus.open(self.cfg.nats.url, service=self.name, subjects=self.subjects,
                                  connect_timeout=self.cfg.nats.connect_timeout_s, on_state=on_state)
        self.status["nats"] = "connected"
        self.log.info("connected to NATS %s (namespace %r)", self.cfg.nats.url, self.subjects.namespace)
        return self.bus

    async def sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; True when the service should stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), timeout=seconds)
        return self.stop.is_set()


def _handler(ctx: ServiceContext) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                body, ctype, code = generate_latest(ctx.registry), CONTENT_TYPE_LATEST, 200
            elif self.path.startswith("/healthz"):
                ok = ctx.healthy()
                body = json.dumps({"service": ctx.name, "status": "ok" if ok else "unavailable",
                                   "ready": ctx.ready, **ctx.status}, default=str).encode()
                ctype, code = "application/json", 200 if ok else 503
            else:
                body, ctype, code = b"not found\n", "text/plain", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def start_endpoints(ctx: ServiceContext, host: str, ports: set[int]) -> list[ThreadingHTTPServer]:
    servers = []
    for port in sorted(p for p in ports if p):
        server = ThreadingHTTPServer((host, port), _handler(ctx))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name=f"http-{port}", daemon=True).start()
        servers.append(server)
    return servers


def service_ports(cfg: AppConfig, name: str, env: dict[str, str] | os._Environ[str]) -> tuple[int, int]:
    section = getattr(cfg, name, None)
    metrics_port = int(env.get("METRICS_PORT") or getattr(section, "metrics_port", 0) or 0)
    health_port = int(env.get("HEALTH_PORT") or getattr(section, "health_port", 0) or 0)
    return metrics_port, (health_port or metrics_port)


def setup_logging(name: str, level: str) -> logging.Logger:
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, level.upper(), logging.INFO),
                        format=f"%(asctime)s {name} %(levelname)s %(message)s", force=True)
    logging.getLogger("nats").setLevel(logging.CRITICAL)
    return logging.getLogger(f"tidegate.{name}")


def parse_args(name: str, argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog=f"python -m tidegate.services.{name}")
    ap.add_argument("--config", default=os.environ.get("TIDEGATE_CONFIG", str(REPO / "config" / "app.yml")),
                    help="configuration file (default: config/app.yml or $TIDEGATE_CONFIG)")
    ap.add_argument("--host", default="127.0.0.1", help="address of /metrics and /healthz")
    ap.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    return ap.parse_args(argv)


def build_context(name: str, cfg: AppConfig, config_path: Path, log: logging.Logger) -> ServiceContext:
    registry = CollectorRegistry()
    metrics = catalogue.build(registry, name)
    return ServiceContext(name=name, cfg=cfg, config_path=config_path, registry=registry, metrics=metrics,
                          subjects=Subjects(cfg.nats.namespace), counters=MessageCounters(name, metrics), log=log)


async def settle_heap_when_ready(ctx: ServiceContext) -> None:
    """Freeze the start-up heap out of the collector's sight once the service is ready (see the module doc)."""
    while not ctx.ready and not ctx.stop.is_set():
        await asyncio.sleep(0.05)
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run_service(name: str, serve: Callable[[ServiceContext], Awaitable[None]],
                argv: list[str] | None = None) -> int:
    args = parse_args(name, argv)
    log = setup_logging(name, args.log_level)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    ctx = build_context(name, cfg, Path(args.config), log)
    metrics_port, health_port = service_ports(cfg, name, os.environ)
    servers = start_endpoints(ctx, args.host, {metrics_port, health_port})
    log.info("starting (mode=%s, metrics :%s, health :%s, config %s)", cfg.exchange.mode, metrics_port,
             health_port, args.config)

    async def amain() -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, ctx.stop.set)
        settle = asyncio.create_task(settle_heap_when_ready(ctx))
        try:
            await serve(ctx)
        finally:
            settle.cancel()
            if ctx.bus is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ctx.bus.close(), timeout=15)
        return 0

    try:
        rc = asyncio.run(amain())
    except Exception:
        log.exception("crashed")
        rc = 1
    for server in servers:
        server.shutdown()
    log.info("stopped (rc=%d)", rc)
    return rc
