#!/usr/bin/env python3
"""Regime-specific thresholds: precision-first tau_entry / tau_hold per market regime.

Labels every row with its regime (synthetic rows keep theirs; recorded rows are
classified by window exactly as scripts/canary_pipeline.py classifies its replay
days, with ``canary_pipeline.replay_window`` / ``high_vol_quantile`` /
``event_quantile`` from the config), splits by time as training does, chooses
each regime's thresholds on its **validation** rows with training's
precision-first rule, scores with the model's ONNX file (the artifact that
serves) and reports each regime's **test** rows at the chosen thresholds (test
rows never choose). Writes ``<model_dir>/thresholds_by_regime.json``.
See tidegate/pipeline/regime_thresholds.py.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click


@click.command()
@click.option("--model-dir", default="models/latest", show_default=True,
              type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--data", "data_path", default="data/training.parquet", show_default=True,
              type=click.Path(path_type=Path, exists=True))
@click.option("--config", "config_path", default="config/app.yml", show_default=True,
              type=click.Path(path_type=Path), help="canary_pipeline.* sets the regime windows")
@click.option("--min-rows", default=200, show_default=True,
              help="regimes with fewer validation rows keep the global thresholds")
def main(model_dir: Path, data_path: Path, config_path: Path, min_rows: int) -> None:
    from tidegate.atomic import atomic_write_json
    from tidegate.config.loader import load_config_or_exit
    from tidegate.pipeline.regime_thresholds import build_regime_thresholds

    cp = load_config_or_exit(config_path).canary_pipeline
    out = build_regime_thresholds(data_path, model_dir, window_s=cp.replay_window,
                                  high_vol_quantile=cp.high_vol_quantile, event_quantile=cp.event_quantile,
                                  min_rows=min_rows)
    atomic_write_json(model_dir / "thresholds_by_regime.json", out)
    click.echo(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
