"""``tidegate docs generate [--check]``: refresh or verify the generated reference pages."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.group("docs")
def docs() -> None:
    """Generated documentation (configuration and metrics references)."""


@docs.command("generate")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=".", show_default=True,
              help="repository root (docs/ and config/ live under it)")
@click.option("--check", is_flag=True, help="write nothing; exit 1 if a committed page differs from the code")
def generate(root: Path, check: bool) -> None:
    """Write docs/configuration.md and docs/metrics.md from the schema and the metric catalogue."""
    from tidegate.refdocs import generate as pages
    from tidegate.refdocs import stale, write

    if check:
        out_of_date = stale(root)
        for rel in out_of_date:
            click.echo(f"{rel}: out of date (run `tidegate docs generate`)", err=True)
        if out_of_date:
            sys.exit(1)
        click.echo(f"generated docs up to date: {', '.join(pages(root))}")
        return
    written = write(root)
    click.echo("wrote " + ", ".join(written) if written else "generated docs already up to date")
