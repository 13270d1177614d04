"""The canary pipeline's shell: load both models from the registry, build the days, score, decide, report.

Models are loaded the way the ai_scorer loads them (``scorer_models.load_model``:
sha256 and schema hash verified, one-thread ONNX Runtime session) and approve a
candidate entry the way it does (``score >= tau_entry`` from model.json), so the
canary measures the artifact that would serve, not a re-trained twin. A model
the registry refuses is a ``CanaryError`` naming the model and the reason.

Used by scripts/canary_pipeline.py and by the release validation stage
(tidegate/release/validation.py calls :func:`run_canary` directly).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tidegate.config.schema import AppConfig
from tidegate.features.schema import FEATURE_NAMES, SCHEMA
from tidegate.pipeline.canary import ALL, CanaryGates, DayOutcome, evaluate, market_note, outcome
from tidegate.pipeline.canary_days import LabelledDay, parse_days, replay_days, replay_files, synthetic_days
from tidegate.registry import ArtifactError, Registry


class CanaryError(RuntimeError):
    """The canary could not run (unknown or refused model, missing capture when one was asked for)."""


@dataclass(frozen=True)
class CanaryRun:
    passed: bool
    summary: str
    report: dict[str, object]


def gates_from_config(cfg: AppConfig) -> CanaryGates:
    cp, guard = cfg.canary_pipeline, cfg.rollout_guard
    return CanaryGates(winrate_target=cp.winrate_target, markout_min_bps=guard.markout_min_bps,
                       fill_rate_min=guard.fill_rate_min, min_trades=cp.min_trades,
                       winrate_delta_pp=guard.winrate_delta_pp)


def build_days(cfg: AppConfig, capture_dir: Path | None, days: Sequence[str] | None
               ) -> tuple[list[LabelledDay], list[str]]:
    """The selected day types and notes on what was left out (and why)."""
    sel = parse_days(days)
    cp = cfg.canary_pipeline
    notes: list[str] = []
    out = synthetic_days(seed=cp.seed, days=cp.synthetic_days, seconds=cp.synthetic_seconds,
                         regimes=sel.synthetic_regimes) if sel.synthetic_regimes else []
    if sel.replay_patterns:
        files = replay_files(capture_dir, sel.replay_patterns) if capture_dir is not None else []
        if not files:
            msg = f"no capture files matching {list(sel.replay_patterns)} under {capture_dir}"
            if sel.replay_required:
                raise CanaryError(f"replay days requested but {msg}")
            notes.append(f"replay skipped: {msg}")
        else:
            out += replay_days(files, window_s=cp.replay_window, high_vol_quantile=cp.high_vol_quantile,
                               event_quantile=cp.event_quantile)
    if not out:
        raise CanaryError("no canary days selected")
    return out, notes


def _load(registry: Registry, model_id: str):  # -> scorer_models.LoadedModel
    from tidegate.services.scorer_models import load_model

    if not registry.has(model_id):
        raise CanaryError(f"model {model_id!r} is not in the registry at {registry.root}")
    try:
        return load_model(registry, model_id, SCHEMA.hash)
    except ArtifactError as exc:
        raise CanaryError(str(exc)) from None


def _model_json(model: object) -> dict[str, object]:
    meta = model.meta  # type: ignore[attr-defined]
    return {"id": meta.id, "tau_entry": meta.thresholds.tau_entry, "sha256": meta.sha256,
            "regimes": list(meta.regimes)}


def run_canary(registry: Registry, model_id: str, *, cfg: AppConfig, active_id: str | None = None,
               use_active_slot: bool = True, capture_dir: Path | None = None,
               days: Sequence[str] | None = None, prebuilt: tuple[list[LabelledDay], list[str]] | None = None
               ) -> CanaryRun:
    """Simulate ``model_id`` (and the active model) over the selected days; the gates decide.

    ``prebuilt``: days from :func:`build_days`, to judge several candidates on the same days.
    """
    t0 = time.perf_counter()
    gates = gates_from_config(cfg)
    if active_id is None and use_active_slot:
        active_id = registry.slot("active")
    candidate = _load(registry, model_id)
    active = _load(registry, active_id) if active_id else None
    for model in (candidate, active):
        if model is not None and list(model.meta.feature_names) != list(FEATURE_NAMES):
            raise CanaryError(f"model {model.meta.id!r} takes features {list(model.meta.feature_names)[:4]}..., "
                              f"not the live feature schema's {list(FEATURE_NAMES)[:4]}...")
    labelled, notes = prebuilt if prebuilt is not None else build_days(cfg, capture_dir, days)
    notes = list(notes)
    t_days = time.perf_counter() - t0
    scored: list[DayOutcome] = []
    for day in labelled:
        cand = outcome(candidate.predict(day.features) >= candidate.meta.thresholds.tau_entry,
                       day.filled, day.markout_bps, day.won)
        act = outcome(active.predict(day.features) >= active.meta.thresholds.tau_entry,
                      day.filled, day.markout_bps, day.won) if active is not None else None
        market = outcome(np.ones(day.rows, bool), day.filled, day.markout_bps, day.won)
        scored.append(DayOutcome(day.source, day.regime, day.sessions, cand, act, market))
    trained_on = candidate.meta.model_extra.get("sessions", []) if candidate.meta.model_extra else []
    groups, passed, summary = evaluate(scored, gates, trained_on=trained_on)
    notes += [n for g in groups if g.regime == ALL and g.source != ALL and not passed
              and (n := market_note(g, gates))]
    if any(g.in_sample for g in groups if g.regime != "all"):
        notes.append("some day types include sessions the candidate was trained on (in_sample_sessions): "
                     "their numbers are optimistic")
    report: dict[str, object] = {
        "passed": passed, "summary": summary,
        "candidate": _model_json(candidate), "active": _model_json(active) if active is not None else None,
        "gates": gates.as_dict(),
        "days": [{"source": d.source, "regime": d.regime, "sessions": list(d.sessions), "candidates": d.rows}
                 for d in labelled],
        "groups": [g.to_json() for g in groups],
        "notes": notes,
        "seconds": {"days": round(t_days, 3), "total": round(time.perf_counter() - t0, 3)},
    }
    return CanaryRun(passed, summary, report)
