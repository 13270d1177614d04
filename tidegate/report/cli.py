"""``tidegate release report NAME``: write the release's HTML report and print where it is."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("report")
@click.argument("name")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=".tidegate/releases",
              show_default=True, envvar="TIDEGATE_STATE_DIR", help="local driver state directory")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="HTML file to write (default: <state-dir>/<name>/report.html)")
@click.option("--prometheus", "prometheus_url", metavar="URL",
              help="add range data (gate values, win rate by route, score distributions) from this Prometheus")
@click.option("--config", "config_path", default="config/app.yml", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="guard-rail defaults (rollout_guard) for fields the release leaves unset")
def report(name: str, state_dir: Path, out: Path | None, prometheus_url: str | None, config_path: Path) -> None:
    """One HTML page with PNG charts: win rate by route against the baseline band, each gate against its
    threshold over time with the stage timeline and decisions, score distributions of active vs shadow."""
    from tidegate.config import ConfigError, load_config
    from tidegate.report import ReportSourceError, write_report

    guard = None
    if config_path.is_file():
        try:
            guard = load_config(config_path).rollout_guard
        except ConfigError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
    try:
        path = write_report(state_dir, name, out, prometheus_url=prometheus_url, guard_defaults=guard)
    except ReportSourceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"report written: {path.resolve()}")
