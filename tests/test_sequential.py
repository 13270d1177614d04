"""The always-valid win-rate test (tidegate/release/sequential.py), checked independently.

* the closed-form mixture statistics against a numerical integration of the Gaussian
  likelihood ratio over the mixing distribution (scipy.integrate.quad);
* the confidence-sequence bounds sit exactly where the statistic crosses log(1/alpha);
* brute force: equal canaries with a look after *every* trade are rolled back less often
  than alpha (one-sided binomial upper bound), while the seed's threshold, looked at on
  the benchmark's cadence, is not; an 8-point drop is caught within 700 canary trades
  at the median;
* clustered trades (a burst's trades share its outcome): without the design effect an
  equal canary is rolled back far more often than alpha; with ``design_effect`` on the
  running cluster sums it must stay below alpha, and an 8-point drop is still caught;
* edge cases (empty arms, all wins / losses, tiny samples) never FAIL, and the reasons
  quote the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
from scipy import integrate, optimize, stats

from tidegate.release.sequential import (
    DEFAULT_TAU,
    MIN_CLUSTERS,
    MIN_EVIDENCE_SAMPLE,
    WinrateTest,
    design_effect,
    design_effect_array,
    log_mixture,
    log_mixture_one_sided,
    sequential_decision,
    sequential_fail_mask,
    smoothed_variance,
    threshold_decision,
    threshold_fail_mask,
    winrate_test,
)

ALPHA = 0.05
LOG_BOUND = math.log(1 / ALPHA)


# --- an independent computation of the mixture ---------------------------------------------

def _log_integral(d: float, v: float, tau: float, theta0: float, one_sided: bool) -> float:
    """log ∫ N(d; θ, V)/N(d; θ0, V) · prior(θ) dθ with prior N(θ0, τ²) (or 2·N on θ < θ0), by quad."""
    sd = math.sqrt(v)

    def h(theta: float) -> float:
        return float(stats.norm.logpdf(d, theta, sd) - stats.norm.logpdf(d, theta0, sd)
                     + stats.norm.logpdf(theta, theta0, tau))

    post_sd = math.sqrt(v * tau**2 / (v + tau**2))
    mode = (tau**2 * d + v * theta0) / (v + tau**2)
    if one_sided:
        peak = min(mode, theta0)
        lo, hi = peak - 60 * post_sd, theta0
    else:
        peak = mode
        lo, hi = mode - 60 * post_sd, mode + 60 * post_sd
    shift = h(peak)
    pts = [p for p in (peak, peak - post_sd, peak + post_sd) if lo < p < hi]
    val, _ = integrate.quad(lambda t: math.exp(h(t) - shift), lo, hi, points=pts or None, limit=400,
                            epsabs=0.0, epsrel=1e-11)
    return math.log(val) + shift + (math.log(2.0) if one_sided else 0.0)


CASES = [  # (d, V, tau, theta0)
    (-0.07, 6.9e-4, 0.05, 0.0),
    (0.01, 1.0e-3, 0.05, 0.0),
    (-0.20, 1.0e-4, 0.02, 0.0),
    (0.0, 1.0e-2, 0.20, 0.0),
    (-0.03, 2.5e-4, 0.08, -0.05),
    (0.15, 5.0e-4, 0.05, 0.0),
    (0.40, 1.0e-5, 0.10, 0.0),        # far on the "better" side (u = -126): the asymptotic log Φ branch
    (0.35, 1.0e-4, 0.10, 0.0),        # u = -34.8: asymptotic branch, near its edge
    (0.29, 1.0e-4, 0.10, 0.0),        # u = -28.9: erfc branch, near its edge
    (-0.12, 3.0e-3, 0.03, 0.02),
]


@pytest.mark.parametrize(("d", "v", "tau", "theta0"), CASES)
def test_closed_form_matches_numerical_mixture_integral(d: float, v: float, tau: float, theta0: float) -> None:
    two = log_mixture(d, v, tau, theta0)
    one = log_mixture_one_sided(d, v, tau, theta0)
    assert two == pytest.approx(_log_integral(d, v, tau, theta0, one_sided=False), rel=1e-7, abs=1e-8)
    assert one == pytest.approx(_log_integral(d, v, tau, theta0, one_sided=True), rel=1e-7, abs=1e-8)
    # the array path is the same function
    arr = log_mixture_one_sided(np.array([d, d]), np.array([v, v]), tau, theta0)
    assert arr == pytest.approx([one, one], rel=1e-12)


def test_statistic_of_a_test_is_the_mixture_of_its_own_difference_and_variance() -> None:
    t = winrate_test(180, 400, 1872, 3600)
    assert t.diff == pytest.approx(0.45 - 0.52)
    pc, pb = 181 / 402, 1873 / 3602                       # add-one smoothing, variance only
    assert t.variance == pytest.approx(pc * (1 - pc) / 400 + pb * (1 - pb) / 3600, rel=1e-12)
    assert t.log_lambda == pytest.approx(_log_integral(t.diff, t.variance, t.tau, 0.0, False), rel=1e-7)
    assert t.log_lambda_one_sided == pytest.approx(_log_integral(t.diff, t.variance, t.tau, 0.0, True), rel=1e-7)
    assert t.log_bound == pytest.approx(LOG_BOUND) and t.tau == DEFAULT_TAU


# --- confidence sequences --------------------------------------------------------------------

def _random_tests(n: int, seed: int) -> Iterator[WinrateTest]:
    rng = np.random.default_rng(seed)
    for _ in range(n):
        nc = int(rng.integers(60, 4000))
        nb = int(rng.integers(60, 40000))
        wc = int(rng.binomial(nc, rng.uniform(0.3, 0.7)))
        wb = int(rng.binomial(nb, rng.uniform(0.3, 0.7)))
        yield winrate_test(wc, nc, wb, nb, alpha=float(rng.choice([0.01, 0.05, 0.1])),
                           tau=float(rng.choice([0.02, 0.05, 0.1])))


def test_confidence_sequence_bounds_are_where_the_statistic_crosses_the_bound() -> None:
    checked = 0
    for t in _random_tests(200, 1):
        if not (-1 < t.lower and t.upper < 1 and t.upper_one_sided < 1):
            continue  # clipped to the range of a difference of proportions
        checked += 1
        eps = 1e-6
        for bound, outward in ((t.upper, +eps), (t.lower, -eps)):
            assert log_mixture(t.diff, t.variance, t.tau, bound) == pytest.approx(t.log_bound, rel=1e-9)
            assert log_mixture(t.diff, t.variance, t.tau, bound - outward) < t.log_bound
            assert log_mixture(t.diff, t.variance, t.tau, bound + outward) > t.log_bound
        assert t.lower < t.diff < t.upper and t.upper - t.diff == pytest.approx(t.diff - t.lower)
        # one-sided: the acceptance set of "diff < theta0" is (-inf, upper_one_sided]
        u1 = t.upper_one_sided
        assert log_mixture_one_sided(t.diff, t.variance, t.tau, u1) == pytest.approx(t.log_bound, rel=1e-9)
        assert log_mixture_one_sided(t.diff, t.variance, t.tau, u1 - eps) < t.log_bound
        assert log_mixture_one_sided(t.diff, t.variance, t.tau, u1 + eps) > t.log_bound
        assert t.diff < u1 < t.upper      # sharper than the two-sided boundary used one-sided
        assert t.worse == (u1 <= 0) == (t.log_lambda_one_sided >= t.log_bound)
    assert checked > 150


def test_one_sided_upper_bound_agrees_with_a_root_of_the_numerical_integral() -> None:
    for wc, nc, wb, nb in ((180, 400, 1872, 3600), (500, 1200, 5600, 10800), (20, 60, 300, 540)):
        t = winrate_test(wc, nc, wb, nb)
        root = optimize.brentq(lambda th, t=t: _log_integral(t.diff, t.variance, t.tau, th, True) - t.log_bound,
                               t.diff, t.upper, xtol=1e-12)
        assert t.upper_one_sided == pytest.approx(root, abs=1e-8)


def test_a_large_drop_is_worse_and_fails_only_beyond_the_margin() -> None:
    t = winrate_test(160, 400, 1872, 3600)                 # 40 % vs 52 %
    assert t.worse and t.upper < 0 and t.diff < -0.05
    assert sequential_decision(t, delta=0.05, min_sample=200)[0] == "FAIL"
    assert sequential_decision(t, delta=0.15, min_sample=200)[0] == "PASS"   # worse, but within that margin
    assert "within margin 15 pp" in sequential_decision(t, delta=0.15, min_sample=200)[1]
    assert sequential_decision(t, delta=0.05, min_sample=1000)[0] == "FAIL"   # FAIL needs no min_sample


# --- brute force: a look after every trade ---------------------------------------------------

def _streams(seed: int, reps: int, trades: int, p_canary: float, p_baseline: float = 0.52, share: float = 0.10,
             chunk: int = 100) -> Iterator[tuple[np.ndarray, ...]]:
    """Cumulative (wins_c, n_c, wins_b, n_b) after every trade, shape (chunk, trades)."""
    rng = np.random.default_rng(seed)
    for start in range(0, reps, chunk):
        r = min(chunk, reps - start)
        canary = rng.random((r, trades)) < share
        win = rng.random((r, trades)) < np.where(canary, p_canary, p_baseline)
        n_c = np.cumsum(canary, axis=1, dtype=np.int64)
        n_b = np.arange(1, trades + 1, dtype=np.int64)[None, :] - n_c
        yield (np.cumsum(win & canary, axis=1, dtype=np.int64), n_c,
               np.cumsum(win & ~canary, axis=1, dtype=np.int64), n_b)


def _first(mask: np.ndarray) -> np.ndarray:
    return np.where(mask.any(axis=1), mask.argmax(axis=1), -1)


def _upper95(k: int, n: int) -> float:
    """One-sided 95 % Clopper-Pearson upper bound of a binomial rate."""
    return 1.0 if k == n else float(stats.beta.ppf(0.95, k + 1, n - k))


def _lower95(k: int, n: int) -> float:
    return 0.0 if k == 0 else float(stats.beta.ppf(0.05, k, n - k + 1))


def test_equal_canary_is_falsely_rolled_back_less_than_alpha_with_a_look_after_every_trade() -> None:
    reps, trades = 1000, 30_000                           # ~3,000 canary trades each
    cadence = 20                                           # the bench: 2,400 trades/h, a look every 30 s
    hits = {"seq_delta_5pp": 0, "seq_delta_0": 0, "threshold": 0}
    verified = 0
    for wc, nc, wb, nb in _streams(seed=20240601, reps=reps, trades=trades, p_canary=0.52):
        assert nc[:, -1].min() > 2_700
        seq5 = sequential_fail_mask(wc, nc, wb, nb, delta=0.05, alpha=ALPHA)
        seq0 = sequential_fail_mask(wc, nc, wb, nb, delta=0.0, alpha=ALPHA)
        sl = slice(cadence - 1, None, cadence)
        thr = threshold_fail_mask(wc[:, sl], nc[:, sl], wb[:, sl], nb[:, sl], delta=0.05, min_sample=200)
        hits["seq_delta_5pp"] += int(seq5.any(axis=1).sum())
        hits["seq_delta_0"] += int(seq0.any(axis=1).sum())
        hits["threshold"] += int(thr.any(axis=1).sum())
        assert not (seq5 & ~seq0).any()                    # the margin only removes FAILs
        # the simulation's mask is the scalar decision: at each first FAIL and the look before it
        first = _first(seq0)
        for i in np.flatnonzero(first >= 0)[:5]:
            j = int(first[i])
            at = winrate_test(int(wc[i, j]), int(nc[i, j]), int(wb[i, j]), int(nb[i, j]))
            before = winrate_test(int(wc[i, j - 1]), int(nc[i, j - 1]), int(wb[i, j - 1]), int(nb[i, j - 1]))
            assert sequential_decision(at, delta=0.0, min_sample=200)[0] == "FAIL"
            assert sequential_decision(before, delta=0.0, min_sample=200)[0] != "FAIL"
            verified += 1
    assert verified > 0
    assert _upper95(hits["seq_delta_5pp"], reps) < ALPHA, hits
    assert _upper95(hits["seq_delta_0"], reps) < ALPHA, hits
    assert _lower95(hits["threshold"], reps) > ALPHA, hits   # the seed's rule peeks its way past alpha


def test_an_8_point_drop_is_caught_within_700_canary_trades_at_the_median() -> None:
    reps, trades = 300, 15_000                            # ~1,500 canary trades each
    at_tau: dict[float, list[float]] = {DEFAULT_TAU: [], 0.02: []}
    for wc, nc, wb, nb in _streams(seed=7, reps=reps, trades=trades, p_canary=0.44):
        for tau, out in at_tau.items():
            first = _first(sequential_fail_mask(wc, nc, wb, nb, delta=0.05, alpha=ALPHA, tau=tau))
            out += [float(nc[i, f]) if f >= 0 else math.inf for i, f in enumerate(first)]
    median = float(np.median(at_tau[DEFAULT_TAU]))
    assert median <= 700, median
    assert np.mean(np.isfinite(at_tau[DEFAULT_TAU])) > 0.95
    # tau matters: a mixture centred on much smaller drops is slower to see 8 points
    assert float(np.median(at_tau[0.02])) > 1.3 * median


def test_the_masks_are_the_scalar_decisions() -> None:
    rng = np.random.default_rng(3)
    n_c = np.concatenate([rng.integers(0, 1500, 3000), [0, 0, 5, 29, 30, 30, 200, 200]])
    n_b = np.concatenate([rng.integers(0, 12000, 3000), [0, 100, 100, 1000, 1000, 0, 1800, 1800]])
    w_c = np.concatenate([rng.binomial(n_c[:3000], rng.uniform(0.3, 0.6, 3000)), [0, 0, 0, 0, 0, 0, 90, 200]])
    w_b = np.concatenate([rng.binomial(n_b[:3000], 0.52), [0, 100, 100, 520, 1000, 0, 936, 936]])
    for delta in (0.0, 0.05):
        seq = sequential_fail_mask(w_c, n_c, w_b, n_b, delta=delta)
        thr = threshold_fail_mask(w_c, n_c, w_b, n_b, delta=delta, min_sample=200)
        for k in range(n_c.size):
            args = (int(w_c[k]), int(n_c[k]), int(w_b[k]), int(n_b[k]))
            assert seq[k] == (sequential_decision(winrate_test(*args), delta=delta, min_sample=200)[0] == "FAIL"), args
            assert thr[k] == (threshold_decision(*args, delta=delta, min_sample=200)[0] == "FAIL"), args
        assert 100 < seq.sum() < n_c.size and 100 < thr.sum() < n_c.size


# --- brute force: clustered trades and the design effect -------------------------------------
#
# Trades of one market burst share its outcome (a demo run: 35 of 35 won, 18 of 18 lost). The
# risk service counts per (route, model) the sums over closed clusters; the gate turns them
# into a variance inflation with design_effect. Here: cluster sizes geometric with mean 5
# (E[n²]/E[n] = 9, the true design effect of the ratio estimator when a cluster's trades all
# win or all lose), each cluster's trades win together with probability p, 10 % of the
# clusters go to the canary, and the gate looks after every closed cluster.

CLUSTER_STATS = ("clusters", "trades", "wins", "trades_sq", "wins_sq", "wins_trades")
ClusterSums = dict[str, dict[str, np.ndarray]]


def _clustered_streams(seed: int, reps: int, clusters: int, p_canary: float, p_baseline: float = 0.52,
                       share: float = 0.10, mean_size: float = 5.0, chunk: int = 200) -> Iterator[ClusterSums]:
    """Running cluster sums {"c"|"b": {stat: array}} after every cluster, shape (chunk, clusters)."""
    rng = np.random.default_rng(seed)
    for start in range(0, reps, chunk):
        r = min(chunk, reps - start)
        size = rng.geometric(1.0 / mean_size, (r, clusters)).astype(np.int64)
        canary = rng.random((r, clusters)) < share
        wins = size * (rng.random((r, clusters)) < np.where(canary, p_canary, p_baseline))
        out: ClusterSums = {}
        for arm, m in (("c", canary), ("b", ~canary)):
            per = {"clusters": m.astype(np.int64), "trades": size * m, "wins": wins * m,
                   "trades_sq": size * size * m, "wins_sq": wins * wins * m, "wins_trades": wins * size * m}
            out[arm] = {k: np.cumsum(v, axis=1) for k, v in per.items()}
        yield out


def _design_effect_array(s: dict[str, np.ndarray]) -> np.ndarray:
    """design_effect(sums, n = sums["trades"]) elementwise (every trade here is in a closed cluster)."""
    return design_effect_array(s, s["trades"])


def _clustered_fail_mask(st: ClusterSums, *, delta: float, design: bool = True, alpha: float = ALPHA,
                         tau: float = DEFAULT_TAU) -> np.ndarray:
    """Elementwise FAIL of winrate_test(..., deff_canary=, deff_baseline=) + sequential_decision."""
    c, b = st["c"], st["b"]
    return sequential_fail_mask(c["wins"], c["trades"], b["wins"], b["trades"], delta=delta, alpha=alpha, tau=tau,
                                sums_canary=c if design else None, sums_baseline=b if design else None)


def _sums_at(st: ClusterSums, arm: str, i: int, j: int) -> dict[str, float]:
    return {k: float(st[arm][k][i, j]) for k in CLUSTER_STATS}


def _scalar_fail(st: ClusterSums, i: int, j: int, *, delta: float) -> bool:
    """The gate's own path: design_effect on the cluster sums, winrate_test, sequential_decision."""
    nc, nb = int(st["c"]["trades"][i, j]), int(st["b"]["trades"][i, j])
    t = winrate_test(int(st["c"]["wins"][i, j]), nc, int(st["b"]["wins"][i, j]), nb,
                     deff_canary=design_effect(_sums_at(st, "c", i, j), nc),
                     deff_baseline=design_effect(_sums_at(st, "b", i, j), nb))
    return sequential_decision(t, delta=delta, min_sample=200)[0] == "FAIL"


