"""An always-valid sequential test for the canary's win rate against its same-window baseline.

Why: the seed's win-rate gate (``sample_canary >= min_sample and winrate_canary <
winrate_baseline_active - delta``) is re-checked every 30 s. Each look is another chance
for noise to cross the line, so over a 2-4 h canary an *equal* model is rolled back far
more often than any per-look rate suggests (docs: shared design note
"canary-statistics"; bench/bench_gates.py measures it). Here the evidence is a
mixture sequential probability ratio (mSPRT, Robbins' normal mixture as in Johari et
al., KDD 2017; Howard et al., AoS 2021), which is a (super)martingale under the null:
by Ville's inequality the chance that it *ever* reaches ``1/alpha`` is at most
``alpha``, however often it is looked at. That is what lets the gate be evaluated
every interval without inflating false rollbacks.

The statistic, for the estimated difference ``d = rate_canary - rate_baseline`` with
variance ``V`` and a normal mixing distribution ``N(theta0, tau^2)`` on the true
difference (closed form of ``∫ N(d; theta, V) / N(d; theta0, V) · N(theta; theta0, tau^2) dtheta``)::

    log Λ(theta0) = ½·log(V / (V + tau²)) + tau²·(d − theta0)² / (2·V·(V + tau²))

* two-sided test of ``diff = theta0``: reject when ``log Λ ≥ log(1/alpha)``; the set of
  ``theta0`` not rejected is an always-valid (1 − alpha) confidence sequence, in closed
  form ``d ± sqrt(2·V·(V + tau²)/tau² · (log(1/alpha) + ½·log((V + tau²)/V)))``.
* one-sided ("is the canary worse?"): the same mixture restricted to drops, i.e. a
  half-normal ``2·N(theta0, tau²)`` on ``theta < theta0`` (Howard et al.'s one-sided normal
  mixture). It keeps the ``Φ`` factor of the posterior mass below ``theta0``::

      log Λ₁(theta0) = log 2 + ½·log(V/(V + tau²)) + u²/2 + log Φ(u),
      u = tau·(theta0 − d) / sqrt(V·(V + tau²))

  Each component of that mixture (the likelihood ratio of a drop ``theta < 0`` against
  ``0``) is a supermartingale whenever the true diff is ``>= 0``, so
  ``P(ever Λ₁(0) ≥ 1/alpha) ≤ alpha`` over unlimited looks for the whole composite null
  ``diff >= 0``. It spends all of alpha on drops, where the two-sided boundary used
  one-sided (also valid, more conservative) would spend half of it on "better". The
  guarantee is exact for Gaussian increments; for win/loss counts with a plug-in
  variance it is asymptotic, which is why the tests check it by brute force.
  ``Λ₁`` increases with ``theta0`` (``u + φ(u)/Φ(u) > 0``), so its acceptance set is
  ``(-inf, upper_one_sided]`` and ``worse`` ⟺ ``upper_one_sided <= 0``.

Variance: the plug-in ``pc(1−pc)/nc + pb(1−pb)/nb``, but with add-one (Agresti–Caffo)
smoothed rates ``(wins + 1)/(n + 2)`` *for the variance only*: a canary that has won
5 of 5, or lost all of them, would otherwise have a variance of 0 and an infinite
statistic — "certain" evidence from five trades. Smoothing keeps ``V > 0`` for every
finite ``n`` and is negligible once ``n`` is in the hundreds. The difference itself is
the raw one. The normal approximation behind ``V`` still needs a few dozen trades, so
decisions require :data:`MIN_EVIDENCE_SAMPLE` trades in each arm before any FAIL;
the A/A simulation in tests/test_sequential.py checks the resulting false-alarm rate
with a look after every single trade.

Why no library (PyPI checked): ``expectation`` needs Python >= 3.12 (the
project supports 3.11); ``confseq`` 0.0.11 has the same normal-mixture boundary but in
intrinsic-time form and ships only as a C++ source distribution (CMake, Boost,
pybind11 ~= 2.6) whose install requirements pull pytest/pandas/multiprocess into
runtime, unreleased since 2023-01; ``spotify-confidence`` implements group-sequential
(alpha-spending) tests, which need the maximum sample size in advance; ``statsmodels``
and ``scipy`` have no mixture SPRT. The closed form is a few lines; the tests check it
against an independent numerical integration of the mixture (scipy.integrate.quad).

Everything here is pure (no I/O); the ``*_mask`` functions are numpy versions of the
FAIL conditions for simulations, checked against the scalar path in the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_ALPHA = 0.05
#: Mixing standard deviation of the true difference (a fraction: 0.08 = 8 points).
#: The normal mixture is a prior over plausible drops: it is most sensitive near tau, and a
#: narrow prior is nearly blind to drops far beyond it while samples are small. Measured
#: (bench/bench_gates.py, 240 canary trades/h, a look every 30 s, 4 h stage): median canary
#: trades to catch 6 / 8 / 12 points were 465 / 288 / 148 at tau 0.05 and 440 / 246 / 106 at
#: 0.12, equal canaries rolled back 2.5 % and 3.6 % (both under alpha), so a wider prior is
#: faster at every drop worth catching; and a broken model (a sign bug loses 30-50 points)
#: must be stopped on the few trades of a short canary. 0.08 keeps the A/A rate with a look
#: at 3.2 % in the bench (the look-after-every-trade A/A test at 0.10 came within its error of alpha).
DEFAULT_TAU = 0.08
#: No FAIL before each arm has this many trades: the normal approximation of a binomial
#: proportion (and its plug-in variance) is poor for a handful of trades, and no drop
#: worth detecting is detectable that early anyway (8 points takes hundreds).
MIN_EVIDENCE_SAMPLE = 30

_LOG2 = math.log(2.0)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_erfc_array = np.frompyfunc(math.erfc, 1, 1)


def _g(u: np.ndarray) -> np.ndarray:
    """``u²/2 + log Φ(u)``, stable for very negative ``u`` (asymptotic Mills ratio below -30)."""
    u = np.asarray(u, dtype=float)
    out = np.empty_like(u)
    tail = u < -30.0
    body = ~tail
    if body.any():
        ub = u[body]
        out[body] = 0.5 * ub * ub + np.log(0.5 * _erfc_array(-ub / math.sqrt(2.0)).astype(float))
    if tail.any():
        ut = u[tail]
        inv2 = 1.0 / (ut * ut)
        out[tail] = -np.log(-ut) - _LOG_SQRT_2PI + np.log1p(-inv2 + 3 * inv2**2 - 15 * inv2**3)
    return out


def smoothed_variance(wins_canary: Any, n_canary: Any, wins_baseline: Any, n_baseline: Any) -> Any:
    """Variance of ``rate_canary - rate_baseline`` with add-one smoothed rates (scalars or arrays).

    ``inf`` for an empty arm (no information). Never 0 for finite counts, so a run of all
    wins or all losses cannot manufacture certainty.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        pc = (np.asarray(wins_canary, dtype=float) + 1.0) / (np.asarray(n_canary, dtype=float) + 2.0)
        pb = (np.asarray(wins_baseline, dtype=float) + 1.0) / (np.asarray(n_baseline, dtype=float) + 2.0)
        v = pc * (1.0 - pc) / np.asarray(n_canary, dtype=float) + pb * (1.0 - pb) / np.asarray(n_baseline, dtype=float)
    v = np.where(np.isfinite(v), v, np.inf)
    return float(v) if np.ndim(v) == 0 else v


