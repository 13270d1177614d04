"""Maker-only ladders: where the executor's passive orders go, and how aggressive each rung is.

An entry ladder joins the touch (rung 0) and steps ``step_ticks`` away per rung;
the quantity is split evenly and floored to the lot step, and rungs that would
fall below the exchange minimum are merged away (never inflated). A reduce-only
exit sits ``exit_ticks`` beyond the entry price, or at the touch if the market
has already moved past it, so that it can only ever provide liquidity.

The aggressiveness bucket (``exec_ladder_aggressiveness_total{bucket}``) is the
rung's distance from the touch: ``high`` at the touch, ``mid`` within two
ticks, ``low`` further out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tidegate.execution.sizing import floor_to_step

Side = Literal["buy", "sell"]


@dataclass(frozen=True)
class Rung:
    index: int
    side: Side
    price: float
    qty: float
    bucket: str
    reduce_only: bool = False
    post_only: bool = True


def bucket_for(ticks_from_touch: int) -> str:
    if ticks_from_touch <= 0:
        return "high"
    if ticks_from_touch <= 2:
        return "mid"
    return "low"


def _round_px(price: float, tick: float) -> float:
    return round(round(price / tick) * tick, 10)


def entry_ladder(side: Side, qty: float, best_bid: float, best_ask: float, *, tick: float, lot_step: float,
                 min_qty: float, rungs: int = 1, step_ticks: int = 1) -> list[Rung]:
    """Split ``qty`` over up to ``rungs`` passive prices from the touch outwards."""
    if not 0 < best_bid < best_ask:
        return []
    n = max(1, rungs)
    while n > 1 and floor_to_step(qty / n, lot_step) < min_qty:
        n -= 1
    each = floor_to_step(qty / n, lot_step)
    if each < min_qty or each <= 0:
        return []
    out = []
    for i in range(n):
        ticks = i * step_ticks
        price = best_bid - ticks * tick if side == "buy" else best_ask + ticks * tick
        rung_qty = each if i < n - 1 else floor_to_step(qty - each * (n - 1), lot_step)
        out.append(Rung(i, side, _round_px(price, tick), rung_qty, bucket_for(ticks)))
    return out


def exit_rung(entry_side: Side, entry_price: float, qty: float, best_bid: float, best_ask: float, *,
              tick: float, exit_ticks: int) -> Rung:
    """The reduce-only, post-only exit for a filled entry."""
    if entry_side == "buy":
        target = entry_price + exit_ticks * tick
        price = max(target, best_ask) if best_ask > 0 else target
        ticks = round((price - best_ask) / tick) if best_ask > 0 else exit_ticks
        return Rung(0, "sell", _round_px(price, tick), qty, bucket_for(ticks), reduce_only=True)
    target = entry_price - exit_ticks * tick
    price = min(target, best_bid) if best_bid > 0 else target
    ticks = round((best_bid - price) / tick) if best_bid > 0 else exit_ticks
    return Rung(0, "buy", _round_px(price, tick), qty, bucket_for(ticks), reduce_only=True)
