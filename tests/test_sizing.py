"""compute_order_qty, exactly as the seed writes it, and the "drop, never inflate" rule."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidegate.execution.sizing import SizingParams, compute_order_qty, floor_to_step, size_order


def test_seed_btc_example_price_60k_cap_20k_lot_0001_gives_0333():
    # qty = floor((min(20000, free*10) / 60000) / 0.001) * 0.001
    assert compute_order_qty(60_000, 10_000, 0.001, leverage=10, notional_cap_usd=20_000) == 0.333


def test_small_balance_is_the_binding_constraint():
    # free 1000 * 10 = 10000 < cap: 10000 / 60000 = 0.16666 -> 0.166
    assert compute_order_qty(60_000, 1_000, 0.001) == 0.166


def test_below_min_free_balance_is_dropped():
    d = size_order(60_000, 150, 0.001, SizingParams(min_free_balance_usd=200))
    assert d.dropped and d.reason == "free_balance_below_min"


def test_below_exchange_minimum_is_dropped_not_inflated():
    # 10 * 250 = 2500 / 60000 = 0.0416 -> 0.041 < min 0.05: dropped, never rounded up to 0.05
    d = size_order(60_000, 250, 0.001, SizingParams(), min_qty=0.05)
    assert d.qty == 0.0 and d.reason == "below_min_qty"
    d = size_order(60_000, 250, 0.001, SizingParams(), min_notional=5_000)
    assert d.qty == 0.0 and d.reason == "below_min_notional"


def test_not_all_in_sizes_the_cap_and_drops_without_margin():
    assert size_order(60_000, 10_000, 0.001, SizingParams(use_all_in=False)).qty == 0.333
    d = size_order(60_000, 1_000, 0.001, SizingParams(use_all_in=False))
    assert d.dropped and d.reason == "insufficient_margin"


def test_floor_tolerates_binary_noise():
    assert floor_to_step(0.3, 0.1) == 0.3          # 0.3 / 0.1 = 2.9999999999999996 in binary
    assert floor_to_step(0.2999, 0.1) == 0.2


@given(price=st.floats(100, 200_000), free=st.floats(200, 1e6), lot=st.sampled_from([0.001, 0.01, 0.1, 1.0]))
def test_qty_is_a_lot_multiple_and_never_exceeds_the_budget(price: float, free: float, lot: float):
    qty = compute_order_qty(price, free, lot)
    budget = min(20_000, free * 10)
    assert qty * price <= budget * (1 + 1e-9)
    assert math.isclose(round(qty / lot) * lot, qty, abs_tol=1e-9)
    assert (qty + lot) * price > budget * (1 - 1e-9)  # the floor does not lose a whole lot


def test_rejects_nonsense():
    with pytest.raises(ValueError, match="price"):
        compute_order_qty(0, 1000, 0.001)
    with pytest.raises(ValueError, match="lot_step"):
        compute_order_qty(100, 1000, 0)