def _arm_variance(wins: float, n: float) -> float:
    """One arm's share of :func:`smoothed_variance` (add-one smoothed rate)."""
    p = (wins + 1.0) / (n + 2.0)
    return p * (1.0 - p) / n


def log_mixture(d: Any, variance: Any, tau: float, theta0: float = 0.0) -> Any:
    """Two-sided normal-mixture log Λ for H0: diff = theta0 (0 where the variance is infinite)."""
    d, v = np.asarray(d, dtype=float), np.asarray(variance, dtype=float)
    t2 = tau * tau
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = 0.5 * np.log(v / (v + t2)) + t2 * (d - theta0) ** 2 / (2.0 * v * (v + t2))
    out = np.where(np.isinf(v), 0.0, out)
    return float(out) if out.ndim == 0 else out


def log_mixture_one_sided(d: Any, variance: Any, tau: float, theta0: float = 0.0) -> Any:
    """One-sided (half-normal on drops) log Λ₁: evidence that diff < theta0."""
    d, v = np.asarray(d, dtype=float), np.asarray(variance, dtype=float)
    t2 = tau * tau
    scalar = d.ndim == 0 and v.ndim == 0
    d, v = np.broadcast_arrays(np.atleast_1d(d), np.atleast_1d(v))
    out = np.zeros(d.shape)
    ok = np.isfinite(v)
    if ok.any():
        vo, do = v[ok], d[ok]
        u = tau * (theta0 - do) / np.sqrt(vo * (vo + t2))
        out[ok] = _LOG2 + 0.5 * np.log(vo / (vo + t2)) + _g(u)
    return float(out[0]) if scalar else out


