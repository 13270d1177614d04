"""Where a report's numbers come from: the local driver's state directory, and Prometheus.

``from_state_dir`` needs nothing but ``<state-dir>/<name>/{release.yaml,status.json}``
(the local driver's files; the operator's CR status has the same shape). It
rebuilds the stage timeline and every gate's value at each logged verdict.

``add_prometheus`` (``--prometheus URL``) runs range queries over the release's
time window with the same PromQL the gates evaluate (``gate_queries``, with the
release's windows and label matchers), plus the per-route win rates and the
ai_scorer's score-distribution gauges, and replaces the sparse decision-log
lines with the dense ones. A query that fails or returns nothing leaves the
decision-log data in place and adds a note saying so: a report is never blocked
by a Prometheus outage.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from tidegate.config.schema import RolloutGuardConfig
from tidegate.release.gates import gate_queries, selector
from tidegate.release.spec import Limits, ModelRelease, ReleaseStatus, effective_limits
from tidegate.release.transitions import parse_time
from tidegate.report.model import GateTrack, ReportData, ScoreStats, Series
from tidegate.report.timeline import gate_tracks, marks_from, stage_spans, winrate_from_gate

SCORE_STATS = ("p10", "p50", "p90", "mean", "std", "count")


class ReportSourceError(ValueError):
    """The state directory has no readable release of that name."""


def build(release: ModelRelease, status: ReleaseStatus | None, *, limits: Limits,
          now: dt.datetime) -> ReportData:
    """ReportData from a release document and its status (pure)."""
    st = status or ReleaseStatus()
    marks = marks_from(st.decisions)
    tracks = gate_tracks(limits, st, marks)
    winrate, baseline = winrate_from_gate(next((t for t in tracks if t.gate == "winrate"), None),
                                          limits.winrate_delta_pp)
    notes = []
    if len(st.decisions) >= release.spec.decisionLogLimit:
        notes.append(f"the decision log is bounded to {release.spec.decisionLogLimit} rows; older rows were "
                     "dropped by the engine and are missing here")
    return ReportData(
        name=release.name, model_id=release.spec.modelId, previous_model_id=st.previousModelId,
        phase=st.phase, stage=st.stage, weight=st.weight,
        started_at=parse_time(st.startedAt) if st.startedAt else None,
        finished_at=parse_time(st.finishedAt) if st.finishedAt else None, generated_at=now,
        rollback_reason=st.rollbackReason, message=st.message, winrate_delta_pp=limits.winrate_delta_pp,
        spans=stage_spans(release, st, marks), marks=marks, gates=tracks, winrate=winrate, baseline=baseline,
        winrate_source="decisions" if winrate else "none", scores=(), scores_source="none",
        gate_status={g: s.model_dump(mode="json") for g, s in st.gates.items()}, notes=tuple(notes))


def from_state_dir(state_dir: Path, name: str, *, guard_defaults: RolloutGuardConfig | None = None,
                   now: dt.datetime | None = None) -> tuple[ReportData, ModelRelease, Limits]:
    from tidegate.release.local import ReleaseStore

    store = ReleaseStore(Path(state_dir), name)
    if not store.exists():
        raise ReportSourceError(f"no release named {name!r} in {state_dir} (expected {store.spec_path})")
    try:
        release = store.load_release()
        status = store.load_status()
    except (OSError, ValueError) as exc:
        raise ReportSourceError(f"release {name!r} in {state_dir} is unreadable: {exc}") from None
    limits = effective_limits(release.spec, guard_defaults)
    return build(release, status, limits=limits, now=now or dt.datetime.now(dt.UTC)), release, limits


class RangeClient(Protocol):
    def custom_query_range(self, query: str, start_time: dt.datetime, end_time: dt.datetime,
                           step: str) -> list[dict[str, Any]]: ...


def _series(result: list[dict[str, Any]], label: str) -> Series:
    """The first series of a range result (the gate queries aggregate to one)."""
    if not result:
        return Series(label)
    return _to_series(result[0].get("values") or [], label)


def _to_series(values: list[list[Any]], label: str) -> Series:
    pts = []
    for ts, raw in values:
        try:
            v = float(raw)
        except (TypeError, ValueError):
            continue
        if not math.isnan(v) and not math.isinf(v):
            pts.append((dt.datetime.fromtimestamp(float(ts), dt.UTC), v))
    return Series(label, tuple(t for t, _ in pts), tuple(v for _, v in pts))


def _by_label(result: list[dict[str, Any]], label: str) -> dict[str, Series]:
    out = {}
    for item in result:
        key = item.get("metric", {}).get(label, "")
        s = _to_series(item.get("values") or [], key)
        if s:
            out[key] = s
    return out


def step_for(start: dt.datetime, end: dt.datetime, points: int = 400) -> float:
    """A step giving about ``points`` samples, never finer than 0.25 s."""
    return max(0.25, (end - start).total_seconds() / points)


def add_prometheus(data: ReportData, limits: Limits, client: RangeClient) -> ReportData:
    """Densify gate lines, win rates and score distributions with range queries."""
    start, end = data.window
    pad = dt.timedelta(seconds=max(1.0, (end - start).total_seconds() * 0.02))
    start, end = start - pad, end + pad
    step = f"{step_for(start, end):g}"  # seconds; Prometheus parses a bare float, not "0.25s"
    notes = list(data.notes)
    failed: list[str] = []

    def query(promql: str) -> list[dict[str, Any]]:
        try:
            return client.custom_query_range(promql, start_time=start, end_time=end, step=step)
        except Exception as exc:  # connection refused, HTTP error, timeout, bad PromQL: never fatal
            failed.append(f"{promql}: {type(exc).__name__}: {str(exc)[:120]}")
            return []

    tracks: list[GateTrack] = []
    baseline_q = f"max({selector('winrate_baseline_active', limits)})"
    baseline = _series(query(baseline_q), "winrate_baseline_active")
    for track in data.gates:
        # the win-rate gate decides on counters; its chart shows risk's gauge of the same attempt
        promql = f"min({selector('winrate_canary', limits)})" if track.gate == "winrate" \
            else gate_queries(track.gate, limits)[0].promql
        value = _series(query(promql), track.gate)
        if not value:
            tracks.append(track)
            continue
        if track.gate == "winrate":
            threshold = baseline.shifted(-limits.winrate_delta_pp / 100.0, "winrate threshold") if baseline \
                else track.threshold
        else:
            constant = _constant_threshold(track.gate, limits)
            threshold = Series(f"{track.gate} threshold", value.times, tuple(constant for _ in value.times))
        tracks.append(replace(track, value=value, threshold=threshold, source="prometheus"))

    routes = _by_label(query(selector("winrate_rolling", limits)), "route")
    winrate, winrate_source = (routes, "prometheus") if routes else (data.winrate, data.winrate_source)
    if not baseline:
        baseline = data.baseline

    scores = []
    for metric, label in (("model_score_distribution", "active (deciding model)"),
                          ("shadow_score_distribution", "shadow (candidate)")):
        by_stat = _by_label(query(f"max by (stat) ({selector(metric, limits, split='online')})"), "stat")
        if by_stat:
            scores.append(ScoreStats(label, {k: by_stat[k] for k in SCORE_STATS if k in by_stat}))
    if failed:
        notes.append(f"Prometheus: {len(failed)} range quer{'y' if len(failed) == 1 else 'ies'} failed; "
                     f"decision-log values are shown instead (first: {failed[0]})")
    return replace(data, gates=tuple(tracks), winrate=winrate, winrate_source=winrate_source,  # type: ignore[arg-type]
                   baseline=baseline, scores=tuple(scores), scores_source="prometheus" if scores else "none",
                   notes=tuple(notes))


def _constant_threshold(gate: str, limits: Limits) -> float:
    return {"psi": limits.psi_block, "ks": limits.ks_block, "fill_rate": limits.fill_rate_min,
            "markout": limits.markout_min_bps, "ece": limits.ece_max, "parity": 0.0}[gate]


def prometheus_client(url: str, timeout: float = 10.0) -> RangeClient:
    from prometheus_api_client import PrometheusConnect
    from urllib3.util.retry import Retry

    return PrometheusConnect(url=url, disable_ssl=True, retry=Retry(total=0), timeout=timeout)
