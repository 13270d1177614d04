"""The release checklist (tidegate/release/validation.py) on real trained models, in a temporary repo root.

Given a baseline as the active model and benchmark (its registered metrics) and a
parquet archive with its schema sidecar, a better candidate passes every check with
nothing skipped; each way of being wrong fails, naming the check that caught it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest
from canary_models import trained

from tidegate.market.synthetic import generate
from tidegate.pipeline.dump import SIDECAR, dump
from tidegate.registry import Registry
from tidegate.registry.store import sha256_file
from tidegate.release.validation import ValidationContext, run_checks

CHECKS = {"artifact", "feature_schema", "benchmark", "onnx_parity", "canary_pipeline"}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    (root / "models" / "latest").mkdir(parents=True)
    shutil.copy(trained("baseline") / "lgbm_meta.json", root / "models" / "latest" / "lgbm_meta.json")
    dump(root / "data" / "parquet", [generate(seed=3, regime="event", duration_s=20)])
    return root


def _registry(root: Path, *kinds: str) -> Registry:
    reg = Registry(root)
    for kind in ("baseline", *kinds):
        reg.register(trained(kind))
    reg.set_slot("active", "baseline-1", reason="test")
    return reg


def _check(repo: Path, reg: Registry, model_id: str) -> tuple[bool, dict[str, dict[str, str]], str]:
    ctx = ValidationContext(model_id=model_id, registry=reg, repo_root=repo, parquet_dir=repo / "data" / "parquet",
                            benchmark_model_id=reg.slot("active"), extra={"canary_days": ["synthetic"]})
    out = run_checks(ctx, require_all=True)
    return out.passed, {c["name"]: c for c in out.checks}, out.summary  # type: ignore[misc]


def test_a_better_candidate_passes_every_check(repo: Path, tmp_path: Path) -> None:
    reg = _registry(tmp_path / "registry", "good")
    passed, by, summary = _check(repo, reg, "good-1")
    assert passed, summary
    assert set(by) == CHECKS and all(c["status"] == "pass" for c in by.values()), by
    assert "ONNX metadata and live feature schema and 1 parquet sidecar(s)" in by["feature_schema"]["detail"]
    assert "pr_auc" in by["benchmark"]["detail"] and "precision" in by["benchmark"]["detail"]
    assert "no benchmark value" not in by["benchmark"]["detail"]
    assert by["canary_pipeline"]["detail"].startswith("canary PASS")
    assert summary.startswith("5 passed, 0 failed, 0 skipped")


def test_a_tampered_onnx_fails_the_artifact_check(repo: Path, tmp_path: Path) -> None:
    reg = _registry(tmp_path / "registry", "good")
    (reg.model_dir("good-1") / "model.onnx").write_bytes(b"\x08\x07 tampered")
    passed, by, summary = _check(repo, reg, "good-1")
    assert not passed and by["artifact"]["status"] == "fail" and "sha256 mismatch" in by["artifact"]["detail"]
    assert by["canary_pipeline"]["status"] == "fail" and "refused" in by["canary_pipeline"]["detail"]
    assert "artifact: model 'good-1': sha256 mismatch" in summary


def test_a_schema_hash_mismatch_fails_the_feature_schema_check(repo: Path, tmp_path: Path) -> None:
    reg = _registry(tmp_path / "registry", "good")
    other = tmp_path / "parquet"
    shutil.copytree(repo / "data" / "parquet", other)
    doc = json.loads((other / SIDECAR).read_text())
    (other / SIDECAR).write_text(json.dumps({**doc, "schema_hash": "0" * 64}))
    ctx = ValidationContext(model_id="good-1", registry=reg, repo_root=repo, parquet_dir=other,
                            benchmark_model_id="baseline-1", extra={"canary_days": ["synthetic:event"]})
    out = run_checks(ctx)
    by = {c["name"]: c for c in out.checks}
    assert not out.passed and by["feature_schema"]["status"] == "fail"
    assert "1 parquet sidecar(s) differ" in str(by["feature_schema"]["detail"]) and "000000000000" in out.summary

    # the ONNX file's own metadata disagreeing with model.json (model.json's sha256 updated to match)
    model_dir = reg.model_dir("good-1")
    model = onnx.load(str(model_dir / "model.onnx"))
    for prop in model.metadata_props:
        if prop.key == "schema_hash":
            prop.value = "f" * 64
    onnx.save(model, str(model_dir / "model.onnx"))
    meta = json.loads((model_dir / "model.json").read_text())
    (model_dir / "model.json").write_text(json.dumps({**meta, "sha256": sha256_file(model_dir / "model.onnx")}))
    passed, by, _ = _check(repo, reg, "good-1")
    assert not passed and by["artifact"]["status"] == "pass" and by["feature_schema"]["status"] == "fail"
    assert "ONNX metadata schema_hash ffffffffffff... != model.json" in by["feature_schema"]["detail"]


def test_a_candidate_worse_than_the_benchmark_fails_the_benchmark_check(repo: Path, tmp_path: Path) -> None:
    reg = _registry(tmp_path / "registry", "bad")
    passed, by, _ = _check(repo, reg, "bad-1")
    assert not passed and by["benchmark"]["status"] == "fail"
    bench = reg.metadata("baseline-1").metrics
    assert f"< benchmark {bench['pr_auc']:.4f}" in by["benchmark"]["detail"]
    assert "vs active model 'baseline-1'" in by["benchmark"]["detail"]
    assert by["artifact"]["status"] == "pass" and by["onnx_parity"]["status"] == "pass"


def test_a_bad_canary_fails_only_the_canary_check(repo: Path, tmp_path: Path) -> None:
    reg = _registry(tmp_path / "registry", "approve_all")  # the good ONNX, thresholds that approve everything
    passed, by, summary = _check(repo, reg, "approve-all-1")
    assert not passed
    assert {n: c["status"] for n, c in by.items()} == {**dict.fromkeys(CHECKS, "pass"), "canary_pipeline": "fail"}
    assert "canary FAIL" in by["canary_pipeline"]["detail"] and "markout FAIL" in summary
