"""Seed entry point: ``python dump_market_to_parquet.py --config config/app.yml`` (= ``tidegate data dump``)."""

from tidegate.pipeline.cli import dump_cmd

if __name__ == "__main__":
    dump_cmd()
