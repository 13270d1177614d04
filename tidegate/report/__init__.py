"""The release report: one HTML page with PNG charts an operator can attach to a change ticket.

``write_report`` is the whole pipeline: read the release from the local driver's
state directory (optionally densified with Prometheus range data), draw the
charts, write the page atomically. The modules split along the same seams:
``timeline`` (pure: decision log -> stages, gate tracks), ``sources`` (state
directory, Prometheus), ``charts`` (matplotlib), ``page`` (HTML).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tidegate.atomic import atomic_write_text
from tidegate.config.schema import RolloutGuardConfig
from tidegate.report.charts import render_all
from tidegate.report.model import ReportData
from tidegate.report.page import render_html
from tidegate.report.sources import ReportSourceError, add_prometheus, from_state_dir, prometheus_client

__all__ = ["ReportData", "ReportSourceError", "default_report_path", "write_report"]


def default_report_path(state_dir: Path, name: str) -> Path:
    return Path(state_dir) / name / "report.html"


def write_report(state_dir: Path, name: str, out: Path | None = None, *, prometheus_url: str | None = None,
                 guard_defaults: RolloutGuardConfig | None = None, now: dt.datetime | None = None) -> Path:
    """Render the report of release ``name``; return the path of the HTML file written."""
    data, _release, limits = from_state_dir(state_dir, name, guard_defaults=guard_defaults, now=now)
    if prometheus_url:
        data = add_prometheus(data, limits, prometheus_client(prometheus_url))
    page = render_html(data, render_all(data))
    path = Path(out) if out is not None else default_report_path(state_dir, name)
    atomic_write_text(path, page)
    return path
