"""Pure evaluation maths for the scorer: precision-first thresholds, metrics, drift reference bins.

Precision first: a market maker pays for every bad fill and merely forgoes a good
one it skips, so ``tau_entry`` is the lowest score whose approved set reaches the
target precision on the validation slice (with a minimum support so that a
handful of lucky rows cannot set it); when no threshold reaches the target, the
one with the best precision at that support. ``tau_hold`` (keep a resting order)
is looser: the lowest score whose precision still beats the midpoint between
the base rate and the entry precision, never above ``tau_entry``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


@dataclass(frozen=True)
class ThresholdChoice:
    tau_entry: float
    tau_hold: float
    precision_entry: float
    support_entry: int
    target_reached: bool


def precision_support(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each distinct score s (descending): precision and support of {p >= s}."""
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    tp = np.cumsum(ys)
    n = np.arange(1, len(ys) + 1)
    last = np.r_[ps[1:] != ps[:-1], True]  # last position of each distinct score
    return ps[last], tp[last] / n[last], n[last]


def _between(scores: np.ndarray, k: int) -> float:
    """A threshold approving exactly scores[:k+1], halfway to the next lower score.

    Never equal to a score the model produces, so float32-level differences
    between inference engines cannot flip a decision at the threshold.
    """
    if k + 1 < len(scores):
        return float((scores[k] + scores[k + 1]) / 2.0)
    return float(scores[k] / 2.0)


def choose_thresholds(y: np.ndarray, p: np.ndarray, *, target_precision: float | None = None,
                      min_support_frac: float = 0.01, min_support: int = 20) -> ThresholdChoice:
    y = np.asarray(y, np.int64)
    p = np.asarray(p, np.float64)
    if len(y) == 0:
        raise ValueError("no validation rows to choose thresholds from")
    base = float(y.mean())
    target = target_precision if target_precision is not None else min(0.95, max(0.5, 3 * base))
    scores, prec, support = precision_support(y, p)
    need = max(min_support, int(np.ceil(min_support_frac * len(y))))
    eligible = support >= need
    if not eligible.any():
        eligible = support == support.max()
    reach = eligible & (prec >= target)
    if reach.any():
        k = int(np.flatnonzero(reach)[-1])  # lowest score (largest support) still at target
        reached = True
    else:
        k = int(np.flatnonzero(eligible)[np.argmax(prec[eligible])])
        reached = False
    tau_entry = _between(scores, k)
    hold_target = (base + prec[k]) / 2.0
    hold_ok = eligible & (prec >= hold_target) & (scores <= scores[k])
    tau_hold = _between(scores, int(np.flatnonzero(hold_ok)[-1])) if hold_ok.any() else tau_entry
    return ThresholdChoice(tau_entry=tau_entry, tau_hold=min(tau_hold, tau_entry), precision_entry=float(prec[k]),
                           support_entry=int(support[k]), target_reached=reached)


def score_metrics(y: np.ndarray, p: np.ndarray, tau: float, prefix: str) -> dict[str, float]:
    y = np.asarray(y, np.int64)
    p = np.asarray(p, np.float64)
    approved = p >= tau
    tp = int(np.sum(approved & (y == 1)))
    out = {
        f"{prefix}_rows": float(len(y)),
        f"{prefix}_positive_rate": float(y.mean()) if len(y) else 0.0,
        f"{prefix}_approved": float(approved.sum()),
        f"{prefix}_precision_at_tau": tp / float(approved.sum()) if approved.any() else 0.0,
        f"{prefix}_recall_at_tau": tp / float(y.sum()) if y.any() else 0.0,
        f"{prefix}_brier": float(brier_score_loss(y, p)) if len(y) else 0.0,
    }
    both = len(np.unique(y)) == 2
    out[f"{prefix}_pr_auc"] = float(average_precision_score(y, p)) if both else 0.0
    out[f"{prefix}_roc_auc"] = float(roc_auc_score(y, p)) if both else 0.5
    return out


def reference_bins(x: np.ndarray, names: list[str], bins: int = 10) -> dict[str, dict[str, list[float]]]:
    """Quantile bin edges of each training feature and the training share per bin (PSI/KS reference)."""
    out: dict[str, dict[str, list[float]]] = {}
    for j, name in enumerate(names):
        col = x[:, j].astype(np.float64)
        col = col[np.isfinite(col)]
        edges = np.unique(np.quantile(col, np.linspace(0, 1, bins + 1))) if len(col) else np.array([0.0, 1.0])
        if len(edges) < 2:
            edges = np.array([edges[0], edges[0]])
        inner = edges[1:-1]
        idx = np.searchsorted(inner, col, side="right")
        counts = np.bincount(idx, minlength=len(edges) - 1)[: len(edges) - 1]
        out[name] = {"edges": edges.tolist(), "fractions": (counts / max(len(col), 1)).tolist()}
    return out
