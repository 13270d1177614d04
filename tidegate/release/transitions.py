"""State transitions of one engine tick: the only place that edits a status and emits effects.

``Tx`` wraps a copy of the status for one call of ``decide``. Every transition
(enter a stage, roll back, pause, retry) both edits the status and appends the
effects that make the world match it, with ids derived from the release name, the
attempt and a per-release sequence number, so an effect replayed after a crash
carries the same id (JetStream de-duplicates the MODE_SWITCH by it).

Effect kinds (applied by tidegate.release.effects):
``rollout`` (write RolloutState to KV), ``slot`` (registry active/shadow pointer),
``mode_switch`` (MODE_SWITCH control event + mode_switch_total), ``rollback``
(rollback_total{reason}), ``record`` (the release entry in manifest.json).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from tidegate.release.decision import Action, Command, Decision, Facts
from tidegate.release.spec import (
    Condition,
    DecisionRecord,
    GateStatus,
    Limits,
    ModelRelease,
    PendingEffect,
    ReleaseStatus,
)
from tidegate.release.verdicts import GateVerdict, Verdict


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="milliseconds")


def parse_time(s: str) -> dt.datetime:
    t = dt.datetime.fromisoformat(s)
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def set_condition(st: ReleaseStatus, type_: str, status: str, reason: str, message: str, now_iso: str) -> None:
    """Replace condition ``type_``; its transition time moves only when its status changes."""
    conds = [c for c in st.conditions if c.type != type_]
    old = next((c for c in st.conditions if c.type == type_), None)
    since = old.lastTransitionTime if old is not None and old.status == status else now_iso
    conds.append(Condition(type=type_, status=status, reason=reason, message=message,  # type: ignore[arg-type]
                           lastTransitionTime=since))
    st.conditions = conds


class Tx:
    def __init__(self, release: ModelRelease, st: ReleaseStatus, now: dt.datetime, limits: Limits, facts: Facts):
        self.release, self.st, self.now, self.limits, self.facts = release, st, now, limits, facts
        self.iso = iso(now)
        self.effects: list[PendingEffect] = []

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def parse(s: str) -> dt.datetime:
        return parse_time(s)

    def seconds_since(self, s: str | None) -> float:
        return 0.0 if s is None else (self.now - parse_time(s)).total_seconds()

    def done(self, action: Action) -> Decision:
        return Decision(self.st, action, tuple(self.effects))

    def log(self, *, action: str, reason: str, gate: str = "", verdict: GateVerdict | None = None,
            value: float | None = None, threshold: float | None = None) -> None:
        st = self.st
        rec = DecisionRecord(at=self.iso, stage=st.stage or st.phase, gate=gate, action=action, reason=reason,
                             value=value, threshold=threshold)
        if verdict is not None:
            rec = rec.model_copy(update={"gate": verdict.gate, "verdict": str(verdict.verdict), "value": verdict.value,
                                         "sample": verdict.sample, "threshold": verdict.threshold,
                                         "query": verdict.query, "evidence": verdict.evidence})
        st.decisions.append(rec)
        limit = self.release.spec.decisionLogLimit
        if len(st.decisions) > limit:
            del st.decisions[: len(st.decisions) - limit]
        st.message = reason

    def wait_once(self, action: Action, reason: str) -> Decision:
        """Log a waiting reason once, not on every tick."""
        last = self.st.decisions[-1] if self.st.decisions else None
        if last is None or last.reason != reason:
            self.log(action=action, reason=reason)
        return self.done(action)

    def condition(self, type_: str, status: str, reason: str, message: str) -> None:
        set_condition(self.st, type_, status, reason, message, self.iso)

    def effect(self, kind: str, **args: Any) -> None:
        st = self.st
        st.sequence += 1
        eid = f"{self.release.name}/{st.retries}/{st.sequence}/{kind}"
        self.effects.append(PendingEffect(id=eid, kind=kind, args=args))
        st.pendingEffects.append(self.effects[-1])

    def rollout(self, mode: str, fraction: float, *, active: str | None, candidate: str | None, reason: str,
                label: str = "advance", always_switch: bool = False) -> None:
        st = self.st
        st.rolloutRevision += 1
        tau_entry, tau_hold = (st.tauEntry, st.tauHold) if mode == "full" else (None, None)
        self.effect("rollout", mode=mode, canary_fraction=round(fraction, 6),
                    rng_seed=self.release.spec.rollout.rngSeed if self.release.spec.rollout.rngSeed is not None
                    else self.facts.rng_seed,
                    active_model_id=active, candidate_model_id=candidate, tau_entry=tau_entry, tau_hold=tau_hold,
                    release=self.release.name, revision=st.rolloutRevision, reason=reason)
        previous = st.mode or "disabled"
        if previous != mode or always_switch:
            self.effect("mode_switch", from_mode=previous, to_mode=mode, reason=reason, label=label,
                        release=self.release.name)
        st.mode = mode  # type: ignore[assignment]

    def slot(self, slot: str, model_id: str | None, reason: str) -> None:
        self.effect("slot", slot=slot, model_id=model_id, reason=reason)

    def record(self) -> None:
        st, spec, lim = self.st, self.release.spec, self.limits
        self.effect("record", record={
            "name": self.release.name, "model_id": spec.modelId, "previous_model_id": st.previousModelId,
            "outcome": st.phase, "reason": st.rollbackReason or st.message, "started_at": st.startedAt,
            "finished_at": self.iso, "attempt": st.retries, "notes": spec.notes,
            "tau_entry": st.tauEntry, "tau_hold": st.tauHold,   # what the model served with (manual rollback)
            "stages": [s.model_dump(mode="json", exclude_none=True) for s in spec.stages],
            "evaluation_windows": {"analysis_interval_s": spec.analysis.interval,
                                   "parity_window_s": lim.parity_window, "drift_window_s": lim.drift_window,
                                   "stale_after_s": lim.stale_after},
            "guard_rails": lim.model_dump(mode="json"),
            "validation": st.validation})

    def record_verdicts(self, verdicts: list[GateVerdict]) -> None:
        """Keep the latest verdict per gate; log a decision row whenever a gate's verdict changes."""
        for v in verdicts:
            prev = self.st.gates.get(v.gate)
            fails = (prev.consecutiveFailures + 1 if prev else 1) if v.verdict == Verdict.FAIL else 0
            self.st.gates[v.gate] = GateStatus(verdict=str(v.verdict), value=v.value, sample=v.sample,
                                               threshold=v.threshold, evidence=v.evidence, at=self.iso,
                                               consecutiveFailures=fails)
            if prev is None or prev.verdict != str(v.verdict):
                self.log(action="observe", reason=v.reason, verdict=v)

    # -- transitions -----------------------------------------------------------------------
    def enter_stage(self, index: int, reason: str, *, manual: bool = False) -> Decision:
        st, spec = self.st, self.release.spec
        stage = spec.stages[index]
        cand, prev = spec.modelId, st.previousModelId
        st.stageIndex, st.stage, st.weight = index, stage.name, max(st.weight, stage.weight)
        st.stageStartedAt, st.holdSince = self.iso, None
        st.pausedAt = st.pausedFrom = st.pauseReason = None
        st.gates = {}
        if stage.weight >= 100:
            self.slot("active", cand, f"release {self.release.name}: promoted")
            self.slot("shadow", None, f"release {self.release.name}: promoted")
            self.rollout("full", 1.0, active=cand, candidate=None, reason=f"promoted: {reason}", label="promote")
            st.phase, st.promotedAt, st.finishedAt = "Promoted", self.iso, self.iso
            self.condition("Promoted", "True", "Manual" if manual else "GatesPassed", reason)
            self.log(action="promote", reason=f"entered {stage.name} (weight 100%): {cand} is active; {reason}")
            self.record()
            return self.done("promote")
        self.slot("shadow", cand, f"release {self.release.name}: {stage.name}")
        if stage.weight == 0:
            self.rollout("disabled", 0.0, active=prev, candidate=cand, reason=f"shadow: {reason}", label="shadow")
            st.phase = "Shadow"
        else:
            if st.canaryStartedAt is None:   # the attempt's evidence counts from its first weighted stage
                st.canaryStartedAt = self.iso
            self.rollout("canary", stage.weight / 100.0, active=prev, candidate=cand,
                         reason=f"{stage.name} at {stage.weight}%: {reason}")
            earlier = [s for s in spec.stages[:index] if 0 < s.weight < 100]
            st.phase = "Ramping" if earlier else "Canary"
        self.condition("Progressing", "True", "StageEntered", f"{stage.name} at {stage.weight}%")
        self.log(action="advance", reason=f"entered {stage.name} (weight {stage.weight}%): {reason}")
        return self.done("advance")

    def rollback(self, reason: str, detail: str, *, verdict: GateVerdict | None = None) -> Decision:
        st = self.st
        prev = st.previousModelId
        if prev is not None:
            self.slot("active", prev, f"rollback of {self.release.name}: {reason}")
        self.slot("shadow", None, f"rollback of {self.release.name}: {reason}")
        self.rollout("disabled", 0.0, active=prev, candidate=None, reason=f"rollback: {reason}",
                     label=reason, always_switch=True)
        self.effect("rollback", reason=reason, release=self.release.name)
        st.phase, st.weight, st.rollbackReason = "RolledBack", 0, reason
        st.finishedAt, st.holdSince = self.iso, None
        st.pausedAt = st.pausedFrom = st.pauseReason = None
        st.cooldownUntil = iso(self.now + dt.timedelta(seconds=self.limits.cooldown))
        self.condition("RolledBack", "True", reason, detail)
        self.log(action="rollback", reason=f"rollback ({reason}): {detail}", verdict=verdict)
        self.record()
        return self.done("rollback")

    def finish_failed(self, message: str, *, action: Action, gate: str = "") -> Decision:
        st = self.st
        st.phase, st.finishedAt = "Failed", self.iso
        st.pausedAt = st.pausedFrom = st.pauseReason = None
        self.condition("Failed", "True", gate or "Failed", message)
        self.log(action=action, reason=message, gate=gate)
        self.record()
        return self.done(action)

    def pause_for(self, why: str, message: str) -> Decision:
        st = self.st
        st.pausedFrom, st.phase, st.pausedAt, st.pauseReason = st.phase, "Paused", self.iso, why  # type: ignore
        self.log(action="pause", reason=message)
        return self.done("pause")

    def resume(self, reason: str) -> None:
        st = self.st
        if st.pausedAt is not None and st.stageStartedAt is not None:  # paused time does not count
            shift = dt.timedelta(seconds=self.seconds_since(st.pausedAt))
            st.stageStartedAt = iso(parse_time(st.stageStartedAt) + shift)
        st.phase = st.pausedFrom or "Shadow"
        st.pausedAt = st.pausedFrom = st.pauseReason = None
        st.holdSince = None
        self.log(action="resume", reason=reason)

    def reject(self, command: Command, why: str) -> Decision:
        self.log(action="reject", reason=f"{command.kind} rejected: {why}")
        return self.done("reject")

    def retry(self, command: Command) -> Decision:
        st = self.st
        if st.phase not in ("RolledBack", "Failed"):
            return self.reject(command, f"only a RolledBack or Failed release can be retried (phase {st.phase})")
        if st.cooldownUntil is not None and self.now < parse_time(st.cooldownUntil):
            return self.reject(command, f"cooldown until {st.cooldownUntil}")
        st.retries += 1
        st.phase, st.stage, st.stageIndex, st.weight = "Validating", "", -1, 0
        st.rollbackReason = st.finishedAt = st.holdSince = st.promotedAt = st.stageStartedAt = None
        st.startedAt, st.gates, st.validation = self.iso, {}, []
        st.conditions = [c for c in st.conditions if c.type not in ("RolledBack", "Failed", "Promoted")]
        self.log(action="retry", reason=f"retry #{st.retries}{': ' + command.reason if command.reason else ''}")
        return self.done("retry")
