"""Plain data passed into and out of the engine: commands, validation outcome, facts, decision.

Kept apart from engine.py so the transition helpers and the drivers can share the
types without an import cycle.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

from tidegate.release.spec import PendingEffect, ReleaseStatus

CommandKind = Literal["promote", "abort", "pause", "resume", "retry"]
Action = Literal["none", "start", "wait", "advance", "hold", "extend", "rollback", "promote", "complete",
                 "pause", "resume", "retry", "fail", "reject", "adapt"]


@dataclass(frozen=True)
class Command:
    kind: CommandKind
    force: bool = False    # promote even when the latest verdicts are not all PASS
    full: bool = False     # promote straight to the last stage
    reason: str = ""


@dataclass(frozen=True)
class ValidationOutcome:
    passed: bool
    checks: tuple[dict[str, object], ...] = ()
    summary: str = ""


@dataclass(frozen=True)
class Facts:
    """What the driver observed outside Prometheus gates (all optional, for tests)."""

    active_model_id: str | None = None           # registry active slot right now
    rollout_mode: str | None = None              # rollout mode in KV right now
    rng_seed: int = 1337
    candidate_tau: tuple[float | None, float | None] = (None, None)
    cooldown_until: dt.datetime | None = None    # another release's rollback cooldown
    precision: float | None = None               # rolling_precision{route="full"}, for adaptive tuning
    # spec fields naming a model the registry does not hold ("spec.modelId": "candidate-1"); None: not checked
    missing_models: tuple[tuple[str, str], ...] | None = None


@dataclass(frozen=True)
class Decision:
    status: ReleaseStatus
    action: Action
    effects: tuple[PendingEffect, ...] = field(default_factory=tuple)