def half_width(variance: float, tau: float, alpha: float) -> float:
    """Half-width of the two-sided confidence sequence: where log Λ(theta0) = log(1/alpha)."""
    if not math.isfinite(variance):
        return math.inf
    t2 = tau * tau
    return math.sqrt(2.0 * variance * (variance + t2) / t2
                     * (math.log(1.0 / alpha) + 0.5 * math.log((variance + t2) / variance)))


def _one_sided_offset(variance: float, tau: float, alpha: float) -> float:
    """``upper_one_sided - d``: solves ``log Λ₁ = log(1/alpha)`` (Newton on the convex, increasing g)."""
    if not math.isfinite(variance):
        return math.inf
    t2 = tau * tau
    c = math.log(1.0 / alpha) - _LOG2 + 0.5 * math.log((variance + t2) / variance)
    u = math.sqrt(2.0 * c)  # g(u) <= u²/2 for u > 0, so the root is just above (u > 2: no tail issue)
    for _ in range(60):
        phi = math.exp(-0.5 * u * u) / math.sqrt(2.0 * math.pi)
        cdf = 0.5 * math.erfc(-u / math.sqrt(2.0))
        step = (0.5 * u * u + math.log(cdf) - c) / (u + phi / cdf)
        u -= step
        if abs(step) < 1e-14 * max(1.0, u):
            break
    return u * math.sqrt(variance * (variance + t2)) / tau


@dataclass(frozen=True)
class WinrateTest:
    """The evidence about ``diff = rate_canary - rate_baseline`` at one look.

    ``log_lambda`` is the two-sided mSPRT statistic for diff = 0 and ``[lower, upper]``
    its always-valid (1 − alpha) confidence sequence (clipped to [−1, 1], where a
    difference of two proportions lives). ``worse`` is the one-sided test of
    H0: diff >= 0 (``log_lambda_one_sided >= log_bound``, equivalently
    ``upper_one_sided <= 0``), valid over unlimited looks.
    """

    n_canary: int
    n_baseline: int
    rate_canary: float
    rate_baseline: float
    diff: float
    variance: float
    tau: float
    alpha: float
    log_lambda: float
    log_bound: float
    upper: float
    lower: float
    log_lambda_one_sided: float
    upper_one_sided: float
    worse: bool
    deff_canary: float = 1.0
    deff_baseline: float = 1.0

    @property
    def effective_canary(self) -> float:
        """Independent evidence in the canary arm: trades over the design effect."""
        return self.n_canary / max(1.0, self.deff_canary)

    @property
    def effective_baseline(self) -> float:
        return self.n_baseline / max(1.0, self.deff_baseline)

    @property
    def has_evidence(self) -> bool:
        """Both arms have the trades the normal approximation needs (:data:`MIN_EVIDENCE_SAMPLE`)."""
        return self.n_canary >= MIN_EVIDENCE_SAMPLE and self.n_baseline >= MIN_EVIDENCE_SAMPLE

    def non_inferior(self, delta: float) -> bool:
        """Always-valid evidence that the canary is at most ``delta`` worse: lower bound > −delta.

        Uses the two-sided sequence (conservative) and, like FAIL, needs the minimum
        evidence in both arms.
        """
        return self.has_evidence and self.lower > -delta


def _check_counts(wins: int, n: int, arm: str) -> None:
    if n < 0 or wins < 0 or wins > n:
        raise ValueError(f"{arm}: need 0 <= wins <= n, got wins={wins}, n={n}")


