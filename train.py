"""Seed entry point: ``python train.py --data data/training.parquet --output-dir models/latest``."""

from tidegate.pipeline.cli import train_cmd

if __name__ == "__main__":
    train_cmd()
