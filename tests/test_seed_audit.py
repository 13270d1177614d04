"""Issue 17: places where a user following the seed word for word got something else.

Each test here fails on the code before its fix (the issue's item number is in the test name).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from release_helpers import make_registry, release_doc

from tidegate.config.schema import AppConfig
from tidegate.registry import Registry
from tidegate.release.decision import Facts
from tidegate.release.effects import EffectApplier
from tidegate.release.engine import decide
from tidegate.release.local import LocalDriver
from tidegate.release.spec import PendingEffect, ReleaseStatus, parse_release

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
PROM = "http://127.0.0.1:9"  # never queried: nothing here reaches a stage with gates


# -- item 8: a release naming a model that is not in the registry ----------------------------------

def test_item8_engine_refuses_a_release_of_a_model_not_in_the_registry() -> None:
    rel = parse_release(release_doc("ghost", model_id="candidate-1", prometheus_url=PROM))
    facts = Facts(active_model_id="old-1", missing_models=(("spec.modelId", "candidate-1"),))
    d = decide(rel, None, [], NOW, facts=facts)
    assert d.status.phase == "Failed" and d.action == "fail"
    assert "spec.modelId: model 'candidate-1' is not in the registry" in d.status.decisions[-1].reason
    assert not any(e.kind in ("slot", "rollout") for e in d.effects), d.effects   # nothing routed, no slot moved
    # the same release with the model present starts as before
    ok = decide(rel, None, [], NOW, facts=Facts(active_model_id="old-1", missing_models=()))
    assert ok.status.phase != "Failed"


def test_item8_local_driver_refuses_at_start_naming_the_field(tmp_path: Path) -> None:
    registry = make_registry(tmp_path / "registry")   # old-1 (active) and cand-1
    for model_id, field, phase in (("candidate-1", "spec.modelId", "Failed"), ("cand-1", None, "Validating")):
        rel = parse_release(release_doc(f"r-{model_id}", model_id=model_id, prometheus_url=PROM,
                                        validations={"skip": False}))
        driver = LocalDriver(rel, state_dir=tmp_path / "state", registry=registry)
        decision = asyncio.run(driver.tick())
        assert decision.status.phase == phase, decision.status.decisions
        if field:
            assert f"{field}: model 'candidate-1' is not in the registry" in decision.status.message or any(
                f"{field}: model 'candidate-1'" in d.reason for d in decision.status.decisions)
            assert registry.slot("active") == "old-1" and registry.slot("candidate") is None
    rel = parse_release(release_doc("r-prev", previousModelId="gone-7", prometheus_url=PROM))
    st = asyncio.run(LocalDriver(rel, state_dir=tmp_path / "state", registry=registry).tick()).status
    assert st.phase == "Failed" and "spec.previousModelId: model 'gone-7'" in st.decisions[-1].reason


def test_item8_a_pending_effect_that_fails_is_named_in_a_condition(tmp_path: Path) -> None:
    registry = make_registry(tmp_path / "registry")
    rel = parse_release(release_doc("stuck", prometheus_url=PROM))
    driver = LocalDriver(rel, state_dir=tmp_path / "state", registry=registry)
    driver.status = ReleaseStatus(phase="Promoted", pendingEffects=[
        PendingEffect(id="stuck-7", kind="slot", args={"slot": "active", "model_id": "vanished-3"})])
    assert asyncio.run(driver.drain_effects()) is False
    cond = {c.type: c for c in driver.status.conditions}["EffectsApplied"]
    assert cond.status == "False" and "stuck-7" in cond.message and "vanished-3" in cond.message
    assert driver.store.load_status().conditions[-1].type == "EffectsApplied"   # saved, so status shows it
    registry_ok = make_registry(tmp_path / "registry2", ids=("vanished-3",), active=None)
    driver.applier = EffectApplier(registry=registry_ok, kv=None, js=None, metrics=driver.metrics)
    assert asyncio.run(driver.drain_effects()) is True
    cond = {c.type: c for c in driver.status.conditions}["EffectsApplied"]
    assert cond.status == "True" and not driver.status.pendingEffects


# -- item 14: prometheus.timeout_s is read ----------------------------------------------------------

def test_item14_prometheus_timeout_comes_from_config_unless_the_release_sets_one(tmp_path: Path) -> None:
    app = AppConfig.model_validate({"prometheus": {"timeout_s": 1.5}})
    doc = release_doc("t", prometheus_url=PROM)
    del doc["spec"]["analysis"]["prometheus"]["timeout"]
    driver = LocalDriver(parse_release(doc), state_dir=tmp_path / "s1", app=app, registry=Registry(tmp_path / "r"))
    assert driver.provider.timeout == 1.5   # type: ignore[attr-defined]
    doc["spec"]["analysis"]["prometheus"]["timeout"] = 3
    driver = LocalDriver(parse_release(doc), state_dir=tmp_path / "s2", app=app, registry=Registry(tmp_path / "r"))
    assert driver.provider.timeout == 3.0   # type: ignore[attr-defined]


@pytest.mark.parametrize("path", ["pyproject.toml", "docs/architecture.md"])
def test_item14_no_claim_of_an_unused_converter(path: str) -> None:
    """skl2onnx is onnxmltools' own dependency; the project never imports it, so it claims nothing of it."""
    text = (Path(__file__).resolve().parents[1] / path).read_text()
    assert '"skl2onnx' not in text and "+ skl2onnx" not in text


