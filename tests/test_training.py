"""Training end to end: time split, precision-first thresholds, metadata, benchmark, degraded candidate."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from tidegate.features import FEATURE_NAMES, schema_hash
from tidegate.pipeline import train_end_to_end
from tidegate.pipeline.evaluate import choose_thresholds, reference_bins
from tidegate.pipeline.train import time_split
from tidegate.registry import ModelMetadata

CAPTURE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "capture"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("train")
    good = train_end_to_end(base / "good", model_id="good-1")
    bad = train_end_to_end(base / "bad", model_id="bad-1", degrade=True)
    return good, bad


def test_model_dir_holds_every_artifact_with_consistent_metadata(trained: tuple[Path, Path]) -> None:
    good, _ = trained
    meta = ModelMetadata.model_validate(json.loads((good / "model.json").read_text()))
    assert meta.id == "good-1" and meta.schema_hash == schema_hash()
    assert meta.feature_names == list(FEATURE_NAMES) and set(meta.feature_dtypes) == {"float32"}
    assert meta.sha256 == hashlib.sha256((good / "model.onnx").read_bytes()).hexdigest()
    assert set(meta.regimes) == {"normal", "event", "high-vol"}
    assert 0 < meta.thresholds.tau_hold <= meta.thresholds.tau_entry < 1
    assert set(meta.reference_bins) == set(FEATURE_NAMES)
    assert (good / "artifacts" / "model.lgbm.txt").is_file()
    w = meta.training_window
    assert w["train_end"] < w["validation_start"] <= w["validation_end"] < w["test_start"]
    bench = json.loads((good / "lgbm_meta.json").read_text())
    assert bench["pr_auc"] == meta.metrics["test_pr_auc"] and bench["schema_hash"] == meta.schema_hash


def test_synthetic_model_beats_the_positive_rate_and_the_degraded_candidate(trained: tuple[Path, Path]) -> None:
    good, bad = trained
    g = json.loads((good / "model.json").read_text())["metrics"]
    b = json.loads((bad / "model.json").read_text())["metrics"]
    assert g["test_pr_auc"] > 2 * g["test_positive_rate"]
    assert b["test_pr_auc"] < g["test_pr_auc"]
    assert json.loads((bad / "model.json").read_text())["degraded"] is True


def test_time_split_embargo_leaves_a_gap_before_each_boundary() -> None:
    t = np.arange(10_000, dtype=np.int64) * 1_000_000  # one row per ms
    tr, va, te = time_split(t, embargo_ns=50_000_000)
    assert t[tr].max() + 50_000_000 <= t[va].min() and t[va].max() + 50_000_000 <= t[te].min()
    assert not (tr & va).any() and not (va & te).any()


def test_thresholds_are_precision_first_and_never_equal_a_score() -> None:
    rng = np.random.default_rng(1)
    p = rng.random(5000)
    y = (rng.random(5000) < p**3).astype(int)  # higher score -> more positives
    c = choose_thresholds(y, p, target_precision=0.6)
    sel = p >= c.tau_entry
    assert c.target_reached and y[sel].mean() >= 0.6 and sel.sum() >= 50
    assert c.tau_entry not in set(p.tolist()) and c.tau_hold <= c.tau_entry
    # a lower target approves more rows
    assert (p >= choose_thresholds(y, p, target_precision=0.4).tau_entry).sum() > sel.sum()


def test_reference_bins_partition_the_training_rows() -> None:
    x = np.random.default_rng(2).normal(size=(1000, 2)).astype(np.float32)
    bins = reference_bins(x, ["a", "b"])
    assert sum(bins["a"]["fractions"]) == pytest.approx(1.0) and len(bins["a"]["edges"]) == 11


@pytest.mark.skipif(not CAPTURE.is_dir(), reason=f"real capture not present at {CAPTURE.resolve()}")
def test_end_to_end_on_the_real_capture(tmp_path: Path) -> None:
    out = train_end_to_end(tmp_path / "cap", capture_dir=CAPTURE, model_id="cap-1")
    meta = json.loads((out / "model.json").read_text())
    assert meta["parity"]["ok"] and len(meta["sessions"]) == 5
    assert meta["metrics"]["test_rows"] > 1000 and 0 < meta["metrics"]["test_positive_rate"] < 0.5
