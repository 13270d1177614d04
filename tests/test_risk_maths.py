"""Markouts, fill rate, win rate, calibration and drift on hand-computed numbers."""

from __future__ import annotations

import math

import pytest

from tidegate.risk import drift
from tidegate.risk.book import RiskBook
from tidegate.risk.trading import MS, FillRecord, markout_bps, mid_at


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
