"""The console command exists and lists its subcommands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_tidegate_help_lists_subcommands():
    exe = Path(sys.executable).parent / "tidegate"
    res = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert "Commands:" in res.stdout and "config" in res.stdout


def test_no_top_level_operator_package_shadows_the_stdlib():
    import operator

    assert hasattr(operator, "itemgetter") and "site-packages" not in (operator.__file__ or "")
    repo = Path(__file__).resolve().parents[1]
    assert not (repo / "operator" / "__init__.py").exists()