def test_the_vectorised_design_effect_and_clustered_mask_are_the_scalar_path() -> None:
    rng = np.random.default_rng(5)
    checked = {"few": 0, "many": 0, "fail": 0}
    for p_canary in (0.52, 0.40):
        st = next(_clustered_streams(seed=11, reps=40, clusters=1500, p_canary=p_canary, chunk=40))
        dc = _design_effect_array(st["c"])
        masks = {delta: _clustered_fail_mask(st, delta=delta) for delta in (0.0, 0.05)}
        cells = [(int(i), int(j)) for i, j in zip(rng.integers(0, 40, 300), rng.integers(0, 1500, 300), strict=True)]
        cells += [(i, j) for i in range(40) for j in range(0, 120, 3)]          # the first clusters: G < 10
        for i, j in cells:
            g = st["c"]["clusters"][i, j]
            assert dc[i, j] == pytest.approx(design_effect(_sums_at(st, "c", i, j), int(st["c"]["trades"][i, j])),
                                             rel=1e-12)
            checked["few" if g < MIN_CLUSTERS else "many"] += 1
            for delta, mask in masks.items():
                assert mask[i, j] == _scalar_fail(st, i, j, delta=delta), (i, j, delta)
                checked["fail"] += int(mask[i, j])
    assert design_effect(None, 0) == 1.0 and design_effect({"clusters": 0, "trades": 0}, 40) == 40.0
    assert checked["few"] > 100 and checked["many"] > 300 and checked["fail"] > 20, checked


