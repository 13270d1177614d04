"""Calibration and drift statistics: Brier, ECE, PSI and KS against reference bins. Pure functions.

- Brier: mean squared error of probabilities against 0/1 outcomes.
- ECE: Σ_b (n_b / N) · |ȳ_b − p̄_b| over equal-width probability bins.
- PSI: Σ (a_i − e_i) · ln(a_i / e_i) over the model's reference bins, empty
  bins smoothed with ε so one empty bin cannot make it infinite.
- KS: the largest gap between the reference CDF and the current one, measured at
  the reference bin edges (the reference is only known as a histogram).

The reference bins come from ``model.json`` (``reference_bins[feature] =
{edges, fractions}``, fractions per bin summing to 1). ``edges`` are the inner
cut points plus the outer ones, so ``len(fractions) == len(edges) - 1``; values
outside the outer edges count in the first or last bin.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

PSI_EPS = 1e-4


def brier(probs: Sequence[float], outcomes: Sequence[int]) -> float:
    if len(probs) != len(outcomes):
        raise ValueError("probs and outcomes differ in length")
    if not probs:
        return math.nan
    return sum((p - y) ** 2 for p, y in zip(probs, outcomes, strict=True)) / len(probs)


def ece(probs: Sequence[float], outcomes: Sequence[int], n_bins: int = 10) -> float:
    if len(probs) != len(outcomes):
        raise ValueError("probs and outcomes differ in length")
    if not probs:
        return math.nan
    count = [0] * n_bins
    sum_p = [0.0] * n_bins
    sum_y = [0.0] * n_bins
    for p, y in zip(probs, outcomes, strict=True):
        b = min(n_bins - 1, max(0, int(p * n_bins)))
        count[b] += 1
        sum_p[b] += p
        sum_y[b] += y
    n = len(probs)
    return sum(abs(sum_y[b] / count[b] - sum_p[b] / count[b]) * count[b] / n for b in range(n_bins) if count[b])


def bin_fractions(values: Sequence[float], edges: Sequence[float]) -> list[float]:
    """Share of ``values`` in each reference bin (outer bins open-ended)."""
    n_bins = len(edges) - 1
    if n_bins < 1:
        raise ValueError("reference bins need at least two edges")
    counts = [0] * n_bins
    inner = list(edges[1:-1])
    finite = 0
    for v in values:
        if v is None or math.isnan(v):
            continue
        counts[bisect.bisect_right(inner, v)] += 1
        finite += 1
    return [c / finite for c in counts] if finite else [math.nan] * n_bins


def psi(reference_fractions: Sequence[float], current_fractions: Sequence[float], eps: float = PSI_EPS) -> float:
    if len(reference_fractions) != len(current_fractions):
        raise ValueError("reference and current bins differ in number")
    if any(math.isnan(c) for c in current_fractions):
        return math.nan
    total = 0.0
    for e, a in zip(reference_fractions, current_fractions, strict=True):
        e, a = max(e, eps), max(a, eps)
        total += (a - e) * math.log(a / e)
    return total


def ks_binned(reference_fractions: Sequence[float], current_fractions: Sequence[float]) -> float:
    if len(reference_fractions) != len(current_fractions):
        raise ValueError("reference and current bins differ in number")
    if any(math.isnan(c) for c in current_fractions):
        return math.nan
    cr = cc = 0.0
    worst = 0.0
    for e, a in zip(reference_fractions, current_fractions, strict=True):
        cr += e
        cc += a
        worst = max(worst, abs(cr - cc))
    return worst


def psi_against(values: Sequence[float], edges: Sequence[float], reference_fractions: Sequence[float]) -> float:
    return psi(reference_fractions, bin_fractions(values, edges))


def ks_against(values: Sequence[float], edges: Sequence[float], reference_fractions: Sequence[float]) -> float:
    return ks_binned(reference_fractions, bin_fractions(values, edges))
