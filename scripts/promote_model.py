#!/usr/bin/env python3
"""Point the registry's active or shadow slot at a model: ``--to active|shadow --id MODEL_ID``.

Refuses (exit 1, the previous model keeps its slot) a model whose model.onnx does not
hash to model.json's sha256 or whose schema hash differs from the live feature schema.

``--to active`` is also the seed's manual rollback, so it reaches the services: when a
rollout state is stored in NATS KV (``nats`` in --config) and names another active
model, its ``active_model_id`` is rewritten too (tidegate/rollout/manual.py); without
that, every scorer would keep serving the model named there. Exit 3 when NATS cannot
be reached (the registry link has moved, the live state is unknown); ``--registry-only``
skips the live state on purpose (no services running).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click


@click.command()
@click.option("--to", "slot", required=True, type=click.Choice(["active", "shadow"]))
@click.option("--id", "model_id", required=True, help="model id in the registry")
@click.option("--registry", "registry_root", default="models/registry", show_default=True,
              type=click.Path(path_type=Path))
@click.option("--reason", default="manual promote_model.py")
@click.option("--config", "config_path", default="config/app.yml", show_default=True,
              type=click.Path(path_type=Path), help="where NATS and the rollout bucket are (nats.*)")
@click.option("--registry-only", is_flag=True, help="do not touch the live rollout state (no services running)")
def main(slot: str, model_id: str, registry_root: Path, reason: str, config_path: Path, registry_only: bool) -> None:
    from tidegate.registry.promote import PromotionRefused, promote

    try:
        changed, previous = promote(registry_root, slot, model_id, reason=reason)  # type: ignore[arg-type]
    except PromotionRefused as exc:
        click.echo(f"refused: {exc}", err=True)
        sys.exit(1)
    if changed:
        click.echo(f"{slot}: {previous or '(none)'} -> {model_id}")
    else:
        click.echo(f"{slot} already points at {model_id}; nothing changed")
    if slot == "active" and not registry_only:
        _sync_live(config_path, registry_root, model_id, reason)


def _sync_live(config_path: Path, registry_root: Path, model_id: str, reason: str) -> None:
    from tidegate.config import ConfigError, load_config
    from tidegate.registry import Registry
    from tidegate.rollout.manual import LiveStateUnavailable, served_thresholds, sync_active

    thresholds = served_thresholds(Registry(registry_root), model_id)
    try:
        cfg = load_config(config_path)
        change = sync_active(cfg, model_id, reason=f"manual: {reason}", thresholds=thresholds)
    except (ConfigError, LiveStateUnavailable) as exc:
        click.echo(f"live rollout state NOT checked: {exc}. Services following a stored state may still serve "
                   f"another model: when NATS is back run `tidegate rollout set --active-id {model_id} "
                   f"--reason ...` (or pass --registry-only when no services run)", err=True)
        sys.exit(3)
    if change.after is not None and change.before is not None:
        click.echo(f"live rollout state: active {change.before.active_model_id} -> {model_id} "
                   f"(revision {change.after.revision}); thresholds tau_entry {change.after.tau_entry} "
                   f"tau_hold {change.after.tau_hold} (were {change.before.tau_entry}/{change.before.tau_hold})")
    else:
        click.echo("live rollout state: " + ("none stored; services follow the registry link" if change.before is None
                                             else f"already names {model_id}"))


if __name__ == "__main__":
    main()