def test_clustered_equal_canary_is_falsely_rolled_back_less_than_alpha_only_with_the_design_effect() -> None:
    reps, clusters = 2000, 5000                            # ~2,500 canary trades in ~500 clusters each
    no_design_reps = 600                                   # (a) is far from the line: fewer reps suffice
    hits = {"deff_delta_5pp": 0, "deff_delta_0": 0, "no_deff_delta_5pp": 0}
    verified, seen = 0, 0
    fail_clusters: list[int] = []
    for st in _clustered_streams(seed=20240602, reps=reps, clusters=clusters, p_canary=0.52):
        assert 2_000 < float(np.median(st["c"]["trades"][:, -1])) < 3_000
        assert 7.0 < float(np.median(_design_effect_array(st["c"])[:, -1])) < 11.0   # E[n²]/E[n] = 9
        d5 = _clustered_fail_mask(st, delta=0.05)
        d0 = _clustered_fail_mask(st, delta=0.0)
        assert not (d5 & ~d0).any()
        hits["deff_delta_5pp"] += int(d5.any(axis=1).sum())
        hits["deff_delta_0"] += int(d0.any(axis=1).sum())
        if seen < no_design_reps:
            hits["no_deff_delta_5pp"] += int(_clustered_fail_mask(st, delta=0.05, design=False).any(axis=1).sum())
        seen += d5.shape[0]
        first = _first(d5)
        for i in np.flatnonzero(first >= 0):
            j = int(first[i])
            fail_clusters.append(int(st["c"]["clusters"][i, j]))
            if verified < 10:                              # the scalar gate agrees at a first FAIL and before it
                assert _scalar_fail(st, int(i), j, delta=0.05) and not _scalar_fail(st, int(i), j - 1, delta=0.05)
                verified += 1
    rates = {k: v / (no_design_reps if k.startswith("no_") else reps) for k, v in hits.items()}
    early = sum(g < 30 for g in fail_clusters)
    info = f"{hits} -> {rates}; FAILs at < 30 canary clusters: {early} of {len(fail_clusters)}"
    assert verified > 0
    # (a) ignoring the clustering, an equal canary is rolled back far more often than alpha
    assert _lower95(hits["no_deff_delta_5pp"], no_design_reps) > 2 * ALPHA, info
    # (b) with the design effect from the running cluster sums, P(ever FAIL) stays below alpha
    assert _upper95(hits["deff_delta_5pp"], reps) < ALPHA, info
    assert _upper95(hits["deff_delta_0"], reps) < ALPHA, info


