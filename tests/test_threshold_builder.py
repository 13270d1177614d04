"""scripts/threshold_builder.py: regimes as the canary classifies them, thresholds chosen on validation rows only.

Real data and a real LightGBM model (trained once on synthetic sessions; the
builder scores any table with the same feature schema). The script is run in
process through its click command, as `python scripts/threshold_builder.py` runs it.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from tidegate.market.synthetic import REGIMES, generate_days
from tidegate.pipeline.canary_days import LABELS, labelled_table
from tidegate.pipeline.train import TrainParams, _label_params, load_training, time_split, train_model

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "threshold_builder.py"
CONFIG = REPO / "config" / "app.yml"
CAPTURE = REPO / ".." / "shared" / "data" / "capture"
CAPTURE_FILE = "binance_spot_btcusdt_20240808.gz"  # the smallest recording (~6.7k candidates, ~1 s to label)


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("threshold_builder_script", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def build(model_dir: Path, table: pa.Table, path: Path, *extra: str) -> dict:
    pq.write_table(table, path)
    result = CliRunner().invoke(_script(), ["--model-dir", str(model_dir), "--data", str(path),
                                            "--config", str(CONFIG), *extra], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def as_capture(table: pa.Table) -> pa.Table:
    """The table as a recording looks to the builder: no regime label (``capture``, as read_capture sets)."""
    return table.set_column(table.column_names.index("regime"), "regime",
                            pa.array(np.full(table.num_rows, "capture", object), pa.string()))


def flip_labels(table: pa.Table, mask: np.ndarray) -> pa.Table:
    y = table.column("label").to_numpy().copy()
    y[mask] = 1 - y[mask]
    return table.set_column(table.column_names.index("label"), "label", pa.array(y, table.schema.field("label").type))


def split_masks(table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lp = _label_params(table)
    return time_split(table.column("local_ns").to_numpy(),
                      (lp.latency_ms + lp.fill_horizon_ms + lp.markout_ms + lp.sample_ms) * 1_000_000)


def taus(out: dict) -> dict[str, tuple[float, float]]:
    return {r: (e["tau_entry"], e["tau_hold"]) for r, e in out["regimes"].items()}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table]:
    """Labelled synthetic sessions (normal, event, high-vol, back to back) and a model trained on them."""
    tmp = tmp_path_factory.mktemp("thresholds")
    table = load_training(labelled_table(generate_days(seed=11, duration_s=60, cycles=4), LABELS))
    model = train_model(table, tmp / "model", params=TrainParams(n_estimators=60, early_stopping_rounds=0))
    return model, table


def test_recorded_rows_are_classified_into_several_regimes(synthetic, tmp_path):
    model, table = synthetic
    out = build(model, as_capture(table), tmp_path / "capture.parquet", "--min-rows", "50")
    assert "capture" not in out["regimes"]
    assert set(out["regimes"]) <= set(REGIMES) and len(out["regimes"]) >= 2, out["regimes"]
    assert out["regime_labels"]["classified_rows"] == table.num_rows
    assert any(e["source"].startswith("regime") for e in out["regimes"].values())
    written = json.loads((model / "thresholds_by_regime.json").read_text())
    assert taus(written) == taus(out)


def test_real_capture_gets_the_canary_pipelines_regimes(synthetic, tmp_path):
    path = CAPTURE / CAPTURE_FILE
    if not path.is_file():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and the recorded capture is absent ({path})", pytrace=False)
        pytest.skip(f"the recorded capture is absent ({path})")
    from tidegate.config import load_config
    from tidegate.market.capture import read_capture
    from tidegate.pipeline.canary_days import replay_days
    from tidegate.pipeline.regime_thresholds import label_regimes

    cp = load_config(CONFIG).canary_pipeline
    kw = {"window_s": cp.replay_window, "high_vol_quantile": cp.high_vol_quantile,
          "event_quantile": cp.event_quantile}
    table = load_training(labelled_table([read_capture(path)], LABELS))
    assert set(table.column("regime").to_pylist()) == {"capture"}
    regimes = label_regimes(table, **kw)
    canary = {d.regime: d.rows for d in replay_days([path], **kw)}
    assert len(canary) >= 2
    assert {r: int((regimes == r).sum()) for r in set(regimes)} == canary   # the canary's own partition
    model, _ = synthetic
    out = build(model, table, tmp_path / "capture.parquet", "--min-rows", "50")
    assert set(out["regimes"]) <= set(canary) and len(out["regimes"]) >= 2, out["regimes"]


def test_thresholds_are_chosen_on_validation_rows_and_never_read_test_rows(synthetic, tmp_path):
    model, table = synthetic
    _, va, te = split_masks(table)
    base = build(model, table, tmp_path / "base.parquet", "--min-rows", "50")
    assert base["chosen_on"] == "validation"
    assert base["split"]["validation_rows"] == int(va.sum()) and base["split"]["test_rows"] == int(te.sum())
    chosen = [r for r, e in base["regimes"].items() if e["source"].startswith("regime")]
    assert chosen, base["regimes"]

    test_flipped = build(model, flip_labels(table, te), tmp_path / "test_flipped.parquet", "--min-rows", "50")
    assert taus(test_flipped) == taus(base)                   # inverting every test label changes no choice
    reported = [r for r, e in base["regimes"].items() if "test_positive_rate" in e]
    assert reported and all(test_flipped["regimes"][r]["test_positive_rate"]
                            == pytest.approx(1 - base["regimes"][r]["test_positive_rate"]) for r in reported)

    val_flipped = build(model, flip_labels(table, va), tmp_path / "val_flipped.parquet", "--min-rows", "50")
    assert any(taus(val_flipped)[r] != taus(base)[r] for r in chosen)   # validation labels do choose
