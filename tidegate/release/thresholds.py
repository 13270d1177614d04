"""Threshold policy after a ramp: frozen, then small bounded adaptive steps.

The seed: "freeze the deployed thresholds (tau_entry, tau_hold) for 24 hours after
a ramp before enabling auto-adaptive tuning with small step sizes". A step moves
``tau_entry`` (and ``tau_hold`` by the same amount) by at most ``maxStep`` toward
the precision target: precision below target -> be pickier (raise tau); above
target + band -> approve more (lower tau); inside the band -> no change. Bounds
keep a long run of steps from walking a threshold anywhere absurd.
"""

from __future__ import annotations

from tidegate.release.spec import Adaptive


def _clip(x: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, x))


def adaptive_step(tau_entry: float, tau_hold: float, precision: float, policy: Adaptive) -> tuple[float, float]:
    """The next (tau_entry, tau_hold); unchanged inside the band. |change| <= maxStep always."""
    if precision < policy.targetPrecision - policy.band:
        delta = policy.maxStep
    elif precision > policy.targetPrecision + policy.band:
        delta = -policy.maxStep
    else:
        return tau_entry, tau_hold
    # Bounds stop a move, they never cause one: a threshold outside [minTau, maxTau] (a model
    # trained to approve at 0.03 under the default minTau 0.5) walks toward the range by at most
    # maxStep when precision asks for that direction, and stays put otherwise.
    if delta > 0:
        new_entry = max(tau_entry, min(tau_entry + delta, policy.maxTau))
    else:
        new_entry = min(tau_entry, max(tau_entry + delta, policy.minTau))
    applied = new_entry - tau_entry
    new_hold = _clip(tau_hold + applied, 0.0, new_entry)
    return new_entry, new_hold