def test_a_clustered_8_point_drop_is_still_caught_within_the_simulated_stage_in_most_reps() -> None:
    reps, clusters = 300, 6000                             # ~3,000 canary trades each
    trades: list[float] = []
    for st in _clustered_streams(seed=8, reps=reps, clusters=clusters, p_canary=0.44):
        first = _first(_clustered_fail_mask(st, delta=0.05))
        n_c = st["c"]["trades"]
        trades += [float(n_c[i, f]) if f >= 0 else math.inf for i, f in enumerate(first)]
    caught = float(np.mean(np.isfinite(trades)))
    median = float(np.median(trades))
    # the price of clustering: ~9x fewer effective trades, so several times the independent ~290
    assert caught > 0.5 and math.isfinite(median), (caught, median)
    assert median > 700, median


# --- edge cases and reasons ------------------------------------------------------------------

@pytest.mark.parametrize(("wc", "nc", "wb", "nb"), [
    (0, 0, 0, 0), (0, 0, 500, 1000), (10, 20, 0, 0),
    (50, 50, 450, 450), (0, 50, 0, 450),                  # all wins / all losses in both arms: raw V = 0
    (0, 5, 100, 100), (0, 29, 1000, 1000), (1, 3, 2, 3),  # tiny n, however extreme
    (40, 40, 0, 29),                                       # tiny baseline
])
def test_edge_cases_never_fail(wc: int, nc: int, wb: int, nb: int) -> None:
    t = winrate_test(wc, nc, wb, nb)
    for delta in (0.0, 0.05):
        verdict, reason = sequential_decision(t, delta=delta, min_sample=200, early_promote=True)
        assert verdict == "INSUFFICIENT" if nc < 200 else verdict == "PASS"
        assert f"n canary {nc} / baseline {nb}" in reason
    assert math.isfinite(t.log_lambda) and math.isfinite(t.log_lambda_one_sided)
    assert -1.0 <= t.lower <= t.upper <= 1.0
    if nc == 0 or nb == 0:
        assert (t.worse, t.lower, t.upper, t.log_lambda, t.variance) == (False, -1.0, 1.0, 0.0, math.inf)
        assert not t.non_inferior(0.05)
    else:
        assert t.variance > 0


