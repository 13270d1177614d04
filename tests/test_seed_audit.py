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


# -- item 6: release.sh's default template leaves to config what config owns -----------------------

def test_item6_the_default_template_takes_prometheus_and_guard_rails_from_config(tmp_path: Path) -> None:
    import yaml
    from click.testing import CliRunner

    from tidegate.cli import main
    from tidegate.config import load_config
    from tidegate.release.local import prometheus_timeout
    from tidegate.release.spec import effective_limits

    repo = Path(__file__).resolve().parents[1]
    out = CliRunner().invoke(main, ["release", "new", "--model-id", "m-9", "--template",
                                    str(repo / "examples" / "release.yaml")])
    assert out.exit_code == 0, out.output
    rel = parse_release(yaml.safe_load(out.output))
    shipped = load_config(repo / "config" / "app.yml")
    laptop = shipped.model_copy(update={
        "prometheus": shipped.prometheus.model_copy(update={"url": "http://127.0.0.1:19090", "timeout_s": 2.5}),
        "rollout_guard": shipped.rollout_guard.model_copy(update={
            "winrate_delta_pp": 3.0, "min_sample": 321, "psi_block": 0.25, "ks_block": 0.15, "ece_max": 0.04,
            "fill_rate_min": 0.2, "markout_min_bps": -1.0, "cooldown": 600.0, "parity_window": 300.0,
            "drift_window": 900.0})})
    lim = effective_limits(rel.spec, laptop.rollout_guard)
    g = laptop.rollout_guard
    assert (lim.winrate_delta_pp, lim.min_sample, lim.psi_block, lim.ks_block, lim.ece_max, lim.fill_rate_min,
            lim.markout_min_bps, lim.cooldown, lim.parity_window, lim.drift_window) == (
        g.winrate_delta_pp, g.min_sample, g.psi_block, g.ks_block, g.ece_max, g.fill_rate_min, g.markout_min_bps,
        g.cooldown, g.parity_window, g.drift_window)
    driver = LocalDriver(rel, state_dir=tmp_path / "s", app=laptop, registry=Registry(tmp_path / "r"))
    assert driver.provider.timeout == 2.5 and prometheus_timeout(rel.spec.analysis.prometheus.timeout, laptop) == 2.5  # type: ignore[attr-defined]
    assert (rel.spec.analysis.prometheus.url or laptop.prometheus.url) == "http://127.0.0.1:19090"


# -- item 5: a Promoted release with adaptive thresholds keeps being evaluated -----------------------

def test_item5_both_drivers_keep_evaluating_a_promoted_adaptive_release(tmp_path: Path) -> None:
    from tidegate.operator.runner import idle

    promoted = ReleaseStatus(phase="Promoted", promotedAt="2026-12-01T00:00:00Z")
    adaptive = parse_release(release_doc("a", prometheus_url=PROM, thresholds={
        "freezeFor": 10, "adaptive": {"enabled": True}}))
    fixed = parse_release(release_doc("f", prometheus_url=PROM))
    assert not idle(promoted, adaptive.spec) and idle(promoted, fixed.spec)      # the operator
    assert not idle(ReleaseStatus(phase="Canary"), fixed.spec)
    rolled = ReleaseStatus(phase="RolledBack")
    assert idle(rolled, adaptive.spec)
    driver = LocalDriver(adaptive, state_dir=tmp_path / "s", registry=Registry(tmp_path / "r"))
    driver.status = promoted
    assert not driver.finished(follow=True) and driver.finished(follow=False)   # local: --follow


def test_item5_release_run_follows_an_adaptive_release_by_default() -> None:
    """`release run` (what release.sh execs, without --follow) keeps running after promotion when the release
    asks for tuning; --no-follow / --follow still decide when given."""
    from tidegate.release.local import follows

    adaptive = parse_release(release_doc("a", prometheus_url=PROM, thresholds={"adaptive": {"enabled": True}}))
    fixed = parse_release(release_doc("f", prometheus_url=PROM))
    assert follows(adaptive.spec, None) and not follows(fixed.spec, None)
    assert not follows(adaptive.spec, False) and follows(fixed.spec, True)


