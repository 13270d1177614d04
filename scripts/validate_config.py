#!/usr/bin/env python3
"""Check that config/app.yml satisfies the pydantic schema (seed: scripts/validate_config.py).

Prints every problem with its field path and exits 1; exits 0 when the file is valid.
Equivalent to ``tidegate config validate``.
"""

from __future__ import annotations

import sys

from tidegate.cli import main

if __name__ == "__main__":
    sys.exit(main(["config", "validate", *sys.argv[1:]]))