def design_effect(sums: dict[str, float] | None, n: int) -> float:
    """Variance inflation of a win rate whose trades come in clusters (>= 1).

    Trades placed in the same burst of the market share its move, so their outcomes are
    correlated and a binomial variance overstates the evidence (a demo run: 35 of 35 trades
    of one burst won, 18 of 18 of the next lost). From the per-cluster sums the risk service
    counts (``trade_clusters_total``: clusters G, trades Σn, wins Σw, Σn², Σw², Σw·n), the
    cluster-robust (ratio-estimator sandwich) variance of p = Σw/Σn is
    ``G/(G−1) · (Σw² − 2pΣwn + p²Σn²) / (Σn)²``; its ratio to ``p(1−p)/Σn`` is the design
    effect. With fewer than :data:`MIN_CLUSTERS` clusters the sandwich is itself too noisy,
    so each cluster counts as one observation (design effect = the size-weighted mean cluster
    size Σn²/Σn): no FAIL can come from two bad bursts however many orders they held.
    """
    if n <= 0:
        return 1.0
    g = float((sums or {}).get("clusters", 0.0))
    total = float((sums or {}).get("trades", 0.0))
    if total <= 0:
        return max(1.0, float(n))
    if g < MIN_CLUSTERS:
        # worst case: every trade of a cluster shares its outcome (Σn²/Σn, the size-weighted mean
        # cluster size); the sandwich is too noisy here and comes out low exactly when a few big
        # clusters lost, which is when the canary looks worse (measured: 6.0 % A/A with it)
        return max(1.0, float(sums["trades_sq"]) / total)  # type: ignore[index]
    w = float(sums.get("wins", 0.0))  # type: ignore[union-attr]
    p = (w + 1.0) / (total + 2.0)      # smoothed, as the variance below
    robust = g / (g - 1.0) * (sums["wins_sq"] - 2 * p * sums["wins_trades"]  # type: ignore[index]
                              + p * p * sums["trades_sq"]) / (total * total)  # type: ignore[index]
    binomial = p * (1.0 - p) / total
    return max(1.0, robust / binomial) if binomial > 0 else max(1.0, total / g)


#: Below this many closed clusters in an arm, the design effect is the mean cluster size.
MIN_CLUSTERS = 30


def winrate_test(wins_canary: int, n_canary: int, wins_baseline: int, n_baseline: int, *,
                 alpha: float = DEFAULT_ALPHA, tau: float = DEFAULT_TAU, deff_canary: float = 1.0,
                 deff_baseline: float = 1.0) -> WinrateTest:
    """The sequential evidence from the counts accumulated since the canary stage started.

    ``deff_*`` inflate each arm's variance for clustered trades (:func:`design_effect`); 1 is
    the independent-trades case. An empty arm is no evidence: statistics 0 (Λ = 1), bounds ±1,
    ``worse`` False.
    """
    _check_counts(wins_canary, n_canary, "canary")
    _check_counts(wins_baseline, n_baseline, "baseline")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not tau > 0.0:
        raise ValueError(f"tau must be > 0, got {tau}")
    log_bound = math.log(1.0 / alpha)
    rc = wins_canary / n_canary if n_canary else math.nan
    rb = wins_baseline / n_baseline if n_baseline else math.nan
    if n_canary == 0 or n_baseline == 0:
        return WinrateTest(n_canary, n_baseline, rc, rb, math.nan, math.inf, tau, alpha, 0.0, log_bound,
                           1.0, -1.0, 0.0, 1.0, False, deff_canary, deff_baseline)
    d = rc - rb
    # clustered trades: each arm is worth n / deff independent trades (smoothing applied at that size)
    dc, db = max(1.0, deff_canary), max(1.0, deff_baseline)
    v = _arm_variance(wins_canary / dc, n_canary / dc) + _arm_variance(wins_baseline / db, n_baseline / db)
    w = half_width(v, tau, alpha)
    lam1 = log_mixture_one_sided(d, v, tau)
    return WinrateTest(
        n_canary=n_canary, n_baseline=n_baseline, rate_canary=rc, rate_baseline=rb, diff=d, variance=v,
        tau=tau, alpha=alpha, log_lambda=log_mixture(d, v, tau), log_bound=log_bound,
        upper=min(1.0, d + w), lower=max(-1.0, d - w), log_lambda_one_sided=lam1,
        upper_one_sided=min(1.0, d + _one_sided_offset(v, tau, alpha)),
        worse=bool(v > 0 and lam1 >= log_bound), deff_canary=dc, deff_baseline=db)


def _pp(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x * 100:+.2f} pp"


def _rate(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.4f}"