# -- item 7: the engine's own metrics are served in the seed's flow --------------------------------

def test_item7_release_run_serves_the_engine_metrics_on_the_configured_port(tmp_path: Path) -> None:
    """release.sh execs `tidegate release run --config ...` without --metrics-port: the engine's
    mode_switch_total and rollback_total must still be scrapeable, on prometheus.engine_metrics_port."""
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    import yaml

    from tidegate.infra.process import free_port

    registry = make_registry(tmp_path / "registry")
    port = free_port()
    cfg = tmp_path / "app.yml"
    cfg.write_text(yaml.safe_dump({"prometheus": {"url": PROM, "engine_metrics_port": port},
                                   "registry": {"root": str(registry.root)}}))
    doc = release_doc("served", prometheus_url=PROM, stages=[{"name": "shadow", "weight": 0, "duration": 600},
                                                              {"name": "full", "weight": 100}])
    rel = tmp_path / "served.yaml"
    rel.write_text(yaml.safe_dump(doc))
    proc = subprocess.Popen([sys.executable, "-m", "tidegate.cli", "release", "run", str(rel), "--config", str(cfg),
                             "--state-dir", str(tmp_path / "state"), "--nats-url", "none"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        body, deadline = "", time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    body = r.read().decode()
                if "release_phase" in body or "rollback_total" in body:
                    break
            except OSError:
                time.sleep(0.2)   # not listening yet: the process is still importing
        assert proc.poll() is None, proc.communicate()[0]
        assert "# TYPE rollback_total counter" in body and "# TYPE mode_switch_total counter" in body, body[:2000]
    finally:
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out


def test_item7_the_mirror_counts_release_switches_only_and_reads_an_older_engines_rollback() -> None:
    """engine_counts: a release's MODE_SWITCH gives the engine's own increments; the supervisor's own
    halt (no release) and CRIT events give none; an engine older than ``label`` still yields the
    rollback's gate, read from its "rollback: <gate>" reason."""
    from tidegate.bus.control import ControlEvent
    from tidegate.rollout.supervisor import engine_counts

    def ev(**kw):  # type: ignore[no-untyped-def]
        return ControlEvent.from_bytes(ControlEvent(kind="MODE_SWITCH", event_id="e", **kw).to_bytes())

    rollback = ev(**{"from": "canary", "to": "disabled"}, reason="rollback: winrate", release="r1", label="winrate")
    assert engine_counts(rollback) == [("mode_switch_total", {"from": "canary", "to": "disabled", "reason": "winrate"}),
                                       ("rollback_total", {"reason": "winrate"})]
    advance = ev(**{"from": "disabled", "to": "canary"}, reason="canary at 10%: ok", release="r1", label="advance")
    assert engine_counts(advance) == [("mode_switch_total", {"from": "disabled", "to": "canary", "reason": "advance"})]
    older = ev(**{"from": "canary", "to": "disabled"}, reason="rollback: parity", release="r1")
    assert engine_counts(older)[1] == ("rollback_total", {"reason": "parity"})
    assert engine_counts(ev(**{"from": "canary", "to": "disabled"}, reason="rollback: psi", label="psi")) == []
    assert engine_counts(ControlEvent(kind="CRIT", severity="CRIT", reason="x", release="r1")) == []


# -- item 4: a canary that config started is supervised ---------------------------------------------

@pytest.mark.real
def test_item4_a_config_started_canary_is_rolled_back_on_a_failed_gate(  # type: ignore[no-untyped-def]
        tmp_path: Path, prometheus, prom_slot, nats_server) -> None:
    import time
    import uuid

    import nats
    from prometheus_client import CollectorRegistry
    from release_helpers import Exporter

    from tidegate.metrics import build
    from tidegate.release.prometheus import PrometheusProvider
    from tidegate.rollout import RolloutKV, RolloutState, config_policy
    from tidegate.rollout.supervisor import config_limits, run_supervisor

    exporter = Exporter(prom_slot)                  # cand-1 on the canary, old-1 the active model, healthy
    prometheus.wait_up(prom_slot)
    registry = make_registry(tmp_path / "registry")
    registry.set_slot("shadow", "cand-1", reason="the seed's canary steps: the candidate in the shadow slot")
    bucket = f"sup_{uuid.uuid4().hex[:8]}"
    app = AppConfig.model_validate({"nats": {"url": nats_server.url, "kv_bucket": bucket},
                                    "prometheus": {"url": prometheus.url},
                                    "rollout": {"mode": "canary", "canary_fraction": 0.1},
                                    "registry": {"root": str(registry.root)}})
    limits = config_limits(app).model_copy(update={"labels": (("instance", f"127.0.0.1:{prom_slot}"),)})
    assert limits.min_sample == app.rollout_guard.min_sample and set(limits.gates) == {"winrate", "parity", "psi",
                                                                                        "ks"}
    provider = PrometheusProvider(prometheus.url, timeout=2.0)
    metrics = build(CollectorRegistry(), "release")

    async def stored() -> RolloutState | None:
        nc = await nats.connect(nats_server.url)
        try:
            return await (await RolloutKV.open(nc.jetstream(), bucket)).get()
        finally:
            await nc.close()

    def look() -> list:  # type: ignore[type-arg]
        return asyncio.run(run_supervisor(app, provider, registry, asyncio.Event(), interval=0.1, metrics=metrics,
                                          once=True, limits=limits))

    try:
        assert look() == [] and asyncio.run(stored()) is None        # healthy: nothing written
        exporter.set(psi=0.5)                                          # drift on the candidate's market
        deadline, taken = time.monotonic() + 30, []
        while not taken and time.monotonic() < deadline:
            taken = look()
        assert taken and taken[0].gate == "psi" and "config canary rolled back (psi)" in taken[0].reason
        after = asyncio.run(stored())
        assert after is not None and (after.mode, after.canary_fraction) == ("disabled", 0.0)
        assert config_policy(app.rollout)(after).mode == "disabled"   # config canary follows the stored halt
        assert metrics["rollback_total"].labels(reason="psi")._value.get() == 1
        # a canary a release started belongs to its release engine: left alone
        asyncio.run(_put(nats_server.url, bucket, RolloutState(mode="canary", canary_fraction=0.1, release="r1",
                                                                active_model_id="old-1", candidate_model_id="cand-1",
                                                                revision=after.revision + 1)))
        assert look() == [] and asyncio.run(stored()).release == "r1"  # type: ignore[union-attr]
    finally:
        provider.close()
        exporter.close()


async def _put(url: str, bucket: str, state) -> None:  # type: ignore[no-untyped-def]
    import nats

    from tidegate.rollout import RolloutKV

    nc = await nats.connect(url)
    try:
        await (await RolloutKV.open(nc.jetstream(), bucket)).put(state)
    finally:
        await nc.close()


# -- item 15: Ctrl-C during the demo's start cannot be lost ----------------------------------------

def test_item15_an_interrupt_swallowed_where_it_was_raised_is_raised_again_at_the_next_step() -> None:
    import contextlib
    import signal

    from tidegate.demo.run import Interrupts

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    it = Interrupts()
    try:
        it.install()
        it.checkpoint()                                    # nothing arrived: no-op
        with contextlib.suppress(BaseException):           # a library swallowing it where it was raised
            signal.raise_signal(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            it.checkpoint()                                # the demo's next step boundary still stops
        it.install()                                       # a new run starts clean
        it.checkpoint()
        with contextlib.suppress(BaseException):
            signal.raise_signal(signal.SIGTERM)            # SIGTERM is an interrupt too
        with pytest.raises(KeyboardInterrupt):
            it.checkpoint()
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
