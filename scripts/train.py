#!/usr/bin/env python3
"""Same command as the repo-root `train.py` (the seed's spelling); kept here for the CI pipeline."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tidegate.pipeline.cli import train_cmd

if __name__ == "__main__":
    train_cmd()
