"""ONNX parity: the float32-threshold bug is real without the fix, gone with it, and the gate reports it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from tidegate.pipeline import check_parity, train_end_to_end
from tidegate.pipeline.export import convert, float32_floor


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_end_to_end(tmp_path_factory.mktemp("parity") / "model", seconds=60, cycles=3, model_id="parity-m")


def test_float32_floor_is_the_largest_float32_not_above() -> None:
    for t in (0.1, -0.1, 1.0, 15.500000000000002, 1e-35, 123456.789):
        f = float32_floor(t)
        assert float(f) <= t < float(np.nextafter(f, np.float32(np.inf)))


def test_fixed_export_passes_with_threshold_rows(model_dir: Path) -> None:
    report = check_parity(model_dir)
    assert report.ok, report.summary()
    assert report.threshold_rows >= 50 and report.max_abs_diff <= 1e-5 and report.flips == 0
    assert any(w.kind.startswith("threshold") for w in report.worst) or report.max_abs_diff < 1e-6


def test_unfixed_converter_output_fails_on_threshold_rows(model_dir: Path, tmp_path: Path) -> None:
    import lightgbm as lgb

    booster = lgb.Booster(model_file=str(model_dir / "artifacts" / "model.lgbm.txt"))
    raw = convert(booster, booster.num_feature())
    onnx.save(raw, tmp_path / "unfixed.onnx")
    report = check_parity(model_dir, onnx_path=tmp_path / "unfixed.onnx")
    assert not report.ok
    assert report.max_abs_diff > 1e-5
    assert report.worst[0].kind.startswith("threshold")  # held-out rows alone would not catch it


def test_a_different_model_fails_parity_and_the_cli_exits_nonzero(model_dir: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tidegate.cli import main

    other = train_end_to_end(tmp_path / "other", seconds=60, cycles=3, seed=99, degrade=True, model_id="other")
    tampered = tmp_path / "tampered"
    shutil.copytree(model_dir, tampered)
    shutil.copy(other / "model.onnx", tampered / "model.onnx")
    result = CliRunner().invoke(main, ["data", "parity", str(tampered)])
    assert result.exit_code == 1 and "parity FAIL" in result.output
    ok = CliRunner().invoke(main, ["data", "parity", str(model_dir)])
    assert ok.exit_code == 0 and "parity PASS" in ok.output
