"""Training pipeline: parquet dump, labelling, LightGBM training, ONNX export, parity, model card.

Entry points for other parts of tidegate:
  train_end_to_end(output_dir, ...) -> Path      synthetic/capture -> trained, parity-checked model dir (< 30 s)
  train_model(data, output_dir, degrade=False)   training table -> model dir; degrade=True: a worse candidate
  check_parity(model_dir) -> ParityReport        .ok .max_abs_diff .flips .worst .summary()

Imported lazily (PEP 562): training pulls in LightGBM, scikit-learn and ONNX (about 3 s),
which ``tidegate --help`` and every submodule import (``tidegate.pipeline.dump``) would
otherwise pay for.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"train_end_to_end": "e2e", "ParityReport": "parity", "check_parity": "parity",
            "ParityFailure": "train", "TrainParams": "train", "train_model": "train"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"tidegate.pipeline.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'tidegate.pipeline' has no attribute {name!r}")
