"""kopf handlers: a daemon per ModelRelease and a finalizer that leaves routing safe.

``kopf run -m tidegate.operator.main`` registers them on kopf's default registry;
tests call :func:`register` with their own registry and context.

- daemon: runs :class:`ReleaseRunner` in a thread (kopf sync daemon) for as long as
  the resource exists; kopf restarts it after an operator restart, and the runner
  resumes from ``.status`` at the same stage. Peering (``--peering``) makes only one
  operator replica run daemons at a time: the one with the highest priority
  (:func:`peering_settings`); a standby takes over when the active one's record expires.
- delete: a release deleted mid-flight is aborted first -- previous model active,
  rollout mode disabled, MODE_SWITCH emitted -- then the finalizer is released.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import kopf

from tidegate.operator.crd import GROUP, PLURAL, VERSION
from tidegate.operator.runner import OperatorContext, ReleaseRunner

log = logging.getLogger(__name__)


def context_from_env() -> OperatorContext:
    """Configuration of a deployed operator: TIDEGATE_CONFIG (app.yml), env interpolation."""
    from tidegate.config import load_config
    from tidegate.config.schema import AppConfig

    path = os.environ.get("TIDEGATE_CONFIG", "config/app.yml")
    app = load_config(path) if Path(path).is_file() else AppConfig()
    return OperatorContext(app=app, registry_root=Path(app.registry.root),
                           repo_root=Path(os.environ.get("TIDEGATE_REPO_ROOT", ".")))


def peering_settings(env: Mapping[str, str], priority: int, lifetime: int) -> tuple[int, int]:
    """(priority, lifetime) of this replica's peering record.

    kopf pauses *every* operator that sees a live peer of the same priority, so
    replicas of one Deployment, all at the default 0, would freeze each other and
    serve nothing. Unless ``TIDEGATE_OPERATOR_PRIORITY`` or ``--priority`` says
    otherwise, each replica therefore draws a random priority: the highest one
    acts, the others stand by and take over once its record is ``lifetime``
    seconds stale (``TIDEGATE_PEERING_LIFETIME``; kopf's default 60).
    """
    raw = env.get("TIDEGATE_OPERATOR_PRIORITY")
    if raw:
        priority = _env_int("TIDEGATE_OPERATOR_PRIORITY", raw)
    elif priority == 0:
        priority = secrets.randbelow(1_000_000) + 1
    raw_life = env.get("TIDEGATE_PEERING_LIFETIME")
    if raw_life:
        lifetime = _env_int("TIDEGATE_PEERING_LIFETIME", raw_life)
        if lifetime < 2:
            raise ValueError(f"TIDEGATE_PEERING_LIFETIME must be >= 2 seconds, got {lifetime}")
    return priority, lifetime


def _env_int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def register(registry: kopf.OperatorRegistry, context: Callable[[], OperatorContext]) -> None:
    state: dict[str, Any] = {}

    def ctx() -> OperatorContext:
        if "ctx" not in state:
            state["ctx"] = context()
        return state["ctx"]

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """In a pod: the ServiceAccount; elsewhere: KUBECONFIG (via the kubernetes client)."""
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.level = logging.WARNING       # decisions are posted as our own Events
        settings.peering.priority, settings.peering.lifetime = peering_settings(
            os.environ, settings.peering.priority, settings.peering.lifetime)
        log.info("peering: priority %d, lifetime %ds", settings.peering.priority, settings.peering.lifetime)
        settings.persistence.finalizer = "tidegate.dev/finalizer"
        settings.watching.server_timeout = 60
        port = os.environ.get("METRICS_PORT")
        if port:
            from prometheus_client import start_http_server

            start_http_server(int(port), registry=ctx().metrics.registry)

    @kopf.daemon(GROUP, VERSION, PLURAL, registry=registry, cancellation_timeout=15.0,
                 initial_delay=0.0, backoff=5.0)
    def release_daemon(body: kopf.Body, stopped: kopf.DaemonStopped, **_: Any) -> None:
        runner = ReleaseRunner(body, ctx(), stopped=stopped)
        asyncio.run(runner.run())

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    def release_deleted(body: kopf.Body, **_: Any) -> None:
        runner = ReleaseRunner(body, ctx(), stopped=False)
        status = asyncio.run(runner.make_safe())
        if status is not None:
            log.info("release %s deleted in phase %s", runner.name, status.phase)

