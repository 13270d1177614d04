"""The seed's documented commands, run as subprocesses: dump -> label -> train -> register -> promote, gaps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tidegate.features import schema_hash

REPO = Path(__file__).resolve().parents[1]
CAPTURE = REPO / ".." / "shared" / "data" / "capture"


def _run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=300)
    if ok:
        assert r.returncode == 0, f"{args}: {r.stderr}"
    return r


@pytest.fixture(scope="module")
def synthetic_chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("chain")
    _run("dump_market_to_parquet.py", "--config", "config/app.yml", "--synthetic", "--seconds", "60", "--cycles", "2",
         "--out", str(tmp / "parquet"))
    _run("labeling.py", "--parquet-dir", str(tmp / "parquet"), "--out", str(tmp / "training.parquet"))
    _run("train.py", "--data", str(tmp / "training.parquet"), "--output-dir", str(tmp / "latest"),
         "--model-card", str(tmp / "model_card.md"), "--register", str(tmp / "registry"), "--model-id", "chain-1")
    return tmp


def test_dump_writes_hive_partitions_and_the_schema_sidecar(synthetic_chain: Path) -> None:
    pdir = synthetic_chain / "parquet"
    parts = sorted(p.relative_to(pdir).parent.as_posix() for p in pdir.rglob("*.parquet"))
    assert parts and all(p.startswith("symbol=BTCUSDT/date=") and "/hour=" in p for p in parts)
    sidecar = json.loads((pdir / "_feature_schema.json").read_text())
    assert sidecar["schema_hash"] == schema_hash()
    meta = pq.read_schema(next(pdir.rglob("*.parquet"))).metadata
    assert meta[b"tidegate.feature_schema_hash"].decode() == schema_hash()


def test_chain_leaves_a_registered_promotable_model_and_a_card(synthetic_chain: Path) -> None:
    model = json.loads((synthetic_chain / "latest" / "model.json").read_text())
    sidecar = json.loads((synthetic_chain / "parquet" / "_feature_schema.json").read_text())
    assert model["schema_hash"] == sidecar["schema_hash"]  # release checklist item 1
    card = (synthetic_chain / "model_card.md").read_text()
    assert "chain-1" in card and "positive-rate baseline" in card and f"{model['metrics']['test_pr_auc']:.4f}" in card
    r = _run("scripts/promote_model.py", "--to", "active", "--id", "chain-1", "--registry",
             str(synthetic_chain / "registry"), "--registry-only")
    assert "-> chain-1" in r.stdout


def test_labeling_refuses_parquet_from_another_feature_schema(synthetic_chain: Path, tmp_path: Path) -> None:
    import shutil

    pdir = tmp_path / "parquet"
    shutil.copytree(synthetic_chain / "parquet", pdir)
    side = json.loads((pdir / "_feature_schema.json").read_text())
    side["schema_hash"] = "f" * 64
    (pdir / "_feature_schema.json").write_text(json.dumps(side))
    r = _run("labeling.py", "--parquet-dir", str(pdir), "--out", str(tmp_path / "t.parquet"), ok=False)
    assert r.returncode == 1 and "schema_hash mismatch" in r.stderr and not (tmp_path / "t.parquet").exists()


def test_scan_gaps_passes_clean_data_and_fails_past_the_threshold(synthetic_chain: Path) -> None:
    pdir = str(synthetic_chain / "parquet")
    ok = _run("scripts/scan_parquet_gaps.py", "--parquet-dir", pdir)
    assert json.loads(ok.stdout)["ok"] is True
    bad = _run("scripts/scan_parquet_gaps.py", "--parquet-dir", pdir, "--max-gap-ms", "50", ok=False)
    report = json.loads(bad.stdout)
    assert bad.returncode == 1 and report["gaps"] and report["max_gap_ms"] > 50


def test_hpo_sweep_exports_its_top_trials_best_first(synthetic_chain: Path, tmp_path: Path) -> None:
    """scripts/hpo_optuna.py: a short seeded sweep on the chain's training set; the export is the
    best ``--top`` trials by objective (validation precision at tau_entry + 1e-3 PR-AUC)."""
    out = tmp_path / "top.json"
    _run("scripts/hpo_optuna.py", "--data", str(synthetic_chain / "training.parquet"), "--trials", "4", "--top", "2",
         "--out", str(out), "--seed", "3")
    doc = json.loads(out.read_text())
    assert doc["trials"] == 4 and len(doc["top"]) == 2
    first, second = doc["top"]
    assert first["objective"] >= second["objective"] and first["number"] != second["number"]
    for t in doc["top"]:
        assert set(t["params"]) == {"num_leaves", "learning_rate", "min_child_samples", "n_estimators",
                                    "colsample_bytree"}
        assert 7 <= t["params"]["num_leaves"] <= 63 and 0.01 <= t["params"]["learning_rate"] <= 0.2
        assert 0.0 <= t["val_pr_auc"] <= 1.0 and 0.0 <= t["tau_entry"] <= 1.0
        assert t["objective"] >= 1e-3 * t["val_pr_auc"] - 1e-12    # precision part is never negative


def test_train_refuses_missing_data(tmp_path: Path) -> None:
    r = _run("train.py", "--data", str(tmp_path / "none.parquet"), "--output-dir", str(tmp_path / "m"), ok=False)
    assert r.returncode == 1 and "not found" in r.stderr


@pytest.mark.skipif(not CAPTURE.is_dir(), reason=f"real capture not present at {CAPTURE.resolve()}")
def test_dump_on_the_real_capture_covers_every_file(tmp_path: Path) -> None:
    r = _run("dump_market_to_parquet.py", "--config", "config/app.yml", "--capture-dir", str(CAPTURE), "--out",
             str(tmp_path / "pq"))
    report = json.loads(r.stdout)
    assert report["events"] == 291911 and len(report["sessions"]) == 5
    gaps = _run("scripts/scan_parquet_gaps.py", "--parquet-dir", str(tmp_path / "pq"))
    assert json.loads(gaps.stdout)["missing_partitions"] == []
