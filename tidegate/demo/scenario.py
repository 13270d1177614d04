"""The demo's release and its fault injections, as data.

The release is the seed's policy with hours compressed to seconds (the same
document `kubectl apply` takes). Gates are the seed's three automatic rollback
conditions -- win rate vs the live baseline, ONNX parity, PSI/KS drift -- because
fill rate, markout and calibration are checked offline by the release checklist,
and a paper replay of 25 minutes of capture is too short to judge them live.

Each injection breaks one real thing, never a metric:

- ``winrate``: the candidate is a model trained on inverted labels, so it approves
  exactly the entries the baseline would avoid; its canary trades lose more often.
- ``drift``: mid-canary the collector switches to another market's recording (the
  coin-margined contract), so the live features leave the model's reference bins.
- ``parity``: after the checklist, the candidate's reference (native LightGBM)
  artifact is replaced by another model's, as a bad re-upload would; the scorer's
  online parity re-scoring then disagrees with the ONNX it serves.
- ``prometheus-outage``: mid-canary Prometheus is stopped; every gate becomes
  UNAVAILABLE, the release holds and never promotes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

INJECTIONS = ("winrate", "drift", "parity", "prometheus-outage")


@dataclass(frozen=True)
class Timings:
    shadow: float = 15
    canary: float = 60
    canary_max: float = 240
    ramp: float = 10
    interval: float = 2.0
    inject_after: float = 5.0        # seconds into the canary stage
    hold_observe: float = 20.0       # how long the outage demo watches the hold
    # Replay speed: the 344 s USD-M capture lasts 86 s and loops. The active model fills about one
    # entry order every 5 s of market time, in bursts; a canary needs a few minutes of market
    # before its evidence can decide at the seed's 5-point margin (docs/release-policy.md).
    speed: float = 4.0
    min_sample: int = 30             # independent trades (n / design effect) per arm before a PASS
    winrate_delta_pp: float = 5.0    # the seed's margin; the sequential test controls false rollbacks


QUICK = Timings(shadow=8, canary=20, canary_max=120, ramp=5, interval=1.0, inject_after=3.0, hold_observe=8.0,
                speed=3.0, min_sample=5)   # a smoke test of the mechanics


@dataclass(frozen=True)
class Expectation:
    phase: str                      # Promoted | RolledBack | Held
    reasons: tuple[str, ...] = ()   # one of them must be the rollback reason

    def met(self, phase: str, reason: str) -> bool:
        return phase == self.phase and (not self.reasons or reason in self.reasons)


EXPECT: dict[str | None, Expectation] = {
    None: Expectation("Promoted"),
    "winrate": Expectation("RolledBack", ("winrate",)),
    "drift": Expectation("RolledBack", ("psi", "ks")),    # whichever crosses first
    "parity": Expectation("RolledBack", ("parity",)),
    "prometheus-outage": Expectation("Held"),
}


def release_document(name: str, model_id: str, previous_id: str, prometheus_url: str, t: Timings) -> dict[str, Any]:
    """The compressed release, on the seed's 5-point margin with the always-valid sequential test.

    A two-minute replay yields tens of trades, and they come in bursts that share one market
    move, so the gate inflates the variance by the measured design effect (a healthy canary
    that met one losing burst is not evidence of a worse model); the inverted-label candidate
    loses across many bursts and fails."""
    return {
        "apiVersion": "tidegate.dev/v1alpha1", "kind": "ModelRelease",
        "metadata": {"name": name},
        "spec": {
            "modelId": model_id, "previousModelId": previous_id,
            "notes": "tidegate demo: compressed release on the replayed capture",
            "validations": {"skip": True},   # the demo runs the checklist itself, on screen, first
            "stages": [
                {"name": "shadow", "weight": 0, "duration": t.shadow},
                {"name": "canary", "weight": 50, "duration": t.canary, "maxDuration": t.canary_max},
                {"name": "ramp-75", "weight": 75, "duration": t.ramp},
                {"name": "full", "weight": 100},
            ],
            "analysis": {"interval": t.interval, "staleAfter": 15,
                         "prometheus": {"url": prometheus_url, "timeout": 2},
                         "windows": {"parity": 60, "drift": 15}},
            "guardRails": {"winrateDeltaPP": t.winrate_delta_pp, "minSample": t.min_sample,
                           "winrate": {"test": "sequential", "alpha": 0.05},
                           "psiBlock": 0.3, "ksBlock": 0.2,
                           "gates": ["winrate", "parity", "psi", "ks"],
                           "onUnavailable": {"action": "hold", "maxHold": "10m", "then": "rollback"},
                           "onInsufficient": {"then": "rollback"}},
            "cooldown": 60,
            "thresholds": {"freezeFor": "24h", "adaptive": {"enabled": False}},
        },
    }
