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
