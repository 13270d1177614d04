#!/usr/bin/env python3
"""Simulate a candidate model against the active one on normal/event/high-vol days; exit 0 iff every gate passes.

Days: synthetic regimes always (seeded apart from training), the recorded capture
(``data.capture_dir``, default ../shared/data/capture) when present, its windows
classified into the same regimes. Gates (release checklist): win rate >= target,
avg markout >= 0, fill rate >= minimum, plus the candidate may not trail the
active model's win rate by more than ``rollout_guard.winrate_delta_pp``.
Limits come from ``canary_pipeline`` and ``rollout_guard`` in config/app.yml.

    scripts/canary_pipeline.py --model-id ID [--active-id ID | --no-active] --registry models/registry
        [--config config/app.yml] [--out report.json] [--days synthetic --days replay:*20240809*]

Exit codes: 0 every gate passed; 1 a gate failed or there was not enough evidence;
2 the canary could not run (unknown or refused model, bad --days, missing capture
when replay days were asked for). The JSON report goes to --out (and stdout
without --out); the last stdout line is the one-line summary.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click


@click.command()
@click.option("--model-id", required=True, help="candidate model id in the registry")
@click.option("--active-id", default=None, help="model to compare with (default: the registry's active slot)")
@click.option("--no-active", is_flag=True, help="do not compare with any active model")
@click.option("--registry", "registry_root", default="models/registry", show_default=True,
              type=click.Path(path_type=Path))
@click.option("--config", "config_path", default="config/app.yml", show_default=True,
              type=click.Path(path_type=Path))
@click.option("--capture-dir", default=None, type=click.Path(path_type=Path),
              help="recorded capture (default: data.capture_dir from the config)")
@click.option("--out", default=None, type=click.Path(path_type=Path), help="write the JSON report here")
@click.option("--days", multiple=True,
              help="synthetic | synthetic:REGIME | replay | replay:FILE_GLOB (repeatable; default synthetic "
                   "+ replay when the capture is present)")
def main(model_id: str, active_id: str | None, no_active: bool, registry_root: Path, config_path: Path,
         capture_dir: Path | None, out: Path | None, days: tuple[str, ...]) -> None:
    from tidegate.atomic import atomic_write_json
    from tidegate.config import load_config
    from tidegate.pipeline.canary_run import CanaryError, run_canary
    from tidegate.registry import Registry

    try:
        cfg = load_config(config_path) if config_path.is_file() else None
        if cfg is None:
            from tidegate.config.schema import AppConfig

            cfg = AppConfig()
        run = run_canary(Registry(registry_root), model_id, cfg=cfg, active_id=active_id,
                         use_active_slot=not no_active,
                         capture_dir=capture_dir if capture_dir is not None else Path(cfg.data.capture_dir),
                         days=list(days) or None)
    except (CanaryError, ValueError) as exc:
        click.echo(f"canary_pipeline: {exc}", err=True)
        sys.exit(2)
    if out is not None:
        atomic_write_json(out, run.report)
    else:
        click.echo(json.dumps(run.report, indent=2))
    click.echo(run.summary)
    sys.exit(0 if run.passed else 1)


if __name__ == "__main__":
    main()