def test_zero_plugin_variance_gives_no_evidence_but_a_real_collapse_does() -> None:
    assert smoothed_variance(0, 50, 0, 450) > 0 and smoothed_variance(50, 50, 450, 450) > 0
    assert not winrate_test(0, 50, 0, 450).worse and not winrate_test(50, 50, 450, 450).worse
    # 0 wins in 30 canary trades against a 52 % baseline is real evidence, not an artefact
    t = winrate_test(0, MIN_EVIDENCE_SAMPLE, 520, 1000)
    assert t.worse and sequential_decision(t, delta=0.05, min_sample=200)[0] == "FAIL"
    below = winrate_test(0, MIN_EVIDENCE_SAMPLE - 1, 520, 1000)
    assert below.worse and sequential_decision(below, delta=0.05, min_sample=200)[0] == "INSUFFICIENT"


def test_reason_quotes_n_rates_statistic_bound_and_alpha() -> None:
    t = winrate_test(160, 412, 1926, 3702)
    verdict, reason = sequential_decision(t, delta=0.05, min_sample=200)
    assert verdict == "FAIL"
    for part in ("n canary 412 / baseline 3702", f"{160 / 412:.4f}", f"{1926 / 3702:.4f}",
                 f"{t.log_lambda_one_sided:.3f}", f"{t.log_lambda:.3f}", f"{LOG_BOUND:.3f}", "alpha 0.05",
                 f"tau {DEFAULT_TAU:g}", "margin 5 pp"):
        assert part in reason, part
    v2, r2 = sequential_decision(winrate_test(100, 150, 1000, 2000), delta=0.05, min_sample=200)
    assert v2 == "INSUFFICIENT" and "n canary 150 < min_sample 200" in r2 and "alpha 0.05" in r2
    _, r3 = threshold_decision(160, 412, 1926, 3702, delta=0.05, min_sample=200)
    assert "n canary 412 / baseline 3702" in r3 and f"{160 / 412:.4f}" in r3


