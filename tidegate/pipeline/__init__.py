"""Training pipeline: parquet dump, labelling, LightGBM training, ONNX export, parity, model card.

Entry points for other parts of tidegate:
  train_end_to_end(output_dir, ...) -> Path      synthetic/capture -> trained, parity-checked model dir (< 30 s)
  train_model(data, output_dir, degrade=False)   training table -> model dir; degrade=True: a worse candidate
  check_parity(model_dir) -> ParityReport        .ok .max_abs_diff .flips .worst .summary()
"""

from tidegate.pipeline.e2e import train_end_to_end
from tidegate.pipeline.parity import ParityReport, check_parity
from tidegate.pipeline.train import ParityFailure, TrainParams, train_model

__all__ = ["ParityFailure", "ParityReport", "TrainParams", "check_parity", "train_end_to_end", "train_model"]
