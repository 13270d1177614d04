#!/usr/bin/env python3
"""Regenerate docs/configuration.md and docs/metrics.md from the code (``--check``: only compare).

A thin wrapper over ``tidegate docs generate``; kept as a script so the docs can be
refreshed from a checkout without the console entry point installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tidegate.cli import main

if __name__ == "__main__":
    main(["docs", "generate", *sys.argv[1:]])