def test_early_promotion_is_reported_when_the_lower_bound_clears_the_margin() -> None:
    good = winrate_test(1090, 2000, 9360, 18000)           # 54.5 % vs 52 %, lots of data
    assert good.non_inferior(0.05) and not good.non_inferior(0.0)
    verdict, reason = sequential_decision(good, delta=0.05, min_sample=200, early_promote=True)
    assert verdict == "PASS" and "PASS (non-inferior)" in reason
    assert "non-inferior" not in sequential_decision(good, delta=0.05, min_sample=200)[1]
    young = winrate_test(60, 100, 936, 1800)
    assert not young.non_inferior(0.05)                    # too little data to clear 5 points
    assert "non-inferior" not in sequential_decision(young, delta=0.05, min_sample=200, early_promote=True)[1]


def test_threshold_decision_is_the_seed_rule() -> None:
    assert threshold_decision(0, 199, 936, 1800, delta=0.05, min_sample=200)[0] == "INSUFFICIENT"
    assert threshold_decision(90, 200, 936, 1800, delta=0.05, min_sample=200)[0] == "FAIL"   # 0.45 < 0.47
    assert threshold_decision(96, 200, 936, 1800, delta=0.05, min_sample=200)[0] == "PASS"   # 0.48
    assert threshold_decision(90, 200, 0, 0, delta=0.05, min_sample=200)[0] == "PASS"        # no baseline rate
    # a single unlucky look is enough for it — the reason this module exists
    assert threshold_decision(93, 200, 1040, 2000, delta=0.05, min_sample=200)[0] == "FAIL"
    assert sequential_decision(winrate_test(93, 200, 1040, 2000), delta=0.05, min_sample=200)[0] == "PASS"


