"""Markouts, fill rate, win rate, calibration and drift on hand-computed numbers."""

from __future__ import annotations

import math

import pytest

from tidegate.risk import drift
from tidegate.risk.book import RiskBook
from tidegate.risk.trading import MS, FillRecord, markout_bps, mid_at

S_NS = 1_000_000_000


def test_markout_sign_fee_and_mid_lookup():
    assert markout_bps("buy", 100.0, 100.1) == pytest.approx(10.0)
    assert markout_bps("sell", 100.0, 100.1) == pytest.approx(-10.0)
    assert markout_bps("buy", 100.0, 100.1, fee_rate=0.0001) == pytest.approx(9.0)
    assert mid_at([10, 20, 30], [1.0, 2.0, 3.0], 25) == 2.0
    assert mid_at([10, 20, 30], [1.0, 2.0, 3.0], 20) == 2.0
    assert mid_at([10, 20, 30], [1.0, 2.0, 3.0], 5) is None


def test_risk_book_closes_trades_after_the_longest_horizon_and_counts_fill_rate():
    rb = RiskBook()
    rb.on_mid("X", 0, 100.0)
    for coid, route in (("a", "paper"), ("b", "paper"), ("c", "canary")):
        rb.on_order(coid, route, "accepted")
    rb.on_fill("X", "a", FillRecord(0, "buy", 100.0, 1.0, 0.0001, "paper", 0.7), entry=True)
    rb.on_order("a", "paper", "filled")
    rb.on_order("b", "paper", "cancelled")
    rb.on_mid("X", 100 * MS, 100.05)
    rb.on_mid("X", 600 * MS, 99.9)
    assert rb.totals["paper"].trades == 0                    # 1000 ms not yet passed
    closed = rb.on_mid("X", 1001 * MS, 100.2)
    assert len(closed) == 1
    t = closed[0]
    assert t.markouts[100] == pytest.approx(5.0 - 1.0)
    assert t.markouts[500] == pytest.approx(5.0 - 1.0)       # last mid at or before 500 ms is 100.05
    assert t.markouts[1000] == pytest.approx(-10.0 - 1.0)
    assert not t.won
    snap = rb.route_snapshot("paper")
    assert snap["fill_rate_rolling"] == 0.5 and snap["cancel_to_fill_ratio"] == 1.0
    assert snap["winrate_rolling"] == 0.0
    assert math.isnan(rb.route_snapshot("canary")["winrate_rolling"])   # no sample is not zero
    sup = rb.supervision()
    assert sup["brier_online"] == pytest.approx(0.49) and sup["sample_canary"] == 0.0


def test_brier_ece_psi_ks():
    assert drift.brier([0.8, 0.2], [1, 0]) == pytest.approx(0.04)
    # two bins: 0.1 (y mean 0) and 0.9 (y mean 0.5) -> ECE = 0.5*0.1 + 0.5*0.4
    assert drift.ece([0.1, 0.1, 0.9, 0.9], [0, 0, 1, 0]) == pytest.approx(0.25)
    edges = [-10.0, 0.0, 10.0]
    assert drift.bin_fractions([-1, -2, 5, 20], edges) == [0.5, 0.5]
    assert drift.psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert drift.psi([0.5, 0.5], [0.9, 0.1]) == pytest.approx(0.4 * math.log(1.8) - 0.4 * math.log(0.2))
    assert drift.ks_binned([0.5, 0.5], [0.9, 0.1]) == pytest.approx(0.4)
    assert math.isnan(drift.psi_against([], edges, [0.5, 0.5]))


def test_canary_is_compared_with_the_active_model_over_the_same_window():
    """Old paper trades (an easy past) must not set the bar for a canary that started later."""
    from tidegate.risk.book import ClosedTrade, RiskBook

    book = RiskBook()
    s = 1_000_000_000
    for i in range(50):                      # the past: the active model wins everything
        book.closed.append(ClosedTrade("paper", i * s, {1000: 1.0}, True, 0.6))
    for i in range(50, 70):                  # the canary window: both arms win half the time
        book.closed.append(ClosedTrade("paper", i * s, {1000: 1.0}, i % 2 == 0, 0.6))
        book.closed.append(ClosedTrade("canary", i * s, {1000: 1.0}, i % 2 == 0, 0.6))
    sup = book.supervision()
    assert sup["winrate_canary"] == 0.5 and sup["sample_canary"] == 20
    assert sup["winrate_baseline_active"] == 0.5 and sup["sample_baseline_active"] == 20
    book.closed = type(book.closed)(t for t in book.closed if t.route != "canary")
    assert book.supervision()["winrate_baseline_active"] == 60 / 70   # no canary: the whole window


