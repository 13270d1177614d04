"""The report's PNG charts (matplotlib, Agg backend): ReportData in, PNG bytes out.

Every chart shares the same time axis and the same stage shading, so an operator
can read across charts: "the win rate fell here, the gate turned FAIL at this
mark, and the release rolled back at this line". A chart with no data still
renders, with a sentence saying what is missing and how to get it, because a
missing image on a change ticket reads as a broken report.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from tidegate.report.model import GateTrack, Mark, ReportData, Series, StageSpan

VERDICT_STYLE = {"PASS": ("#2e7d32", "o"), "FAIL": ("#c62828", "X"), "INSUFFICIENT": ("#757575", "^"),
                 "UNAVAILABLE": ("#ef6c00", "s")}
ACTION_COLOR = {"advance": "#2e7d32", "promote": "#1b5e20", "rollback": "#c62828", "fail": "#c62828",
                "hold": "#ef6c00", "pause": "#ef6c00", "resume": "#1565c0", "retry": "#1565c0",
                "start": "#455a64"}
STAGE_COLORS = ("#e3f2fd", "#fff8e1", "#f1f8e9", "#fce4ec", "#ede7f6", "#e0f7fa")
ROUTE_COLORS = {"canary": "#c62828", "paper": "#1565c0", "full": "#2e7d32"}
GATE_TITLES = {"winrate": "win rate (canary)", "parity": "ONNX parity failures (increase)",
               "psi": "PSI (max over features)", "ks": "KS (max over features)", "fill_rate": "fill rate (canary)",
               "markout": "avg markout 1000 ms, bps (canary)", "ece": "ECE (online)"}


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return buf.getvalue()


def _time_axis(ax: Axes, window: tuple[dt.datetime, dt.datetime]) -> None:
    x0, x1 = mdates.date2num(window[0]), mdates.date2num(window[1])
    pad = (x1 - x0) * 0.02
    ax.set_xlim(x0 - pad, x1 + pad)
    locator = mdates.AutoDateLocator(tz=dt.UTC)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=dt.UTC))
    ax.grid(True, alpha=0.3)


def _shade(ax: Axes, spans: Sequence[StageSpan], end: dt.datetime, *, label: bool) -> None:
    names = sorted({s.name for s in spans}, key=[s.name for s in spans].index)
    for span in spans:
        color = STAGE_COLORS[names.index(span.name) % len(STAGE_COLORS)]
        x0, x1 = mdates.date2num(span.start), mdates.date2num(span.end or end)
        ax.axvspan(x0, x1, color=color, alpha=0.9, zorder=0, lw=0)
        if label:
            ax.text((x0 + x1) / 2, 1.0, f"{span.name}\n{span.weight}%", transform=ax.get_xaxis_transform(),
                    ha="center", va="bottom", fontsize=8, clip_on=False)


def _decision_lines(ax: Axes, marks: Sequence[Mark]) -> None:
    for m in marks:
        if m.action in ACTION_COLOR and m.action != "observe":
            ax.axvline(mdates.date2num(m.at), color=ACTION_COLOR[m.action], lw=1.2,
                       ls="-" if m.action in ("rollback", "fail", "promote") else ":", zorder=2)


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=10, color="#555555",
            bbox={"boxstyle": "round", "fc": "#fafafa", "ec": "#bbbbbb"})


def _plot(ax: Axes, s: Series, **kw: object) -> None:
    if s:
        ax.plot(mdates.date2num(list(s.times)), list(s.values), **kw)  # type: ignore[arg-type]


def timeline_png(data: ReportData) -> bytes:
    """Canary weight over time, stages shaded, every decision marked (rollback reason annotated)."""
    window = data.window
    fig, ax = plt.subplots(figsize=(11, 2.8))
    _shade(ax, data.spans, window[1], label=True)
    if data.spans:
        xs, ys = [], []
        for span in data.spans:
            xs += [mdates.date2num(span.start), mdates.date2num(span.end or window[1])]
            ys += [span.weight, span.weight]
        ax.plot(xs, ys, color="#37474f", lw=2, label="canary weight %")
    _decision_lines(ax, data.marks)
    for m in data.marks:
        if m.action in ("rollback", "fail", "promote"):
            ax.annotate(m.reason[:70], (mdates.date2num(m.at), 50), rotation=90, fontsize=7, ha="right",
                        va="center", color=ACTION_COLOR[m.action])
    ax.set_ylim(-5, 105)
    ax.set_ylabel("weight %")
    _time_axis(ax, window)
    handles = [plt.Line2D([], [], color=c, lw=1.5, label=a) for a, c in ACTION_COLOR.items()
               if any(m.action == a for m in data.marks)]
    ax.legend(handles=handles, loc="upper left", fontsize=7, ncol=len(handles) or 1, framealpha=0.9)
    if not data.spans:
        _empty(ax, "no stage was entered (validation only, or the release has not started)")
    return _png(fig)


def winrate_png(data: ReportData) -> bytes:
    """Win rate by route against the baseline band (baseline - winrateDeltaPP .. baseline)."""
    window = data.window
    fig, ax = plt.subplots(figsize=(11, 3.6))
    _shade(ax, data.spans, window[1], label=True)
    _decision_lines(ax, data.marks)
    if data.baseline:
        lo = [v - data.winrate_delta_pp / 100.0 for v in data.baseline.values]
        x = mdates.date2num(list(data.baseline.times))
        ax.fill_between(x, lo, list(data.baseline.values), color="#90a4ae", alpha=0.45, step="post",
                        label=f"baseline band (baseline - {data.winrate_delta_pp:g}pp)")
        _plot(ax, data.baseline, color="#37474f", lw=1.5, ls="--", label="winrate_baseline_active",
              drawstyle="steps-post")
    for route, s in sorted(data.winrate.items()):
        _plot(ax, s, color=ROUTE_COLORS.get(route, "#6a1b9a"), lw=1.8, marker="." if len(s.times) < 60 else None,
              label=f"winrate {route}", drawstyle="steps-post" if data.winrate_source == "decisions" else "default")
    ax.axhline(0.5, color="#f9a825", lw=1, ls="-.", label="50% (dashboard yellow line)")
    ax.set_ylabel("win rate")
    _time_axis(ax, window)
    if not data.winrate and not data.baseline:
        _empty(ax, "no win-rate data: the winrate gate logged no value (no canary stage reached)\n"
                   "and no Prometheus range data was given (--prometheus URL)")
    else:
        ax.legend(loc="lower left", fontsize=8, ncol=3, framealpha=0.9)
    return _png(fig)


def _gate_axis(ax: Axes, track: GateTrack, data: ReportData) -> None:
    window = data.window
    _shade(ax, data.spans, window[1], label=False)
    _decision_lines(ax, data.marks)
    steps = "steps-post" if track.source == "decisions" else "default"
    _plot(ax, track.value, color="#263238", lw=1.6, drawstyle=steps, label="value")
    _plot(ax, track.threshold, color="#c62828", lw=1.2, ls="--", drawstyle="steps-post",
          label="threshold (below is bad)" if track.lower_is_bad else "threshold (above is bad)")
    for verdict, (color, marker) in VERDICT_STYLE.items():
        pts = [m for m in track.observations if m.verdict == verdict and m.value is not None]
        if pts:
            ax.scatter(mdates.date2num([m.at for m in pts]), [m.value for m in pts], color=color, marker=marker,
                       s=40, zorder=5, label=verdict)
    no_value = [m for m in track.observations if m.value is None]
    for m in no_value:
        ax.axvline(mdates.date2num(m.at), color=VERDICT_STYLE.get(m.verdict, ("#999999", ""))[0], lw=3, alpha=0.4)
    last = data.gate_status.get(track.gate, {}).get("verdict") or \
        (track.observations[-1].verdict if track.observations else "not evaluated")
    ax.set_title(f"{GATE_TITLES.get(track.gate, track.gate)} — latest verdict: {last} "
                 f"(source: {track.source})", fontsize=9, loc="left")
    _time_axis(ax, window)
    if not track.value and not track.observations:
        _empty(ax, f"gate {track.gate} was never evaluated (not required in the stages reached)")
    else:
        ax.margins(y=0.15)
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, framealpha=0.9, borderaxespad=0)


def gates_png(data: ReportData) -> bytes:
    """One panel per gate: value against threshold over time, stages shaded, decisions marked."""
    n = max(1, len(data.gates))
    fig, axes = plt.subplots(n, 1, figsize=(11, 2.3 * n), sharex=True, squeeze=False)
    for ax, track in zip(axes[:, 0], data.gates, strict=False):
        _gate_axis(ax, track, data)
    if not data.gates:
        _empty(axes[0, 0], "the release evaluates no gates")
    fig.tight_layout()
    return _png(fig)


def scores_png(data: ReportData) -> bytes:
    """Online score distributions of the active and shadow models: p10-p90 band and median over time,
    and the latest snapshot side by side."""
    fig, (ax, box) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [3, 1]})
    window = data.window
    _shade(ax, data.spans, window[1], label=True)
    _decision_lines(ax, data.marks)
    colors = ("#1565c0", "#c62828", "#2e7d32")
    for i, model in enumerate(data.scores):
        c = colors[i % len(colors)]
        p10, p50, p90 = (model.stats.get(k) for k in ("p10", "p50", "p90"))
        if p10 and p90 and p10.times == p90.times:
            ax.fill_between(mdates.date2num(list(p10.times)), list(p10.values), list(p90.values), color=c,
                            alpha=0.18, label=f"{model.label} p10-p90")
        if p50:
            _plot(ax, p50, color=c, lw=1.8, label=f"{model.label} median")
        elif model.stats.get("mean"):
            _plot(ax, model.stats["mean"], color=c, lw=1.8, label=f"{model.label} mean")
    ax.set_ylabel("score")
    _time_axis(ax, window)
    latest = [(m.label.split(" ")[0], m.latest()) for m in data.scores]
    for i, (_label, st) in enumerate(latest):
        c = colors[i % len(colors)]
        if {"p10", "p90"} <= st.keys():
            box.vlines(i, st["p10"], st["p90"], color=c, lw=10, alpha=0.35)
        if "p50" in st:
            box.hlines(st["p50"], i - 0.25, i + 0.25, color=c, lw=2)
        if "mean" in st:
            std = st.get("std", 0.0)
            box.errorbar(i, st["mean"], yerr=std, fmt="o", color=c, capsize=4)
    box.set_xticks(range(len(latest)), [lab for lab, _ in latest])
    box.set_xlim(-0.6, max(0.6, len(latest) - 0.4))
    box.set_title("latest: p10-p90, median, mean±std", fontsize=9)
    box.grid(True, axis="y", alpha=0.3)
    if not data.scores:
        _empty(ax, "no score-distribution data: the state directory holds no scores;\n"
                   "pass --prometheus URL (model_score_distribution, shadow_score_distribution)")
    else:
        ax.legend(loc="lower left", fontsize=8, ncol=2, framealpha=0.9)
    fig.tight_layout()
    return _png(fig)


CHARTS = (("timeline", "Stage timeline and decisions", timeline_png),
          ("winrate", "Win rate by route against the baseline band", winrate_png),
          ("gates", "Guard rails: each gate's value against its threshold", gates_png),
          ("scores", "Score distributions: active vs shadow", scores_png))


def render_all(data: ReportData) -> dict[str, bytes]:
    return {key: fn(data) for key, _, fn in CHARTS}
