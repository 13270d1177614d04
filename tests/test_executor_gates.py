"""Near-liquidation guard, liquidity by side, ladders, and the seed's sizing example through the gates."""

from __future__ import annotations

from tidegate.execution import gates, ladder
from tidegate.execution.sizing import compute_order_qty


def test_near_liq_guard_blocks_a_long_whose_liquidation_is_inside_the_stop_buffer():
    # SL 0.3%, buffer 1.5x -> liquidation must be >= 0.45% away
    blocked = gates.near_liq_guard(60_000, 59_760, "buy", assumed_sl_pct=0.003, sl_buffer_multiplier=1.5)
    assert not blocked.passed and blocked.reason == "near_liq"
    assert abs(blocked.value - 0.004) < 1e-12 and abs(blocked.threshold - 0.0045) < 1e-12
    ok = gates.near_liq_guard(60_000, 59_700, "buy", assumed_sl_pct=0.003, sl_buffer_multiplier=1.5)
    assert ok.passed


def test_near_liq_guard_mirrors_for_shorts():
    assert not gates.near_liq_guard(60_000, 60_240, "sell", assumed_sl_pct=0.003, sl_buffer_multiplier=1.5).passed
    assert gates.near_liq_guard(60_000, 60_300, "sell", assumed_sl_pct=0.003, sl_buffer_multiplier=1.5).passed


def test_seed_example_at_10x_is_far_from_liquidation():
    qty = compute_order_qty(60_000, 10_000, 0.001)
    assert qty == 0.333
    liq = gates.estimate_liq_price(60_000, "buy", 10, 0.005)
    assert liq == 60_000 * (1 - 0.1 + 0.005)
    assert gates.near_liq_guard(60_000, liq, "buy", assumed_sl_pct=0.003, sl_buffer_multiplier=1.5).passed
    # at 250x without maintenance margin liquidation is 0.4% away: inside the 0.45% buffer
    assert not gates.near_liq_guard(60_000, gates.estimate_liq_price(60_000, "buy", 250, 0.0), "buy",
                                    assumed_sl_pct=0.003, sl_buffer_multiplier=1.5).passed


def test_liquidity_by_side_sums_the_joined_side_top_levels():
    bids = [(100.0, 0.2), (99.9, 0.2), (99.8, 0.1), (99.7, 5.0)]
    asks = [(100.1, 9.0)]
    # buy 0.333 needs 1.5 * 0.333 = 0.4995 on the bid side within 3 levels: 0.5 -> pass
    assert gates.liquidity_by_side("buy", 0.333, bids, asks, alpha=1.5, levels=3).passed
    # with 2 levels only 0.4: fail
    r = gates.liquidity_by_side("buy", 0.333, bids, asks, alpha=1.5, levels=2)
    assert not r.passed and r.value == 0.4
    # a sell joins the ask side
    assert gates.liquidity_by_side("sell", 0.333, bids, asks, alpha=1.5, levels=1).passed


def test_entry_ladder_splits_floors_and_merges_rungs_below_min_qty():
    rungs = ladder.entry_ladder("buy", 0.333, 100.0, 100.1, tick=0.1, lot_step=0.001, min_qty=0.001, rungs=3,
                                step_ticks=1)
    assert [r.price for r in rungs] == [100.0, 99.9, 99.8]
    assert [r.qty for r in rungs] == [0.111, 0.111, 0.111]
    assert [r.bucket for r in rungs] == ["high", "mid", "mid"]
    merged = ladder.entry_ladder("sell", 0.003, 100.0, 100.1, tick=0.1, lot_step=0.001, min_qty=0.002, rungs=3)
    assert len(merged) == 1 and merged[0].qty == 0.003 and merged[0].price == 100.1
    assert ladder.entry_ladder("buy", 0.001, 100.0, 100.1, tick=0.1, lot_step=0.001, min_qty=0.002) == []


def test_exit_rung_is_reduce_only_and_never_crosses():
    r = ladder.exit_rung("buy", 100.0, 0.1, 100.0, 100.1, tick=0.1, exit_ticks=2)
    assert r.side == "sell" and r.reduce_only and r.post_only and r.price == 100.2
    moved = ladder.exit_rung("buy", 100.0, 0.1, 100.4, 100.5, tick=0.1, exit_ticks=2)
    assert moved.price == 100.5  # the market moved past the target: join the touch, stay passive
