"""The whole chain in one call, for the demo, release validation and tests: market -> parquet -> labels -> model."""

from __future__ import annotations

import tempfile
from pathlib import Path

from tidegate.market.capture import list_captures, read_capture
from tidegate.market.synthetic import generate_days
from tidegate.pipeline.dump import dump, read_parquet
from tidegate.pipeline.labeling import LabelParams, label_table
from tidegate.pipeline.train import TrainParams, train_model

DEFAULT_TRAIN = TrainParams()
DEFAULT_LABELS = LabelParams()


def train_end_to_end(output_dir: str | Path, *, capture_dir: str | Path | None = None, seed: int = 7,
                     seconds: float = 100.0, cycles: int = 4, degrade: bool = False, model_id: str | None = None,
                     params: TrainParams = DEFAULT_TRAIN, label_params: LabelParams = DEFAULT_LABELS,
                     work_dir: str | Path | None = None, notes: str = "") -> Path:
    """Train a small model from the capture (when ``capture_dir`` has files) or from synthetic regimes.

    Synthetic defaults (4 cycles x 3 regimes x 100 s) take ~2-4 s on 2 cores. Returns the model directory.
    """
    files = list_captures(capture_dir) if capture_dir is not None and Path(capture_dir).is_dir() else []
    frames = [read_capture(p) for p in files] if files else generate_days(seed=seed, duration_s=seconds,
                                                                          cycles=cycles)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        dump(Path(tmp) / "parquet", frames)
        table = label_table(read_parquet(Path(tmp) / "parquet"), label_params)
    return train_model(table, output_dir, params=params, model_id=model_id, degrade=degrade, notes=notes)
