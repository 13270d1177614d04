"""The ModelRelease document, the validation checklist and the ``tidegate release`` commands."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from release_helpers import make_registry

from tidegate.cli import main
from tidegate.config import load_config
from tidegate.release.spec import SpecError, effective_limits, load_release, parse_release
from tidegate.release.validation import (
    DEFAULT_CHECKS,
    ValidationContext,
    check_benchmark,
    check_canary_pipeline,
    check_onnx_parity,
    run_checks,
)

REPO = Path(__file__).resolve().parents[1]


def test_example_release_is_a_valid_model_release_with_the_seed_policy() -> None:
    rel = load_release(str(REPO / "examples/release.yaml"))
    assert rel.apiVersion == "tidegate.dev/v1alpha1" and rel.kind == "ModelRelease"
    assert [(s.name, s.weight) for s in rel.spec.stages] == [("shadow", 0), ("canary", 10), ("ramp-25", 25),
                                                             ("ramp-50", 50), ("full", 100)]
    assert rel.spec.stages[0].duration == 86400 and rel.spec.stages[1].maxDuration == 4 * 3600
    # the cooldown (15 m, the seed's) comes from config's rollout_guard, not the template
    assert rel.spec.cooldown is None and rel.spec.thresholds.freezeFor == 86400
    assert effective_limits(rel.spec, load_config(REPO / "config" / "app.yml").rollout_guard).cooldown == 900


@pytest.mark.parametrize(("spec", "fragment"), [
    ({"stages": [{"name": "a", "weight": 50}, {"name": "b", "weight": 25}]}, "weights must never decrease"),
    ({"stages": [{"name": "a", "weight": 100}, {"name": "b", "weight": 100}]}, "must be the last stage"),
    ({"stages": [{"name": "a", "weight": 10}, {"name": "a", "weight": 20}]}, "duplicate stage name"),
    ({"cooldwn": "5m"}, "spec.cooldwn: Extra inputs are not permitted"),
    ({"cooldown": "5 minutes"}, "spec.cooldown"),
    ({"guardRails": {"winrateDeltaPP": -1}}, "spec.guardRails.winrateDeltaPP"),
    ({"stages": [{"name": "c", "weight": 10, "duration": "2h", "maxDuration": "1h"}]}, "maxDuration must be >="),
])
def test_bad_specs_name_the_field(spec: dict, fragment: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_release({"metadata": {"name": "x"}, "spec": {"modelId": "m", **spec}})
    assert fragment in str(err.value)


def test_checklist_passes_skips_with_reasons_and_fails_on_a_worse_model(tmp_path: Path) -> None:
    reg = make_registry(tmp_path / "registry")
    ctx = ValidationContext(model_id="cand-1", registry=reg, repo_root=tmp_path,
                            parquet_dir=tmp_path / "parquet")
    parity = check_onnx_parity(ctx)  # the tiny test model has no native LightGBM twin: never a pass
    assert parity.status in ("fail", "skip") and parity.detail
    canary = check_canary_pipeline(ctx)  # not a trading model: refused before any day is simulated
    assert canary.status == "fail" and "features" in canary.detail
    # checks are pluggable; the real-model checklist is tests/test_release_checklist.py
    checks = [c for c in DEFAULT_CHECKS if c not in (check_onnx_parity, check_canary_pipeline)]
    out = run_checks(ctx, checks)
    by = {c["name"]: c for c in out.checks}
    assert by["artifact"]["status"] == "pass" and by["feature_schema"]["status"] == "pass"
    # no active model is no benchmark: a failure, unless the release says it is the first one
    assert by["benchmark"]["status"] == "fail" and "no benchmark" in by["benchmark"]["detail"]
    assert not out.passed and "firstRelease" in out.summary
    first = dataclasses.replace(ctx, first_release=True)
    assert run_checks(first, checks).passed and check_benchmark(first).status == "pass"
    worse = make_registry(tmp_path / "registry2", metrics={"old-1": {"pr_auc": 0.35, "precision": 0.50},
                                                           "cand-1": {"pr_auc": 0.31, "precision": 0.58}})
    res = check_benchmark(dataclasses.replace(ctx, registry=worse, benchmark_model_id="old-1"))
    assert res.status == "fail" and "pr_auc 0.3100 < benchmark 0.3500" in res.detail
    assert "active model 'old-1'" in res.detail
    ok = check_benchmark(dataclasses.replace(ctx, benchmark_model_id="old-1"))   # equal metrics meet it
    assert ok.status == "pass" and "pr_auc 0.3100 >= 0.3100" in ok.detail
    itself = check_benchmark(dataclasses.replace(ctx, benchmark_model_id="cand-1"))
    assert itself.status == "fail" and "compared with itself" in itself.detail
    ctx = dataclasses.replace(ctx, benchmark_model_id="old-1")
    (reg.model_dir("cand-1") / "model.onnx").write_bytes(b"tampered")
    bad = run_checks(ctx, checks)
    assert not bad.passed and "sha256 mismatch" in bad.summary


def test_cli_run_status_and_commands(tmp_path: Path) -> None:
    reg = make_registry(tmp_path / "registry")
    doc = {"apiVersion": "tidegate.dev/v1alpha1", "kind": "ModelRelease", "metadata": {"name": "cli-rel"},
           "spec": {"modelId": "cand-1", "analysis": {"prometheus": {"url": "http://127.0.0.1:9"}}}}
    doc_in = dict(doc)
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(doc))
    (tmp_path / "app.yml").write_text("{}\n")
    runner = CliRunner()
    common = ["--state-dir", str(tmp_path / "state")]
    args = ["release", "run", str(tmp_path / "r.yaml"), *common, "--config", str(tmp_path / "app.yml"),
            "--registry", str(reg.root), "--nats-url", "none", "--once"]
    assert runner.invoke(main, args).exit_code == 0
    res = runner.invoke(main, ["release", "status", "cli-rel", *common, "-o", "json"])
    assert res.exit_code == 0 and json.loads(res.output)["phase"] == "Validating"
    assert runner.invoke(main, args).exit_code == 0  # runs the checklist
    doc = json.loads(runner.invoke(main, ["release", "status", "cli-rel", *common, "-o", "json"]).output)
    checks = {c["name"]: c["status"] for c in doc["validation"]}
    assert checks["artifact"] == "pass" and checks["feature_schema"] == "pass"
    if checks["onnx_parity"] == "fail":  # the tiny test model has no native LightGBM twin: refused
        assert doc["phase"] == "Failed" and "onnx_parity" in doc["message"] and reg.slot("shadow") is None
        args = [*args, "--skip-validations"]
        (tmp_path / "r.yaml").write_text(yaml.safe_dump({**doc_in, "metadata": {"name": "cli-rel2"}}))
        assert runner.invoke(main, args).exit_code == 0
        name = "cli-rel2"
    else:
        name = "cli-rel"
    doc = json.loads(runner.invoke(main, ["release", "status", name, *common, "-o", "json"]).output)
    assert (doc["phase"], doc["stage"], doc["weight"]) == ("Shadow", "shadow", 0)
    for d in doc["decisions"]:
        assert {"at", "stage", "gate", "verdict", "value", "reason"} <= set(d)
    assert reg.slot("shadow") == "cand-1"
    res = runner.invoke(main, ["release", "pause", name, *common])
    assert res.exit_code == 0 and "no driver running" in res.output
    doc = json.loads(runner.invoke(main, ["release", "status", name, *common, "-o", "json"]).output)
    assert len(doc["pendingCommands"]) == 1
    res = runner.invoke(main, ["release", "status", "nope", *common])
    assert res.exit_code == 2 and "no release named 'nope'" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"apiVersion": "tidegate.dev/v1alpha1", "kind": "ModelRelease",
                                   "metadata": {"name": "b"},
                                   "spec": {"modelId": "m", "stages": []}}))
    res = runner.invoke(main, ["release", "run", str(bad), *common, "--config", str(tmp_path / "app.yml")])
    assert res.exit_code == 2 and "spec.stages" in res.output