def describe(test: WinrateTest) -> str:
    """The numbers every verdict quotes: n, rates, statistics, bound, alpha, tau."""
    return (f"n canary {test.n_canary} / baseline {test.n_baseline}; win rate canary {_rate(test.rate_canary)} "
            f"vs baseline {_rate(test.rate_baseline)} (diff {_pp(test.diff)}, always-valid "
            f"{1 - test.alpha:.0%} CS [{_pp(test.lower)}, {_pp(test.upper)}]); "
            f"one-sided log_lambda {test.log_lambda_one_sided:.3f}, two-sided log_lambda {test.log_lambda:.3f}, "
            f"bound log(1/alpha) {test.log_bound:.3f} (alpha {test.alpha:g}, tau {test.tau:g})")


def sequential_decision(test: WinrateTest, *, delta: float, min_sample: int,
                        early_promote: bool = False) -> tuple[str, str]:
    """(verdict, reason) of the win-rate gate on sequential evidence.

    FAIL needs both: always-valid evidence that the canary is worse (``test.worse``) *and* an
    observed shortfall beyond the seed's margin (``diff < -delta``), so a canary within the
    margin is never rolled back for being "significantly" a little worse. FAIL can come at
    any look once each arm has :data:`MIN_EVIDENCE_SAMPLE` trades — the test, not
    ``min_sample``, controls false alarms, so a bad canary is stopped as soon as the
    evidence is there. Otherwise INSUFFICIENT below ``min_sample`` canary trades, else PASS.
    With ``early_promote``, the reason also says "PASS (non-inferior)" when the lower
    bound is above ``-delta`` (the caller decides with ``test.non_inferior(delta)``).
    """
    facts = describe(test)
    margin = f"margin {delta * 100:g} pp"
    if test.has_evidence and test.worse and test.diff < -delta:
        return "FAIL", (f"canary worse than baseline (one-sided log_lambda {test.log_lambda_one_sided:.3f} >= "
                        f"{test.log_bound:.3f}) and shortfall {_pp(test.diff)} beyond {margin}: {facts}")
    extra = ""
    if early_promote and test.non_inferior(delta):
        extra = f"; PASS (non-inferior): lower bound {_pp(test.lower)} > -{margin}"
    if test.n_canary < min_sample:
        return "INSUFFICIENT", (f"n canary {test.n_canary} < min_sample {min_sample}, no evidence of harm: "
                                f"{facts}{extra}")
    # Clustered trades: min_sample counts the canary's *independent* evidence (n / design effect),
    # the seed's sample_canary >= min_sample. The baseline needs MIN_EVIDENCE_SAMPLE effective trades
    # so that the normal approximation behind the bound holds: a canary judged against a baseline of
    # 51 trades in 13 bursts has been compared with about 12 observations, too few to tell a broken
    # model (0.4 % vs 37 % in a demo run) from noise, and waits. A release whose min_sample is below
    # that floor (a smoke test's 5) has chosen how little evidence will do, and the baseline is not
    # held to more than the canary. Beyond the floor the baseline's uncertainty is in the test's
    # variance (its bound), not in a second sample-size rule: with a 10 % canary the baseline's
    # bursts are ~9x larger, so its effective count grows no faster than the canary's, and
    # requiring min_sample of it too made every PASS wait for hundreds of bursts.
    baseline_floor = min(min_sample, MIN_EVIDENCE_SAMPLE)
    if test.effective_canary < min_sample or test.effective_baseline < baseline_floor:
        return "INSUFFICIENT", (f"effective trades (n / design effect) canary {test.effective_canary:.0f} "
                                f"(needs min_sample {min_sample}), baseline {test.effective_baseline:.0f} "
                                f"(needs {baseline_floor}), no evidence of harm: {facts}{extra}")
    if test.worse:
        why = f"canary worse but shortfall {_pp(test.diff)} within {margin}"
    elif not test.has_evidence:
        why = f"fewer than {MIN_EVIDENCE_SAMPLE} trades in an arm"
    else:
        why = "no always-valid evidence that the canary is worse"
    return "PASS", f"{why}: {facts}{extra}"


def threshold_decision(wins_c: int, n_c: int, wins_b: int, n_b: int, *, delta: float,
                       min_sample: int) -> tuple[str, str]:
    """The seed's rule, exactly: FAIL when ``n_c >= min_sample and rate_c < rate_b - delta``.

    Kept for comparison (bench/bench_gates.py): re-checked every interval it has no control
    of false rollbacks across looks. An empty baseline has no rate, so it cannot FAIL.
    """
    rc = wins_c / n_c if n_c else math.nan
    rb = wins_b / n_b if n_b else math.nan
    facts = f"n canary {n_c} / baseline {n_b}; win rate canary {_rate(rc)} vs baseline {_rate(rb)}"
    if n_c < min_sample:
        return "INSUFFICIENT", f"n canary {n_c} < min_sample {min_sample}: {facts}"
    if rc < rb - delta:
        return "FAIL", f"win rate canary {_rate(rc)} < baseline {_rate(rb)} - {delta * 100:g} pp: {facts}"
    return "PASS", f"win rate canary {_rate(rc)} >= baseline - {delta * 100:g} pp: {facts}"


