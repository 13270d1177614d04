"""The release engine: one pure function from (spec, status, verdicts, clock) to a decision.

``decide`` never does I/O. It returns the next status and the effects to apply
(rollout state to KV, registry slot switches, MODE_SWITCH events, counters, the
manifest record). Both drivers (local, operator) do the same three things: load
status, call ``decide``, save the status with its pending effects *before*
applying them, then apply them (each effect is idempotent), so a crash at any
point is recovered by re-applying what is pending and a restart repeats nothing.

Per tick, in a stage (Shadow, Canary, Ramping):

1. a manual command (promote, abort, pause, resume) is handled first;
2. any FAIL of a critical gate (parity), or ``failureLimit`` consecutive FAILs of
   another gate, rolls back at once, even while paused or holding;
3. while paused nothing advances;
4. any UNAVAILABLE: hold (``onUnavailable``), then roll back (or pause) after
   ``maxHold`` -- an outage never promotes and never counts as a failure by itself;
5. any INSUFFICIENT: the stage waits, up to ``maxDuration``, then ``onInsufficient``;
6. only when *every* required gate is PASS and the stage has lasted ``duration``
   does the release advance; a stage without ``duration`` waits for a manual promote.

A required gate missing from ``verdicts`` counts as UNAVAILABLE. Weights never
decrease within an attempt (the spec forbids it and the engine only moves forward);
a rollback puts the previous model back in the active slot and the mode to disabled.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from tidegate.release.decision import Command, Decision, Facts, ValidationOutcome
from tidegate.release.gates import gates_for_stage
from tidegate.release.spec import Limits, ModelRelease, ReleaseStatus, effective_limits
from tidegate.release.thresholds import adaptive_step
from tidegate.release.transitions import Tx
from tidegate.release.verdicts import GateVerdict, Verdict

__all__ = ["Command", "Decision", "Facts", "ValidationOutcome", "decide"]

_STAGE_PHASES = ("Shadow", "Canary", "Ramping")


def decide(release: ModelRelease, status: ReleaseStatus | None, verdicts: Sequence[GateVerdict],
           now: dt.datetime, *, limits: Limits | None = None, facts: Facts | None = None,
           command: Command | None = None, validation: ValidationOutcome | None = None) -> Decision:
    """The next status and effects. Pure: the same inputs always give the same decision."""
    limits = limits or effective_limits(release.spec)
    tx = Tx(release, (status or ReleaseStatus()).model_copy(deep=True), now, limits, facts or Facts())
    st = tx.st
    if st.observedGeneration is None:
        st.observedGeneration = release.metadata.generation

    if command is not None and command.kind == "retry":
        return tx.retry(command)
    if st.phase == "Pending":
        return _start(tx)
    if st.phase == "Validating":
        return _validating(tx, validation)
    if st.phase == "Paused" and st.pauseReason == "rolloutDisabled":
        if command is not None and command.kind == "abort":
            return tx.finish_failed("aborted before rollout", action="fail")
        if release.spec.rollout.enabled and (command is None or command.kind != "pause"):
            return tx.enter_stage(0, "rollout enabled: starting the first stage")
        return tx.done("wait")
    if st.phase in _STAGE_PHASES or st.phase == "Paused":
        return _in_stage(tx, list(verdicts), command)
    if st.phase == "Promoted":
        return _promoted(tx, command)
    if command is not None:
        return tx.reject(command, f"release is {st.phase}")
    return tx.done("none")


def _start(tx: Tx) -> Decision:
    st, spec = tx.st, tx.release.spec
    if tx.facts.cooldown_until is not None and tx.now < tx.facts.cooldown_until:
        return tx.wait_once("cooldown", f"cooldown after a rollback until {tx.facts.cooldown_until.isoformat()}")
    if tx.facts.missing_models:
        # Refused before any effect: a release of a model the registry does not hold would walk the
        # stages and reach Promoted while its slot effect could never apply.
        st.startedAt = tx.iso
        what = "; ".join(f"{field}: model {model!r} is not in the registry" for field, model in tx.facts.missing_models)
        return tx.finish_failed(f"release refused: {what}", action="fail", gate="spec")
    st.startedAt = tx.iso
    st.previousModelId = spec.previousModelId or tx.facts.active_model_id
    st.mode = tx.facts.rollout_mode  # type: ignore[assignment]
    st.tauEntry, st.tauHold = tx.facts.candidate_tau
    st.phase = "Validating"
    tx.log(action="start", reason=f"release of {spec.modelId} started; rollback target "
                                  f"{st.previousModelId or '(none)'}")
    if spec.validations.skip:
        return _after_validation(tx, "validations skipped (spec.validations.skip)")
    return tx.done("start")


def _validating(tx: Tx, validation: ValidationOutcome | None) -> Decision:
    spec = tx.release.spec
    if spec.validations.skip:
        return _after_validation(tx, "validations skipped (spec.validations.skip)")
    if validation is None:
        return tx.done("wait")
    tx.st.validation = [dict(c) for c in validation.checks]
    if not validation.passed:
        return tx.finish_failed(f"validation failed: {validation.summary}", action="fail", gate="validation")
    return _after_validation(tx, f"validation passed: {validation.summary}")


def _after_validation(tx: Tx, reason: str) -> Decision:
    tx.condition("Validated", "True", "Passed" if "passed" in reason else "Skipped", reason)
    if not tx.release.spec.rollout.enabled:
        tx.rollout("disabled", 0.0, active=tx.st.previousModelId, candidate=None,
                   reason="rollout disabled after validation", label="validation")
        st = tx.st
        st.phase, st.pausedFrom, st.pauseReason, st.pausedAt = "Paused", "Validating", "rolloutDisabled", tx.iso
        st.message = "validations done; rollout disabled (spec.rollout.enabled=false)"
        tx.log(action="pause", reason=f"{reason}; rollout disabled (spec.rollout.enabled=false)")
        return tx.done("pause")
    return tx.enter_stage(0, reason)


def _in_stage(tx: Tx, verdicts: list[GateVerdict], command: Command | None) -> Decision:
    st, spec, limits = tx.st, tx.release.spec, tx.limits
    stage = spec.stages[st.stageIndex]
    required = gates_for_stage(stage.weight, limits)
    by_gate = {v.gate: v for v in verdicts if v.gate in required}
    for g in required:
        if g not in by_gate:
            by_gate[g] = GateVerdict(g, Verdict.UNAVAILABLE, reason="not evaluated")
    current = [by_gate[g] for g in required]
    tx.record_verdicts(current)

    if command is not None:
        if command.kind == "abort":
            return tx.rollback("manual_abort", command.reason or "aborted by an operator")
        if command.kind == "pause":
            if st.phase == "Paused":
                return tx.reject(command, "already paused")
            st.pausedFrom, st.phase, st.pausedAt, st.pauseReason = st.phase, "Paused", tx.iso, "manual"
            tx.log(action="pause", reason=command.reason or "paused by an operator")
            return tx.done("pause")
        if command.kind == "resume":
            if st.phase != "Paused":
                return tx.reject(command, f"not paused (phase {st.phase})")
            tx.resume(command.reason or "resumed by an operator")
        # promote is handled after the safety checks below

    failing = [v for v in current if v.verdict == Verdict.FAIL
               and (v.critical or st.gates[v.gate].consecutiveFailures >= spec.guardRails.failureLimit)]
    if failing:
        first = sorted(failing, key=lambda v: not v.critical)[0]
        return tx.rollback(first.gate, first.reason, verdict=first)

    if command is not None and command.kind == "promote":
        blocking = [v for v in current if v.verdict != Verdict.PASS]
        if st.phase == "Paused":
            return tx.reject(command, "paused: resume first")
        if blocking and not command.force:
            names = ", ".join(f"{v.gate} {v.verdict}" for v in blocking)
            return tx.reject(command, f"promote refused: not every gate is PASS ({names}); use --force to override")
        target = len(spec.stages) - 1 if command.full else st.stageIndex + 1
        return tx.enter_stage(min(target, len(spec.stages) - 1),
                              f"manual promote{' (forced)' if command.force and blocking else ''}"
                              f"{': ' + command.reason if command.reason else ''}", manual=True)

    if st.phase == "Paused":
        return tx.done("wait")

    unavailable = [v for v in current if v.verdict == Verdict.UNAVAILABLE]
    if unavailable:
        policy = spec.guardRails.onUnavailable
        why = "; ".join(f"{v.gate}: {v.reason}" for v in unavailable)
        if policy.action == "rollback":
            return tx.rollback("unavailable", why, verdict=unavailable[0])
        if st.holdSince is None:
            st.holdSince = tx.iso
            tx.log(action="hold", reason=f"holding at {stage.name}: {why}", verdict=unavailable[0])
            return tx.done("hold")
        held = tx.seconds_since(st.holdSince)
        if held >= policy.maxHold:
            msg = f"gates unavailable for {held:.0f}s >= maxHold {policy.maxHold:g}s: {why}"
            if policy.then == "rollback":
                return tx.rollback("unavailable", msg, verdict=unavailable[0])
            return tx.pause_for("unavailable", msg)
        return tx.done("hold")
    if st.holdSince is not None:
        tx.log(action="resume", reason=f"gates available again after {tx.seconds_since(st.holdSince):.0f}s hold")
        st.holdSince = None

    elapsed = tx.seconds_since(st.stageStartedAt)
    insufficient = [v for v in current if v.verdict == Verdict.INSUFFICIENT]
    if insufficient:
        why = "; ".join(f"{v.gate}: {v.reason}" for v in insufficient)
        if stage.maxDuration is not None and elapsed >= stage.maxDuration:
            msg = f"stage {stage.name} reached maxDuration {stage.maxDuration:g}s without enough samples: {why}"
            if spec.guardRails.onInsufficient.then == "rollback":
                return tx.rollback("insufficient_sample", msg, verdict=insufficient[0])
            return tx.pause_for("insufficient", msg)
        return tx.wait_once("extend", f"waiting for samples at {stage.name}: {why}")

    if any(v.verdict != Verdict.PASS for v in current):  # a FAIL still under failureLimit
        return tx.done("wait")
    if st.stageIndex + 1 >= len(spec.stages):
        return tx.done("wait")
    if stage.duration is None:
        return tx.wait_once("wait", f"stage {stage.name} has no duration: waiting for a manual promote")
    if elapsed >= stage.duration:
        return tx.enter_stage(st.stageIndex + 1,
                              f"stage {stage.name}: every gate PASS after {elapsed:.0f}s >= {stage.duration:g}s")
    wr = by_gate.get("winrate")
    if limits.early_promote and stage.weight > 0 and wr is not None and (wr.evidence or {}).get("non_inferior"):
        return tx.enter_stage(st.stageIndex + 1, f"stage {stage.name}: every gate PASS and the canary is shown "
                                                 f"non-inferior after {elapsed:.0f}s (earlyPromote): {wr.reason}")
    return tx.done("wait")


def _promoted(tx: Tx, command: Command | None) -> Decision:
    st, policy = tx.st, tx.release.spec.thresholds
    if command is not None:
        if command.kind == "abort":
            return tx.rollback("manual_abort", command.reason or "rolled back by an operator after promotion")
        return tx.reject(command, "release is already Promoted")
    if not policy.adaptive.enabled or st.promotedAt is None:
        return tx.done("none")
    frozen_until = tx.parse(st.promotedAt) + dt.timedelta(seconds=policy.freezeFor)
    if tx.now < frozen_until:
        return tx.done("none")
    if st.lastAdaptiveAt is not None and tx.seconds_since(st.lastAdaptiveAt) < policy.adaptive.interval:
        return tx.done("none")
    if tx.facts.precision is None or st.tauEntry is None or st.tauHold is None:
        return tx.wait_once("wait", "adaptive tuning: precision or thresholds unknown; no step")
    old = (st.tauEntry, st.tauHold)
    new = adaptive_step(st.tauEntry, st.tauHold, tx.facts.precision, policy.adaptive)
    st.lastAdaptiveAt = tx.iso
    if new == old:
        return tx.done("none")
    st.tauEntry, st.tauHold = new
    tx.rollout("full", 1.0, active=tx.release.spec.modelId, candidate=None,
               reason=f"adaptive step: tau_entry {old[0]:g}->{new[0]:g}", label="adaptive")
    tx.log(action="adapt", gate="precision", value=tx.facts.precision,
           threshold=policy.adaptive.targetPrecision,
           reason=f"tau_entry {old[0]:g}->{new[0]:g}, tau_hold {old[1]:g}->{new[1]:g} "
                  f"(precision {tx.facts.precision:.4f}, target {policy.adaptive.targetPrecision:g})")
    return tx.done("adapt")
