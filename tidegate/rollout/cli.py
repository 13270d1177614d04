"""``tidegate rollout show|set``: read or change the live rollout state the executor and ai_scorer route by."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

DEFAULT_CONFIG = "config/app.yml"


@click.group()
def rollout() -> None:
    """The live rollout state in NATS KV (mode, canary fraction, active and candidate models)."""


@rollout.command("show")
@click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True, type=click.Path(path_type=Path))
def show_cmd(config_path: Path) -> None:
    """The stored state and the effective one (under config/app.yml's rollout block), as JSON."""
    from tidegate.config.loader import load_config_or_exit
    from tidegate.rollout.manual import LiveStateUnavailable, read_states

    cfg = load_config_or_exit(config_path)
    try:
        stored, effective = read_states(cfg)
    except LiveStateUnavailable as exc:
        click.echo(f"rollout: {exc}", err=True)
        sys.exit(3)
    click.echo(json.dumps({"stored": stored.model_dump() if stored else None, "effective": effective.model_dump()},
                          indent=2))


@rollout.command("set")
@click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True, type=click.Path(path_type=Path))
@click.option("--mode", type=click.Choice(["disabled", "canary", "full"]), default=None,
              help="disabled: paper only; canary: a fraction to the candidate; full: everything")
@click.option("--canary-fraction", type=click.FloatRange(0.0, 1.0), default=None)
@click.option("--active-id", default=None, help="model the paper and full routes score with (must be registered)")
@click.option("--reason", required=True, help="why (kept in the state and shown by `rollout show`)")
def set_cmd(config_path: Path, mode: str | None, canary_fraction: float | None, active_id: str | None,
            reason: str) -> None:
    """Change the stored state now (every service follows within milliseconds). Pause a running release first."""
    from tidegate.config.loader import load_config_or_exit
    from tidegate.registry import Registry
    from tidegate.rollout.manual import LiveStateUnavailable, set_state

    cfg = load_config_or_exit(config_path)
    changes: dict[str, object] = {k: v for k, v in (("mode", mode), ("canary_fraction", canary_fraction),
                                                     ("active_model_id", active_id)) if v is not None}
    if not changes:
        click.echo("rollout set: nothing to change (give --mode, --canary-fraction or --active-id)", err=True)
        sys.exit(2)
    if active_id is not None and not Registry(Path(cfg.registry.root)).has(active_id):
        click.echo(f"rollout set: --active-id {active_id!r} is not in the registry at {cfg.registry.root}", err=True)
        sys.exit(2)
    try:
        change = set_state(cfg, reason=f"manual: {reason}", **changes)
    except LiveStateUnavailable as exc:
        click.echo(f"rollout: {exc}; nothing changed", err=True)
        sys.exit(3)
    before = change.before.model_dump() if change.before else {}
    after = change.after.model_dump() if change.after else {}
    for key in ("mode", "canary_fraction", "active_model_id"):
        if before.get(key) != after.get(key):
            click.echo(f"{key}: {before.get(key)} -> {after.get(key)}")
    click.echo(f"revision {after.get('revision')}")
    if cfg.rollout.mode == "disabled" and after.get("mode") != "disabled":
        click.echo("note: config/app.yml rollout.mode is 'disabled', which overrides this mode in every service",
                   err=True)


@rollout.command("supervise")
@click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True, type=click.Path(path_type=Path))
@click.option("--interval", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="seconds between looks at the rollback gates")
@click.option("--metrics-port", type=int, default=None,
              help="serve rollback_total / mode_switch_total on 127.0.0.1:PORT (default: none)")
@click.option("--host", default="127.0.0.1", show_default=True, help="address of /metrics")
@click.option("--once", is_flag=True, help="one look, then exit (exit 1 if it rolled the canary back)")
@click.option("--count-releases", is_flag=True,
              help="also count every release engine's MODE_SWITCH and rollback seen on control:events "
                   "(for a Prometheus that scrapes this supervisor and not the engines, as in compose)")
def supervise_cmd(config_path: Path, interval: float, metrics_port: int | None, host: str, once: bool,
                  count_releases: bool) -> None:
    """Supervise a canary that config started (no release): roll it back on the seed's three conditions.

    Win rate against the live baseline, ONNX parity and PSI/KS drift, judged in Prometheus with
    rollout_guard; on a FAIL the stored state goes to mode disabled (paper only) with the reason.
    A canary started by a ModelRelease is left to its release engine.
    """
    import asyncio
    import logging
    import signal

    from prometheus_client import CollectorRegistry, start_http_server

    from tidegate.config.loader import load_config_or_exit
    from tidegate.metrics import build
    from tidegate.registry import Registry
    from tidegate.release.local import prometheus_timeout
    from tidegate.release.prometheus import PrometheusProvider
    from tidegate.rollout.supervisor import run_supervisor

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = load_config_or_exit(config_path)
    reg = CollectorRegistry()
    metrics = build(reg, "release")
    if metrics_port:
        start_http_server(metrics_port, addr=host, registry=reg)
    provider = PrometheusProvider(cfg.prometheus.url, timeout=prometheus_timeout(None, cfg))

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        taken = await run_supervisor(cfg, provider, Registry(Path(cfg.registry.root)), stop, interval=interval,
                                     metrics=metrics, once=once, count_releases=count_releases)
        for d in taken:
            click.echo(d.reason)
        return 1 if (once and taken) else 0

    try:
        rc = asyncio.run(main())
    finally:
        provider.close()
    sys.exit(rc)
