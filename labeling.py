"""Seed entry point: ``python labeling.py`` (= ``tidegate data label``): parquet -> data/training.parquet."""

from tidegate.pipeline.cli import label_cmd

if __name__ == "__main__":
    label_cmd()
