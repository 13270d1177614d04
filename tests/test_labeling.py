"""Labelling: the three fill rules, markout net of fee, horizons, and the vectorised window search."""

from __future__ import annotations

import numpy as np
import pytest

from tidegate.pipeline.labeling import LabelParams, first_leq, label_session

MS = 1_000_000
P = LabelParams(fill_horizon_ms=1_000, markout_ms=500, latency_ms=0, maker_fee_bps=0.2, sample_ms=10_000,
                warmup_ms=0)


def _session(events: list[tuple]) -> dict[str, np.ndarray]:
    """events: (t_ms, kind, bid, bid_qty, ask, ask_qty, trade_px, trade_qty, aggressor); book state carried."""
    cols: dict[str, list] = {k: [] for k in ("local_ns", "kind", "book_update", "bid_px", "bid_qty", "ask_px",
                                             "ask_qty", "trade_px", "trade_qty", "trade_aggressor")}
    for t, kind, bid, bq, ask, aq, tp, tq, ag in events:
        cols["local_ns"].append(t * MS)
        cols["kind"].append(1 if kind == "trade" else 2)
        cols["book_update"].append(kind == "book")
        for k, v in (("bid_px", bid), ("bid_qty", bq), ("ask_px", ask), ("ask_qty", aq), ("trade_px", tp),
                     ("trade_qty", tq), ("trade_aggressor", ag)):
            cols[k].append(v)
    return {k: np.asarray(v) for k, v in cols.items()}


def _buy(lab: dict[str, np.ndarray]) -> dict[str, float]:
    i = int(np.flatnonzero(lab["side"] == 1)[0])
    return {k: lab[k][i] for k in ("filled", "fill_ns", "markout_bps", "label")}


BOOK0 = (0, "book", 100.0, 2.0, 100.1, 5.0, 0.0, 0.0, 0)
END = (5_000, "book", 100.5, 1.0, 100.6, 1.0, 0.0, 0.0, 0)


def test_queue_ahead_must_be_consumed_before_a_fill_at_our_price() -> None:
    ev = [BOOK0,
          (100, "trade", 100.0, 2.0, 100.1, 5.0, 100.0, 1.5, -1),  # 1.5 of the 2.0 ahead of us
          (200, "trade", 100.0, 0.5, 100.1, 5.0, 100.0, 0.4, -1),  # 1.9 < 2.0: still not us
          (300, "trade", 100.0, 0.1, 100.1, 5.0, 100.0, 0.3, -1),  # 2.2 > 2.0: filled here
          (400, "book", 100.1, 1.0, 100.2, 1.0, 0.0, 0.0, 0),  # mid 100.15 afterwards
          END]
    b = _buy(label_session(_session(ev), P))
    assert b["filled"] and b["fill_ns"] == 300 * MS
    # markout at 300+500 ms: mid 100.15 vs price 100.0 -> 15 bps, minus 0.2 fee
    assert b["markout_bps"] == pytest.approx((100.15 - 100.0) / 100.0 * 1e4 - 0.2)
    assert b["label"] == 1


def test_a_post_only_entry_crossed_before_it_arrives_is_rejected_not_filled() -> None:
    slow = LabelParams(**{**P.as_dict(), "latency_ms": 50})
    # the ask falls to our bid 20 ms after the candidate: at arrival (50 ms) the buy would take liquidity
    crossed = [BOOK0, (20, "book", 99.9, 1.0, 100.0, 1.0, 0.0, 0.0, 0),
               (60, "book", 99.9, 1.0, 100.0, 2.0, 0.0, 0.0, 0),   # still through our price after arrival
               END]
    assert not _buy(label_session(_session(crossed), slow))["filled"]
    # the same cross 30 ms after arrival fills the resting order
    later = [BOOK0, (80, "book", 99.9, 1.0, 100.0, 1.0, 0.0, 0.0, 0), END]
    b = _buy(label_session(_session(later), slow))
    assert b["filled"] and b["fill_ns"] == 80 * MS


def test_buyer_aggressor_volume_at_our_bid_never_fills_a_buy() -> None:
    ev = [BOOK0, (100, "trade", 100.0, 2.0, 100.1, 5.0, 100.0, 9.0, +1), END]
    assert not _buy(label_session(_session(ev), P))["filled"]


def test_trade_through_and_touch_cross_fill_at_once() -> None:
    through = [BOOK0, (150, "trade", 100.0, 2.0, 100.1, 5.0, 99.9, 0.001, -1), END]
    b = _buy(label_session(_session(through), P))
    assert b["filled"] and b["fill_ns"] == 150 * MS
    cross = [BOOK0, (250, "book", 99.9, 1.0, 100.0, 1.0, 0.0, 0.0, 0), END]
    b = _buy(label_session(_session(cross), P))
    assert b["filled"] and b["fill_ns"] == 250 * MS
    # adverse: after the cross the mid is 99.95 -> negative markout -> label 0
    assert b["markout_bps"] < 0 and b["label"] == 0


def test_fill_after_the_horizon_does_not_count_and_fee_can_flip_the_label() -> None:
    late = [BOOK0, (1_500, "trade", 100.0, 2.0, 100.1, 5.0, 99.9, 1.0, -1), END]
    assert not _buy(label_session(_session(late), P))["filled"]
    small_move = [BOOK0, (100, "trade", 100.0, 2.0, 100.1, 5.0, 99.9, 1.0, -1),
                  (200, "book", 100.0, 1.0, 100.1, 1.0, 0.0, 0.0, 0), END]
    # mid 100.05 -> +5 bps: positive with a 0.2 bps fee, negative with a 6 bps fee
    assert _buy(label_session(_session(small_move), P))["label"] == 1
    expensive = LabelParams(**{**P.as_dict(), "maker_fee_bps": 6.0})
    assert _buy(label_session(_session(small_move), expensive))["label"] == 0


def test_candidates_whose_horizon_runs_past_the_session_are_dropped() -> None:
    ev = [BOOK0, (800, "book", 100.0, 2.0, 100.1, 5.0, 0.0, 0.0, 0)]
    lab = label_session(_session(ev), LabelParams(**{**P.as_dict(), "sample_ms": 1}))
    assert len(lab["row"]) == 0


def test_first_leq_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    values = rng.integers(0, 100, 500)
    lo = rng.integers(0, 500, 300)
    hi = np.minimum(lo + rng.integers(0, 80, 300), 500)
    thresh = rng.integers(0, 100, 300)
    got = first_leq(values, lo, hi, thresh)
    for q in range(300):
        hits = [i for i in range(lo[q], hi[q]) if values[i] <= thresh[q]]
        assert got[q] == (hits[0] if hits else -1)