def test_invalid_inputs_are_refused() -> None:
    for args in ((5, 4, 0, 10), (-1, 4, 0, 10), (0, 4, 11, 10)):
        with pytest.raises(ValueError):
            winrate_test(*args)
    with pytest.raises(ValueError):
        winrate_test(1, 2, 1, 2, alpha=0.0)
    with pytest.raises(ValueError):
        winrate_test(1, 2, 1, 2, tau=0.0)


def test_min_sample_counts_the_canarys_effective_trades_and_the_baseline_needs_the_evidence_floor() -> None:
    """PASS: the canary's n / deff reaches min_sample and the baseline's reaches MIN_EVIDENCE_SAMPLE
    (or min_sample, when that is lower)."""
    equal = dict(deff_canary=3.0, deff_baseline=40.0)
    # canary 620/3 = 207 effective, baseline 4000/40 = 100 effective (>= 30): judged, equal -> PASS
    assert sequential_decision(winrate_test(31, 620, 200, 4000, **equal), delta=0.05, min_sample=200)[0] == "PASS"
    # canary 590/3 = 197 < 200: waits, whatever the baseline holds
    v, r = sequential_decision(winrate_test(30, 590, 200, 4000, **equal), delta=0.05, min_sample=200)
    assert v == "INSUFFICIENT" and "canary 197 (needs min_sample 200)" in r
    # a baseline of 51 trades in 13 bursts (deff 4, ~13 effective) is too little to compare with: waits
    v, r = sequential_decision(winrate_test(31, 620, 19, 51, deff_canary=3.0, deff_baseline=4.0), delta=0.05,
                               min_sample=200)
    assert v == "INSUFFICIENT" and f"(needs {MIN_EVIDENCE_SAMPLE})" in r
    # a release asking less of the canary than the floor (a smoke test's min_sample 5) asks no more of
    # the baseline: 76 trades in 23 bursts (deff 5.5, ~14 effective) against a canary of ~12 effective
    smoke = dict(deff_canary=6.5, deff_baseline=5.5)
    v, r = sequential_decision(winrate_test(34, 78, 27, 76, **smoke), delta=0.05, min_sample=5)
    assert v == "PASS", r
    v, r = sequential_decision(winrate_test(3, 20, 2, 20, **smoke), delta=0.05, min_sample=5)
    assert v == "INSUFFICIENT" and "(needs 5)" in r      # 20 / 5.5 = 3.6 effective in the baseline
