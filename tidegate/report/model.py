"""The release report's data: plain frozen values, filled by sources and drawn by charts.

Three layers keep the report testable without a browser or a server: sources
(state directory, optional Prometheus) produce a :class:`ReportData`; charts turn
it into PNG bytes; the page puts the PNGs and tables into one HTML file. Nothing
here does I/O.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

Source = Literal["prometheus", "decisions", "none"]


@dataclass(frozen=True)
class Series:
    """A time series: parallel tuples of timestamps and values."""

    label: str
    times: tuple[dt.datetime, ...] = ()
    values: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if len(self.times) != len(self.values):
            raise ValueError(f"series {self.label!r}: {len(self.times)} times but {len(self.values)} values")

    def __bool__(self) -> bool:
        return bool(self.times)

    def shifted(self, offset: float, label: str) -> Series:
        return Series(label, self.times, tuple(v + offset for v in self.values))


@dataclass(frozen=True)
class StageSpan:
    """Time spent in one stage of one attempt (``end`` None: still there when the report was made)."""

    name: str
    weight: int
    start: dt.datetime
    end: dt.datetime | None
    attempt: int = 0


@dataclass(frozen=True)
class Mark:
    """One decision-log row placed on the time axis."""

    at: dt.datetime
    stage: str
    action: str
    gate: str = ""
    verdict: str = ""
    value: float | None = None
    threshold: float | None = None
    sample: float | None = None
    reason: str = ""


@dataclass(frozen=True)
class GateTrack:
    """One gate over the release: its value, its threshold, and the verdicts logged for it."""

    gate: str
    value: Series
    threshold: Series
    observations: tuple[Mark, ...] = ()
    source: Source = "none"
    lower_is_bad: bool = False


@dataclass(frozen=True)
class ScoreStats:
    """Online score distribution of one model (ai_scorer's *_score_distribution{stat})."""

    label: str
    stats: dict[str, Series] = field(default_factory=dict)   # mean, std, p10, p50, p90, count

    def latest(self) -> dict[str, float]:
        return {k: s.values[-1] for k, s in self.stats.items() if s}


@dataclass(frozen=True)
class ReportData:
    name: str
    model_id: str
    previous_model_id: str | None
    phase: str
    stage: str
    weight: int
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    generated_at: dt.datetime
    rollback_reason: str | None
    message: str
    winrate_delta_pp: float
    spans: tuple[StageSpan, ...]
    marks: tuple[Mark, ...]
    gates: tuple[GateTrack, ...]
    winrate: dict[str, Series]            # by route
    baseline: Series                      # winrate_baseline_active
    winrate_source: Source
    scores: tuple[ScoreStats, ...]        # active, shadow
    scores_source: Source
    gate_status: dict[str, dict[str, object]]
    notes: tuple[str, ...] = ()

    @property
    def window(self) -> tuple[dt.datetime, dt.datetime]:
        """The time range the charts cover: first decision to the end (or now)."""
        starts = [m.at for m in self.marks] + [s.start for s in self.spans]
        start = min(starts) if starts else (self.started_at or self.generated_at)
        end = self.finished_at or self.generated_at
        ends = [m.at for m in self.marks]
        if ends:
            end = max(end, *ends)
        if end <= start:
            end = start + dt.timedelta(seconds=1)
        return start, end
