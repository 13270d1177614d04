"""``tidegate control crit|bridge``: raise the executor's fail-safe by hand, or from Alertmanager."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

DEFAULT_CONFIG = "config/app.yml"


@click.group()
def control() -> None:
    """Control events on NATS (control.events): CRIT trips the executor's fail-safe (paper only)."""


@control.command("crit")
@click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True, type=click.Path(path_type=Path))
@click.option("--reason", required=True, help="why (kept in the event's detail and the executor's log)")
def crit_cmd(config_path: Path, reason: str) -> None:
    """Publish one CRIT now: every executor routes all executions to paper for executor.fail_safe_cooldown."""
    from tidegate.alerts.bridge import ControlUnavailable, raise_crit
    from tidegate.config.loader import load_config_or_exit

    cfg = load_config_or_exit(config_path)
    if not reason.strip():
        click.echo("control crit: --reason must not be empty", err=True)
        sys.exit(2)
    try:
        subject, seq = raise_crit(cfg, reason)
    except ControlUnavailable as exc:
        click.echo(f"control crit: {exc}; the fail-safe was NOT raised", err=True)
        sys.exit(3)
    click.echo(f"CRIT published on {subject} (stream seq {seq}): executors route to paper for "
               f"{cfg.executor.fail_safe_cooldown:.0f}s")


@control.command("bridge")
@click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True, type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="listen address (0.0.0.0 only where Alertmanager runs on another host or pod)")
@click.option("--port", type=click.IntRange(0, 65535), default=9106, show_default=True,  # bridge.DEFAULT_PORT
              help="listen port (0: any free port)")
@click.option("--log-level", default="INFO", show_default=True)
def bridge_cmd(config_path: Path, host: str, port: int, log_level: str) -> None:
    """Serve the Alertmanager webhook (POST /alertmanager): firing critical alerts become CRIT events."""
    from tidegate.alerts.bridge import ControlUnavailable, run_bridge
    from tidegate.config.loader import load_config_or_exit

    cfg = load_config_or_exit(config_path)
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s alert_bridge %(levelname)s %(message)s")
    logging.getLogger("nats").setLevel(logging.CRITICAL)
    try:
        run_bridge(cfg, host=host, port=port)
    except ControlUnavailable as exc:
        click.echo(f"control bridge: {exc}", err=True)
        sys.exit(3)
    except OSError as exc:  # the port is taken, the address is not local
        click.echo(f"control bridge: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
        sys.exit(2)
