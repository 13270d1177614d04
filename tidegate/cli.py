"""The ``tidegate`` command. Subcommands are thin: parse arguments, call the package, print."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from tidegate import __version__

DEFAULT_CONFIG = "config/app.yml"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tidegate")
def main() -> None:
    """tidegate: progressive delivery of ML trade scorers (shadow -> canary -> ramp -> full)."""


@main.group()
def config() -> None:
    """Inspect and validate config/app.yml."""


@config.command("validate")
@click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="configuration file")
def config_validate(config_path: Path) -> None:
    """Report every problem in the configuration with its field path; exit 1 if any."""
    from tidegate.config import validate_config_file

    problems = validate_config_file(config_path)
    if problems:
        click.echo(f"{config_path}: {len(problems)} problem(s)", err=True)
        for problem in problems:
            click.echo(f"  - {problem}", err=True)
        sys.exit(1)
    click.echo(f"{config_path}: OK")


@config.command("show")
@click.option("--config", "config_path", default=DEFAULT_CONFIG, show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="configuration file")
def config_show(config_path: Path) -> None:
    """Print the effective configuration (defaults filled in, variables resolved) as YAML."""
    import yaml

    from tidegate.config import ConfigError, load_config

    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    click.echo(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


from tidegate.release.cli import release as _release_group  # noqa: E402  (release run|status|promote|...)

main.add_command(_release_group)

from tidegate.pipeline.cli import data as _data_group  # noqa: E402  (data dump|label|train|parity|register|scan-gaps)

main.add_command(_data_group)

from tidegate.refdocs.cli import docs as _docs_group  # noqa: E402  (docs generate [--check])

main.add_command(_docs_group)

from tidegate.rollout.cli import rollout as _rollout_group  # noqa: E402  (rollout show|set)

main.add_command(_rollout_group)

from tidegate.report.cli import report as _report_command  # noqa: E402  (release report NAME)

_release_group.add_command(_report_command)

from tidegate.alerts.cli import control as _control_group  # noqa: E402  (control crit|bridge)

main.add_command(_control_group)

from tidegate.venue.cli import venue as _venue_group  # noqa: E402  (venue emulate)

main.add_command(_venue_group)



@main.command()
@click.option("--inject", type=click.Choice(["winrate", "drift", "parity", "prometheus-outage"]), default=None,
              help="break one real thing mid-release and watch the automatic rollback (or hold)")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=Path(".tidegate/demo"),
              show_default=True, help="where the run keeps its registry, logs, state and report")
@click.option("--speed", type=float, default=None, help="market replay speed factor (default: the scenario's)")
@click.option("--quick", is_flag=True, help="shorter stages (used by the test suite)")
def demo(inject: str | None, workdir: Path, speed: float | None, quick: bool) -> None:
    """Run a release locally: nats-server, Prometheus, every service in paper mode, shadow -> full."""
    from tidegate.demo.run import DemoOptions, run_demo

    try:
        result = run_demo(DemoOptions(inject=inject, workdir=workdir, speed=speed, quick=quick))
    except KeyboardInterrupt:
        click.echo("interrupted: every process the demo started has been stopped", err=True)
        sys.exit(130)
    sys.exit(0 if result.expected else 1)

@main.group()
def operator() -> None:
    """The Kubernetes operator: CRD generation (run it with `kopf run -m tidegate.operator.main`)."""


@operator.command("crd")
@click.option("--check", "check_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="compare with this file instead of printing; exit 1 when it differs")
def operator_crd(check_path: Path | None) -> None:
    """Print the ModelRelease CRD generated from the release spec model."""
    from tidegate.operator.crd import render_crd

    text = render_crd()
    if check_path is None:
        click.echo(text, nl=False)
        return
    if check_path.read_text() != text:
        click.echo(f"{check_path} differs from the spec model; regenerate: tidegate operator crd > {check_path}",
                   err=True)
        sys.exit(1)
    click.echo(f"{check_path}: up to date")


if __name__ == "__main__":
    main()
