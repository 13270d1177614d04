"""The seed's commands (``EXCHANGE_MODE=paper python -m app.executor.main``) reach the real services."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("service", ["collector", "signal_engine", "ai_scorer", "executor", "risk"])
def test_app_shim_runs_the_service_entry_point(service: str) -> None:
    out = subprocess.run([sys.executable, "-m", f"app.{service}.main", "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "EXCHANGE_MODE": "paper"})
    assert out.returncode == 0, out.stderr
    assert f"python -m tidegate.services.{service}" in out.stdout and "--config" in out.stdout


def test_app_shim_reports_a_bad_config_like_the_service(tmp_path: Path) -> None:
    bad = tmp_path / "app.yml"
    bad.write_text("executor:\n  warmup_secondz: 1\n")
    out = subprocess.run([sys.executable, "-m", "app.executor.main", "--config", str(bad)], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "warmup_secondz" in out.stderr