def _trade(rb: RiskBook, coid: str, route: str, model: str, t_ns: int, pieces: list[tuple[float, float]],
           side: str = "buy") -> None:
    """An entry order filled in ``pieces`` (price, qty) at ``t_ns``, then done."""
    rb.on_order(coid, route, "new", qty=sum(q for _, q in pieces), entry=True)
    rb.on_order(coid, route, "accepted", entry=True)
    for i, (price, qty) in enumerate(pieces):
        rb.on_fill("X", coid, FillRecord(t_ns + i, side, price, qty, 0.0, route, 0.6, model), entry=True)
    rb.on_order(coid, route, "filled", entry=True)


def test_a_trade_is_one_filled_entry_order_marked_by_its_quantity_weighted_fills():
    """Fifteen pieces of one order are one trade (the demo once counted 360 'trades' from 126 orders)."""
    rb = RiskBook()
    rb.on_mid("X", 0, 100.0)
    _trade(rb, "a", "paper", "m", 10, [(100.0, 1.0)] * 14 + [(99.0, 1.0)])
    rb.on_mid("X", 500 * MS, 100.0)
    assert rb.totals["paper"].trades == 0
    closed = rb.on_mid("X", 1200 * MS, 100.0)
    assert len(closed) == 1 and rb.totals["paper"].trades == 1 and rb.by_model[("paper", "m")] == [1, 1]
    # 14 pieces at 0 bps, one at (100 - 99)/99 bps: the weighted mean is a fifteenth of the last
    assert closed[0].markouts[1000] == pytest.approx((100.0 - 99.0) / 99.0 * 1e4 / 15)


def test_a_partially_filled_order_waits_for_its_end_and_its_remaining_fills():
    rb = RiskBook()
    rb.on_mid("X", 0, 100.0)
    rb.on_order("a", "paper", "new", qty=2.0, entry=True)
    rb.on_fill("X", "a", FillRecord(10, "buy", 100.0, 1.0, 0.0, "paper", 0.6, "m"), entry=True)
    rb.on_order("a", "paper", "filled", entry=True)       # arrives before the second fill (other stream)
    assert rb.on_mid("X", 2000 * MS, 100.0) == []          # 1 of 2 filled: not complete
    rb.on_fill("X", "a", FillRecord(20, "buy", 100.0, 1.0, 0.0, "paper", 0.6, "m"), entry=True)
    assert rb.totals["paper"].trades == 1


def test_an_order_end_arriving_after_the_last_mid_still_closes_its_trade():
    """CI (fresh6): risk's canary count stuck at 111 of 112 at the end of a replay.

    Orders and fills come on two streams: under load the order's "filled" event can arrive after the
    last book. The trade was then complete and marked but waited for a mid that never came.
    """
    rb = RiskBook()
    rb.on_mid("X", 0, 100.0)
    rb.on_order("a", "canary", "new", qty=1.0, entry=True)
    rb.on_order("a", "canary", "accepted", entry=True)
    rb.on_fill("X", "a", FillRecord(10, "buy", 100.0, 1.0, 0.0, "canary", 0.6, "m"), entry=True)
    rb.on_mid("X", 900 * MS, 101.0)
    rb.on_mid("X", 1500 * MS, 101.0)        # the last book of the replay: marked, but the end is unknown
    assert rb.totals["canary"].trades == 0
    rb.on_order("a", "canary", "filled", entry=True)
    assert rb.totals["canary"].trades == 1 and rb.totals["canary"].wins == 1


