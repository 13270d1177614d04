"""The pure release engine: tick-driven scenarios and hypothesis properties, no I/O."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidegate.release.engine import Command, Facts, ValidationOutcome, decide
from tidegate.release.gates import gates_for_stage
from tidegate.release.spec import ReleaseStatus, effective_limits, parse_release
from tidegate.release.thresholds import adaptive_step
from tidegate.release.verdicts import GateVerdict, Verdict

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
FACTS = Facts(active_model_id="old", rollout_mode="disabled", candidate_tau=(0.6, 0.5))


def release(**spec):  # type: ignore[no-untyped-def]
    base = {"modelId": "cand", "validations": {"skip": True},
            "stages": [{"name": "shadow", "weight": 0, "duration": 10},
                       {"name": "canary", "weight": 10, "duration": 10, "maxDuration": 30},
                       {"name": "ramp-50", "weight": 50, "duration": 10},
                       {"name": "full", "weight": 100}],
            "guardRails": {"onUnavailable": {"action": "hold", "maxHold": 20, "then": "rollback"}},
            "cooldown": 60}
    base.update(spec)
    return parse_release({"metadata": {"name": "rel"}, "spec": base})


def all_(weight: int, rel, verdict: Verdict = Verdict.PASS, **override: Verdict) -> list[GateVerdict]:  # type: ignore
    lim = effective_limits(rel.spec)
    return [GateVerdict(g, override.get(g, verdict), 0.5, 500, 0.4) for g in gates_for_stage(weight, lim)]


class World:
    """Applies effects the way the real adapters do, to check what a decision leaves behind."""

    def __init__(self) -> None:
        self.active, self.shadow, self.mode, self.switches = "old", None, "disabled", []

    def apply(self, effects) -> None:  # type: ignore[no-untyped-def]
        for e in effects:
            if e.kind == "slot":
                setattr(self, e.args["slot"], e.args["model_id"])
            elif e.kind == "rollout":
                self.mode = e.args["mode"]
            elif e.kind == "mode_switch":
                self.switches.append((e.args["from_mode"], e.args["to_mode"]))


class Runner:
    def __init__(self, rel) -> None:  # type: ignore[no-untyped-def]
        self.rel, self.status, self.now, self.world = rel, None, T0, World()

    def tick(self, seconds: float = 0, verdicts=None, command=None, **kw):  # type: ignore[no-untyped-def]
        self.now += dt.timedelta(seconds=seconds)
        w = self.status.weight if self.status else 0
        d = decide(self.rel, self.status, all_(w, self.rel) if verdicts is None else verdicts, self.now,
                   facts=kw.pop("facts", FACTS), command=command, **kw)
        self.world.apply(d.effects)
        d.status.pendingEffects = []
        self.status = d.status
        return d


def test_healthy_release_walks_every_stage_and_promotes() -> None:
    r = Runner(release())
    assert r.tick().status.phase == "Shadow"
    assert r.world.shadow == "cand" and r.world.mode == "disabled"
    assert r.tick(9).action == "wait"
    assert r.tick(1).status.phase == "Canary"
    assert r.tick(10).status.phase == "Ramping"
    d = r.tick(10)
    assert d.action == "promote" and d.status.phase == "Promoted" and d.status.weight == 100
    assert r.world.active == "cand" and r.world.shadow is None and r.world.mode == "full"
    assert r.world.switches == [("disabled", "canary"), ("canary", "full")]
    assert any(e.kind == "record" for e in d.effects)


def test_effect_ids_are_unique_and_stable_for_the_same_inputs() -> None:
    rel = release()
    a = decide(rel, None, [], T0, facts=FACTS)
    b = decide(rel, None, [], T0, facts=FACTS)
    assert [e.id for e in a.effects] == [e.id for e in b.effects]
    assert len({e.id for e in a.effects}) == len(a.effects)
    assert a.status == b.status


def test_unavailable_holds_then_rolls_back_after_max_hold_and_never_advances() -> None:
    r = Runner(release())
    r.tick()
    r.tick(10)  # canary
    d = r.tick(11, all_(10, r.rel, Verdict.UNAVAILABLE))
    assert d.action == "hold" and r.status.holdSince is not None
    assert r.tick(10, all_(10, r.rel, Verdict.UNAVAILABLE)).action == "hold"
    d = r.tick(10, all_(10, r.rel, Verdict.UNAVAILABLE))
    assert d.action == "rollback" and r.status.rollbackReason == "unavailable"
    assert r.world.active == "old" and r.world.mode == "disabled"
    assert r.world.switches[-1] == ("canary", "disabled")


def test_unavailable_then_pass_resets_the_hold_and_advances_only_on_pass() -> None:
    r = Runner(release())
    r.tick()
    r.tick(10)
    assert r.tick(15, all_(10, r.rel, Verdict.UNAVAILABLE)).action == "hold"
    d = r.tick(1)
    assert d.action == "advance" and r.status.holdSince is None and r.status.stage == "ramp-50"


def test_missing_gate_counts_as_unavailable() -> None:
    r = Runner(release())
    r.tick()
    r.tick(10)
    partial = [v for v in all_(10, r.rel) if v.gate != "ece"]
    assert r.tick(20, partial).action == "hold"
    assert r.status.gates["ece"].verdict == "UNAVAILABLE"


def test_insufficient_waits_until_max_duration_then_rolls_back() -> None:
    r = Runner(release())
    r.tick()
    r.tick(10)
    few = all_(10, r.rel, winrate=Verdict.INSUFFICIENT)
    assert r.tick(15, few).action == "extend"
    assert r.tick(10, few).action == "extend" and r.status.stage == "canary"
    d = r.tick(5, few)
    assert d.action == "rollback" and r.status.rollbackReason == "insufficient_sample"


def test_insufficient_can_pause_instead() -> None:
    r = Runner(release(guardRails={"onInsufficient": {"then": "pause"}}))
    r.tick()
    r.tick(10)
    d = r.tick(31, all_(10, r.rel, winrate=Verdict.INSUFFICIENT))
    assert d.action == "pause" and r.status.phase == "Paused" and r.status.pauseReason == "insufficient"


def test_parity_fail_rolls_back_at_once_even_while_paused() -> None:
    r = Runner(release())
    r.tick()
    r.tick(10)
    r.tick(1, command=Command("pause"))
    assert r.status.phase == "Paused"
    d = r.tick(1, all_(10, r.rel, parity=Verdict.FAIL))
    assert d.action == "rollback" and r.status.rollbackReason == "parity"


def test_non_critical_fail_respects_failure_limit() -> None:
    r = Runner(release(guardRails={"failureLimit": 2}))
    r.tick()
    r.tick(10)
    assert r.tick(1, all_(10, r.rel, psi=Verdict.FAIL)).action == "wait"
    assert r.tick(1, all_(10, r.rel, psi=Verdict.FAIL)).action == "rollback"
    assert r.status.rollbackReason == "psi"


def test_pause_stops_the_stage_clock_and_resume_continues() -> None:
    r = Runner(release())
    r.tick()
    r.tick(5, command=Command("pause"))
    assert r.tick(100).action == "wait" and r.status.phase == "Paused"
    r.tick(0, command=Command("resume"))
    assert r.status.phase == "Shadow"
    assert r.tick(4).status.stage == "shadow"  # 5 s before the pause + 4 s after < 10 s
    assert r.tick(1).status.stage == "canary"


def test_manual_promote_refused_unless_every_gate_passes_or_forced() -> None:
    r = Runner(release())
    r.tick()
    d = r.tick(1, all_(0, r.rel, psi=Verdict.UNAVAILABLE), command=Command("promote"))
    assert d.action in ("reject", "hold") and r.status.stage == "shadow"
    assert "promote rejected" in " ".join(x.reason for x in r.status.decisions)
    assert r.tick(1, command=Command("promote")).status.stage == "canary"
    assert r.tick(1, all_(10, r.rel, winrate=Verdict.INSUFFICIENT),
                  command=Command("promote", force=True)).status.stage == "ramp-50"
    assert r.tick(1, command=Command("promote", full=True)).status.phase == "Promoted"


def test_abort_rolls_back_and_retry_waits_for_cooldown() -> None:
    r = Runner(release())
    r.tick()
    r.tick(10)
    d = r.tick(1, command=Command("abort", reason="looks wrong"))
    assert d.action == "rollback" and r.status.rollbackReason == "manual_abort"
    assert r.tick(30, command=Command("retry")).action == "reject"
    assert r.status.phase == "RolledBack"
    d = r.tick(31, command=Command("retry"))
    assert d.action == "retry" and r.status.retries == 1 and r.status.phase == "Validating"
    d = r.tick(0)
    assert r.status.phase == "Shadow" and all("/1/" in e.id for e in d.effects)


def test_validation_failure_fails_the_release_without_touching_routing() -> None:
    r = Runner(release(validations={"skip": False}))
    assert r.tick().status.phase == "Validating"
    assert r.tick(1).action == "wait"
    d = r.tick(1, validation=ValidationOutcome(False, ({"name": "benchmark", "status": "fail"},), "pr_auc low"))
    assert r.status.phase == "Failed" and "pr_auc low" in r.status.message
    assert [e.kind for e in d.effects] == ["record"] and r.world.mode == "disabled" and r.world.shadow is None


def test_disabled_rollout_stops_after_validation_and_continues_when_enabled() -> None:
    r = Runner(release(rollout={"enabled": False}))
    d = r.tick()
    assert r.status.phase == "Paused" and r.status.pauseReason == "rolloutDisabled"
    assert [e.args["mode"] for e in d.effects if e.kind == "rollout"] == ["disabled"]
    assert r.tick(100).action == "wait"
    r.rel = release(rollout={"enabled": True})
    assert r.tick(1).status.phase == "Shadow"


def test_cooldown_of_another_release_delays_the_start() -> None:
    r = Runner(release())
    facts = Facts(active_model_id="old", cooldown_until=T0 + dt.timedelta(seconds=30))
    assert r.tick(0, facts=facts).action == "cooldown" or r.status.phase == "Pending"
    assert r.tick(31, facts=facts).status.phase == "Shadow"


def test_decision_log_is_bounded() -> None:
    r = Runner(release(decisionLogLimit=10))
    r.tick()
    for i in range(40):
        r.tick(0.1, all_(0, r.rel, psi=Verdict.UNAVAILABLE if i % 2 else Verdict.PASS))
    assert len(r.status.decisions) == 10


def test_thresholds_frozen_after_the_ramp_then_bounded_steps() -> None:
    rel = release(thresholds={"freezeFor": 100, "adaptive": {"enabled": True, "maxStep": 0.01, "interval": 10,
                                                             "targetPrecision": 0.55}})
    r = Runner(rel)
    for s in (0, 10, 10, 10):
        r.tick(s)
    assert r.status.phase == "Promoted" and r.status.tauEntry == 0.6
    low = Facts(active_model_id="cand", precision=0.40)
    assert r.tick(50, facts=low).action == "none" and r.status.tauEntry == 0.6  # frozen
    d = r.tick(51, facts=low)
    assert d.action == "adapt" and r.status.tauEntry == pytest.approx(0.61) and r.status.tauHold == pytest.approx(0.51)
    assert [e.args["tau_entry"] for e in d.effects if e.kind == "rollout"] == [pytest.approx(0.61)]
    assert r.tick(5, facts=low).action == "none"  # interval not over
    assert r.tick(5, facts=low).action == "adapt" and r.status.tauEntry == pytest.approx(0.62)


@given(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1))
def test_adaptive_step_is_bounded(tau: float, hold: float, precision: float) -> None:
    from tidegate.release.spec import Adaptive

    hold = min(hold, tau)
    for lo, hi in ((0.0, 1.0), (0.5, 0.95)):  # the default bounds too: tau may start outside them
        p = Adaptive(enabled=True, maxStep=0.01, minTau=lo, maxTau=hi)
        e, h = adaptive_step(tau, hold, precision, p)
        assert abs(e - tau) <= 0.01 + 1e-9 and 0 <= h <= e + 1e-9
        if precision < p.targetPrecision - p.band:
            assert e >= tau  # pickier, never looser
        elif precision > p.targetPrecision + p.band:
            assert e <= tau


def test_adaptive_step_walks_into_the_bounds_instead_of_jumping() -> None:
    from tidegate.release.spec import Adaptive

    p = Adaptive(enabled=True, maxStep=0.01, minTau=0.5, maxTau=0.95)
    assert adaptive_step(0.0258, 0.0255, 0.30, p) == pytest.approx((0.0358, 0.0355))  # low precision: up one step
    assert adaptive_step(0.0258, 0.0255, 0.90, p) == (0.0258, 0.0255)  # high precision: cannot go lower, stays
    assert adaptive_step(0.945, 0.9, 0.30, p) == pytest.approx((0.95, 0.905))  # capped at maxTau


# -- properties over random tick sequences --------------------------------------------------------
VERDICTS = st.sampled_from(list(Verdict))
STEP = st.tuples(st.floats(0, 12), st.dictionaries(st.sampled_from(
    ["winrate", "parity", "psi", "ks", "fill_rate", "markout", "ece"]), VERDICTS),
    st.sampled_from([None, None, None, "promote", "pause", "resume", "abort"]),
    st.sampled_from([Verdict.PASS, Verdict.PASS, Verdict.INSUFFICIENT, Verdict.UNAVAILABLE, Verdict.FAIL]))


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, min_size=1, max_size=40))
def test_properties_over_random_histories(steps) -> None:  # type: ignore[no-untyped-def]
    r = Runner(release(guardRails={"failureLimit": 2, "onUnavailable": {"maxHold": 15}}))
    r.tick()
    for seconds, overrides, cmd, default in steps:
        before: ReleaseStatus = r.status
        lim = effective_limits(r.rel.spec)
        vs = [GateVerdict(g, overrides.get(g, default)) for g in gates_for_stage(before.weight, lim)]
        d = r.tick(seconds, vs, command=Command(cmd) if cmd else None)
        after = r.status
        ended = after.phase in ("RolledBack", "Failed")
        # 1. weights never decrease within a release (until it ends)
        if not ended:
            assert after.weight >= before.weight
        # 2. no promotion ever follows an UNAVAILABLE or INSUFFICIENT (or FAIL) verdict
        if after.weight > before.weight or (after.stageIndex > before.stageIndex >= 0):
            assert all(v.verdict == Verdict.PASS for v in vs), (d.action, vs)
        # 3. a rollback always ends with the previous model active and the mode disabled
        if d.action == "rollback":
            assert r.world.active == "old" and r.world.mode == "disabled" and r.world.shadow is None
            assert r.world.switches[-1][1] == "disabled"
        if ended:
            break
