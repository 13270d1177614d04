"""From a release's status (its decision log) to what the report draws. Pure functions.

The decision log is the record the engine keeps of *why* (``tidegate/release/
transitions.py``): a row whenever a stage is entered, a gate's verdict changes,
the release holds, pauses, rolls back or is promoted, each with the gate's value,
sample and threshold at that moment. That is enough to rebuild the stage
timeline exactly and each gate's value at every verdict change, so a report can
be made from the state directory alone (an incident review after Prometheus
retention has expired still gets its charts); Prometheus range data, when
available, only densifies the lines between those points.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence

from tidegate.release.spec import DecisionRecord, Limits, ModelRelease, ReleaseStatus
from tidegate.release.transitions import parse_time
from tidegate.report.model import GateTrack, Mark, Series, StageSpan

LOWER_IS_BAD = frozenset({"winrate", "fill_rate", "markout"})
_WEIGHT = re.compile(r"weight (\d+)%")
_ENTER = ("advance", "promote")
_END = ("rollback", "fail")


def marks_from(decisions: Iterable[DecisionRecord]) -> tuple[Mark, ...]:
    out = [Mark(at=parse_time(d.at), stage=d.stage, action=d.action, gate=d.gate, verdict=d.verdict,
                value=d.value, threshold=d.threshold, sample=d.sample, reason=d.reason) for d in decisions]
    return tuple(sorted(out, key=lambda m: m.at))


def stage_spans(release: ModelRelease, status: ReleaseStatus, marks: Sequence[Mark]) -> tuple[StageSpan, ...]:
    """The stages each attempt went through, from the advance/promote/rollback/retry rows."""
    weights = {s.name: s.weight for s in release.spec.stages}
    spans: list[StageSpan] = []
    open_: tuple[str, int, dt.datetime] | None = None
    attempt = 0

    def close(at: dt.datetime) -> None:
        nonlocal open_
        if open_ is not None and at > open_[2]:
            spans.append(StageSpan(open_[0], open_[1], open_[2], at, attempt))
        open_ = None

    for m in marks:
        if m.action in ("start", "retry"):
            close(m.at)
            if m.action == "retry":
                attempt += 1
            open_ = ("validating", 0, m.at)
        elif m.action in _ENTER:
            close(m.at)
            found = _WEIGHT.search(m.reason)
            weight = weights.get(m.stage, int(found.group(1)) if found else 0)
            open_ = (m.stage, weight, m.at)
        elif m.action in _END:
            close(m.at)
    if open_ is not None:
        end = parse_time(status.finishedAt) if status.finishedAt and status.phase in ("RolledBack", "Failed") \
            else None
        if end is None or end > open_[2]:
            spans.append(StageSpan(open_[0], open_[1], open_[2], end, attempt))
    return tuple(spans)


def gate_tracks(limits: Limits, status: ReleaseStatus, marks: Sequence[Mark]) -> tuple[GateTrack, ...]:
    """Each gate's value and threshold at every logged verdict (and its latest status)."""
    out = []
    for gate in limits.gates:
        obs = tuple(m for m in marks if m.gate == gate and m.verdict)
        points = [(m.at, m.value, m.threshold) for m in obs]
        latest = status.gates.get(gate)
        if latest is not None and latest.at:
            at = parse_time(latest.at)
            if not points or at > points[-1][0]:
                points.append((at, latest.value, latest.threshold))
        vals = [(t, v) for t, v, _ in points if v is not None]
        ths = [(t, th) for t, _, th in points if th is not None]
        out.append(GateTrack(
            gate=gate, value=Series(gate, tuple(t for t, _ in vals), tuple(float(v) for _, v in vals)),
            threshold=Series(f"{gate} threshold", tuple(t for t, _ in ths), tuple(float(v) for _, v in ths)),
            observations=obs, source="decisions" if vals else "none", lower_is_bad=gate in LOWER_IS_BAD))
    return tuple(out)


def winrate_from_gate(track: GateTrack | None, delta_pp: float) -> tuple[dict[str, Series], Series]:
    """Canary win rate and the baseline (= winrate threshold + delta) from the winrate gate's rows."""
    if track is None or not track.value:
        return {}, Series("baseline")
    baseline = track.threshold.shifted(delta_pp / 100.0, "winrate_baseline_active")
    return {"canary": Series("canary", track.value.times, track.value.values)}, baseline
