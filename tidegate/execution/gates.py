"""Pre-trade gates: near-liquidation guard and liquidity by side. Pure functions.

Near-liquidation guard (seed): block a long when the distance from entry to the
liquidation price, ``(entry - liq) / entry``, is below ``sl_buffer_multiplier ×
assumed_sl_pct``: the stop-loss must trigger well before liquidation would. A
short mirrors it with ``(liq - entry) / entry``.

Liquidity by side: only join a side whose top ``levels`` hold at least
``alpha ×`` our quantity, so a passive order is not the book's whole support.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Side = Literal["buy", "sell"]


@dataclass(frozen=True)
class GateResult:
    passed: bool
    gate: str
    value: float
    threshold: float

    @property
    def reason(self) -> str:
        return "" if self.passed else self.gate


def estimate_liq_price(entry: float, side: Side, leverage: float, maintenance_margin_rate: float = 0.005) -> float:
    """Isolated-margin liquidation price of a linear perpetual (no fees, no funding)."""
    if leverage <= 0:
        raise ValueError(f"leverage must be > 0, got {leverage}")
    if side == "buy":
        return entry * (1.0 - 1.0 / leverage + maintenance_margin_rate)
    return entry * (1.0 + 1.0 / leverage - maintenance_margin_rate)


def liq_distance(entry: float, liq: float, side: Side) -> float:
    """Fractional distance from entry to liquidation, positive when liquidation is on the losing side."""
    return (entry - liq) / entry if side == "buy" else (liq - entry) / entry


def near_liq_guard(entry: float, liq: float, side: Side, *, assumed_sl_pct: float,
                   sl_buffer_multiplier: float) -> GateResult:
    """Pass unless liquidation is nearer than ``sl_buffer_multiplier × assumed_sl_pct``."""
    distance = liq_distance(entry, liq, side)
    threshold = sl_buffer_multiplier * assumed_sl_pct
    return GateResult(distance >= threshold, "near_liq", distance, threshold)


def liquidity_by_side(side: Side, qty: float, bids: Sequence[tuple[float, float]],
                      asks: Sequence[tuple[float, float]], *, alpha: float, levels: int) -> GateResult:
    """Pass when the joined side's top ``levels`` hold at least ``alpha × qty``."""
    book = bids if side == "buy" else asks
    depth = sum(q for _, q in book[:levels])
    return GateResult(depth >= alpha * qty, "liquidity_by_side", depth, alpha * qty)
