#!/usr/bin/env python3
"""Report missing partitions / time gaps in the parquet archive; exit 1 past the threshold."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tidegate.pipeline.cli import scan_gaps_cmd

if __name__ == "__main__":
    scan_gaps_cmd()