def test_release_attempt_counts_grow_past_min_sample_for_a_ten_percent_canary():
    """20,000 closed trades, 10 % canary: the attempt's canary sample is ~2,000 (it peaked at 71 when it was
    the canary's share of the last 500 trades)."""
    rb = RiskBook(window_trades=500)
    rb.on_mid("X", 0, 100.0)
    rb.begin_attempt("rel:cand:act", "cand", "act")
    import random

    rng = random.Random(3)
    for i in range(20_000):
        t = (i + 1) * 3 * S_NS
        canary = rng.random() < 0.1
        _trade(rb, f"o{i}", "canary" if canary else "paper", "cand" if canary else "act", t, [(100.0, 1.0)])
        rb.on_mid("X", t + 1500 * MS, 100.0 + (0.01 if rng.random() < 0.5 else -0.01))
    sup = rb.supervision()
    assert 1_850 <= sup["sample_canary"] <= 2_150 and sup["sample_canary"] + sup["sample_baseline_active"] == 20_000
    assert sup["sample_canary"] >= 200
    # every trade 3 s apart, beyond the 2 s cluster gap: every cluster is one trade
    sums = rb.cluster_sums[("canary", "cand")]
    assert sums["clusters"] == sums["trades"] == sums["trades_sq"] >= sup["sample_canary"] - 1
    rb.begin_attempt("", None, None)
    assert rb.supervision()["sample_canary"] <= 500      # outside an attempt: the rolling window


def test_trades_entered_within_the_gap_form_one_cluster():
    rb = RiskBook(cluster_gap_ns=2 * S_NS)
    rb.on_mid("X", 0, 100.0)
    for i, t in enumerate((1 * S_NS, 2 * S_NS, 3 * S_NS, 10 * S_NS)):
        _trade(rb, f"o{i}", "paper", "m", t, [(100.0, 1.0)])
        rb.on_mid("X", t + 1000, 101.0)   # the price is above our buys from then on: every trade wins
    rb.on_mid("X", 12 * S_NS, 101.0)
    rb.on_mid("X", 30 * S_NS, 101.0)
    # no later fill has moved the executor's clock past the last burst's gap: it may still grow
    assert rb.cluster_sums[("paper", "m")]["clusters"] == 1
    rb.on_mid("X", (12 + 121) * S_NS, 101.0)   # a quiet market for cluster_wait_market_ns: flushed
    s = rb.cluster_sums[("paper", "m")]
    assert (s["clusters"], s["trades"], s["trades_sq"], s["wins"], s["wins_sq"], s["wins_trades"]) == (2, 4, 10, 4,
                                                                                                       10, 10)


def test_a_fill_overtaken_by_its_cancel_never_opens_a_second_trade():
    rb = RiskBook()
    rb.on_mid("X", 0, 100.0)
    rb.on_order("a", "paper", "new", qty=2.0, entry=True)
    rb.on_fill("X", "a", FillRecord(10, "buy", 100.0, 1.0, 0.0, "paper", 0.6, "m"), entry=True)
    rb.on_order("a", "paper", "cancelled", entry=True)
    rb.on_mid("X", 2000 * MS, 100.0)
    assert rb.totals["paper"].trades == 1
    rb.on_fill("X", "a", FillRecord(20, "buy", 100.0, 1.0, 0.0, "paper", 0.6, "m"), entry=True)   # late
    rb.on_mid("X", 5000 * MS, 100.0)
    assert rb.totals["paper"].trades == 1 and rb.late_fills == 1


def test_trades_per_hour_counts_the_last_market_hour_and_the_baseline_brier_only_the_active_model():
    """Two market hours, one trade a minute: ``trades_per_hour`` is the last hour's 60; every paper
    trade wins and every canary trade loses, so ``brier_baseline_active`` (active model only) is
    (0.6 - 1)^2 while ``brier_online`` (all routes) mixes in the canary's (0.6 - 0)^2."""
    rb = RiskBook(window_trades=10_000)
    rb.on_mid("X", 0, 100.0)
    for i in range(120):
        t = (i + 1) * 60 * S_NS
        canary = i % 4 == 0
        _trade(rb, f"o{i}", "canary" if canary else "paper", "cand" if canary else "act", t, [(100.0, 1.0)])
        moved = 100.0 - 0.01 if canary else 100.0 + 0.01
        rb.on_mid("X", t + 500 * MS, moved)         # the mid the 1 s markout reads
        rb.on_mid("X", t + 1500 * MS, moved)        # past the longest horizon: the trade closes
        rb.on_mid("X", t + 2000 * MS, 100.0)
    sup = rb.supervision()
    assert sup["trades_per_hour"] == 60
    assert sup["brier_baseline_active"] == pytest.approx(0.16)
    assert sup["brier_online"] == pytest.approx((90 * 0.16 + 30 * 0.36) / 120)
