#!/usr/bin/env python3
"""Regime-specific thresholds: precision-first tau_entry / tau_hold per market regime.

Scores the labelled rows of the validation and test slices with the model's ONNX
file (the artifact that serves), then applies the same precision-first rule as
training to each regime separately. Writes ``<model_dir>/thresholds_by_regime.json``.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click
import numpy as np


@click.command()
@click.option("--model-dir", default="models/latest", show_default=True,
              type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--data", "data_path", default="data/training.parquet", show_default=True,
              type=click.Path(path_type=Path, exists=True))
@click.option("--min-rows", default=200, show_default=True, help="regimes with fewer rows keep the global thresholds")
def main(model_dir: Path, data_path: Path, min_rows: int) -> None:
    from tidegate.atomic import atomic_write_json
    from tidegate.features.schema import FEATURE_NAMES
    from tidegate.pipeline.evaluate import choose_thresholds
    from tidegate.pipeline.parity import onnx_proba, onnx_session
    from tidegate.pipeline.train import _label_params, load_training, read_metadata, time_split

    meta = read_metadata(model_dir)
    table = load_training(data_path)
    lp = _label_params(table)
    t = table.column("local_ns").to_numpy()
    _, va, te = time_split(t, (lp.latency_ms + lp.fill_horizon_ms + lp.markout_ms + lp.sample_ms) * 1_000_000)
    sel = va | te
    x = np.column_stack([table.column(n).to_numpy().astype(np.float32) for n in FEATURE_NAMES])[sel]
    y = table.column("label").to_numpy().astype(np.int64)[sel]
    regimes = np.asarray(table.column("regime").to_pylist(), object)[sel]
    p = onnx_proba(onnx_session(model_dir / "model.onnx"), x)
    global_th = meta["thresholds"]
    out: dict[str, object] = {"model_id": meta["id"], "global": global_th, "regimes": {}}
    for regime in sorted(set(regimes)):
        m = regimes == regime
        if m.sum() < min_rows or y[m].sum() == 0:
            out["regimes"][regime] = {**global_th, "rows": int(m.sum()), "source": "global (too few rows)"}  # type: ignore[index]
            continue
        c = choose_thresholds(y[m], p[m])
        out["regimes"][regime] = {"tau_entry": c.tau_entry, "tau_hold": c.tau_hold,  # type: ignore[index]
                                  "precision": c.precision_entry, "support": c.support_entry, "rows": int(m.sum()),
                                  "positive_rate": float(y[m].mean()), "source": "regime"}
    atomic_write_json(model_dir / "thresholds_by_regime.json", out)
    click.echo(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