# -- item 11: trades_per_hour_prev_release_p95 survives a restart of risk ---------------------------

def test_item11_hourly_counts_round_trip_and_bad_state_is_set_aside(tmp_path: Path) -> None:
    import logging

    from tidegate.risk.book import HourlyCounts
    from tidegate.services.risk import load_hourly, save_hourly

    hour = 3600 * 1_000_000_000
    h = HourlyCounts()
    h.set_active("old-1")
    for i, n in enumerate((10, 40, 20, 30)):
        for _ in range(n):
            h.add(i * hour + 5)
    h.set_active("new-2")
    h.add(9 * hour)
    assert h.prev_release_p95() == 40.0
    path = tmp_path / "risk_state.json"
    log = logging.getLogger("test")
    save_hourly(path, h, log)
    restored = load_hourly(path, log)      # what a restarted risk service starts from
    assert restored.prev_release_p95() == 40.0 and restored.current_model == "new-2"
    assert restored.hours == h.hours
    path.write_text('{"version": 1, "hours": {"old-1": {"x": 3}}}')
    empty = load_hourly(path, log)
    assert empty.hours == {} and (tmp_path / "risk_state.json.bad").is_file() and not path.exists()
    with pytest.raises(ValueError, match=r"hours\['old-1'\]"):
        HourlyCounts.from_doc({"version": 1, "hours": {"old-1": {"x": 3}}})


# -- item 2: a manual rollback restores the thresholds the model served with ------------------------

def test_item2_served_thresholds_prefer_the_models_last_promoted_release(tmp_path: Path) -> None:
    from tidegate.rollout.manual import served_thresholds

    registry = make_registry(tmp_path / "registry")          # model.json thresholds 0.6 / 0.5
    assert served_thresholds(registry, "old-1") == (0.6, 0.5)
    registry.append_release({"name": "r1", "model_id": "old-1", "outcome": "Promoted", "tau_entry": 0.05,
                             "tau_hold": 0.03})
    registry.append_release({"name": "r2", "model_id": "old-1", "outcome": "RolledBack", "tau_entry": 0.9,
                             "tau_hold": 0.8})           # a failed attempt never served as active
    registry.append_release({"name": "r3", "model_id": "cand-1", "outcome": "Promoted", "tau_entry": 0.2,
                             "tau_hold": 0.15})
    assert served_thresholds(registry, "old-1") == (0.05, 0.03)
    assert served_thresholds(registry, "cand-1") == (0.2, 0.15)