def design_effect_array(sums: dict[str, np.ndarray], n: np.ndarray) -> np.ndarray:
    """:func:`design_effect` elementwise, for simulations (checked against it in the tests and the bench)."""
    g, total = sums["clusters"].astype(float), sums["trades"].astype(float)
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        few = np.where(total > 0, np.maximum(1.0, sums["trades_sq"] / total), np.maximum(1.0, n))
        p = (sums["wins"] + 1.0) / (total + 2.0)
        robust = g / (g - 1.0) * (sums["wins_sq"] - 2 * p * sums["wins_trades"] + p * p * sums["trades_sq"]) \
            / (total * total)
        binomial = p * (1.0 - p) / total
        many = np.where(binomial > 0, np.maximum(1.0, robust / binomial), np.maximum(1.0, total / g))
    out = np.where((g < MIN_CLUSTERS) | (total <= 0), few, many)
    return np.where(n <= 0, 1.0, out)


def sequential_fail_mask(wins_c: np.ndarray, n_c: np.ndarray, wins_b: np.ndarray, n_b: np.ndarray, *,
                         delta: float, alpha: float = DEFAULT_ALPHA, tau: float = DEFAULT_TAU,
                         sums_canary: dict[str, np.ndarray] | None = None,
                         sums_baseline: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Elementwise ``sequential_decision(...)[0] == "FAIL"`` for count arrays (simulations); with the
    arms' cluster sums, the FAIL of ``winrate_test(..., deff_canary=, deff_baseline=)``.

    The one-sided statistic needs ``erfc``; it is only evaluated where it can matter
    (``log Λ₁ <= log 2 + log Λ`` since Φ <= 1), which keeps a look after every trade cheap.
    """
    wins_c, n_c, wins_b, n_b = (np.asarray(a) for a in (wins_c, n_c, wins_b, n_b))
    log_bound = math.log(1.0 / alpha)
    ok = (n_c >= MIN_EVIDENCE_SAMPLE) & (n_b >= MIN_EVIDENCE_SAMPLE)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = wins_c / np.where(n_c > 0, n_c, 1) - wins_b / np.where(n_b > 0, n_b, 1)
    out = np.zeros(np.broadcast(wins_c, n_c, wins_b, n_b).shape, dtype=bool)
    cand = ok & (d < -delta) & (d < 0)
    if not cand.any():
        return out
    # clustered trades (cluster sums given): each arm counts n / deff independent trades, as in winrate_test
    dfc = design_effect_array({k: v[cand] for k, v in sums_canary.items()}, n_c[cand]) if sums_canary else 1.0
    dfb = design_effect_array({k: v[cand] for k, v in sums_baseline.items()}, n_b[cand]) if sums_baseline else 1.0
    v = smoothed_variance(wins_c[cand] / dfc, n_c[cand] / dfc, wins_b[cand] / dfb, n_b[cand] / dfb)
    dc = d[cand]
    cand2 = _LOG2 + log_mixture(dc, v, tau) >= log_bound
    sub = np.zeros(dc.shape, dtype=bool)
    if cand2.any():
        sub[cand2] = log_mixture_one_sided(dc[cand2], v[cand2], tau) >= log_bound
    out[cand] = sub
    return out


def threshold_fail_mask(wins_c: np.ndarray, n_c: np.ndarray, wins_b: np.ndarray, n_b: np.ndarray, *,
                        delta: float, min_sample: int) -> np.ndarray:
    """Elementwise ``threshold_decision(...)[0] == "FAIL"`` for count arrays (simulations)."""
    wins_c, n_c, wins_b, n_b = (np.asarray(a) for a in (wins_c, n_c, wins_b, n_b))
    with np.errstate(divide="ignore", invalid="ignore"):
        rc = wins_c / np.where(n_c > 0, n_c, 1)
        rb = np.where(n_b > 0, wins_b / np.where(n_b > 0, n_b, 1), np.nan)
        return (n_c >= min_sample) & (rc < rb - delta)
