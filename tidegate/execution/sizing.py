"""Order sizing, exactly as the seed writes it.

    qty = floor((min(cap, free_balance * leverage) / price) / lot_step) * lot_step

Example from the seed: BTC at 60,000, cap 20,000 USD, 10x, lot 0.001 → 0.333.

Quantities are only ever rounded *down* to the lot step, and a signal whose
size falls below the exchange minimum (quantity or notional) is dropped, never
inflated to satisfy it: a bigger order than the risk budget allows is a worse
outcome than a missed trade. The floor carries a tiny tolerance so that binary
floating point (0.3 / 0.1 = 2.9999999999999996) does not lose a whole lot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

_EPS = 1e-9


@dataclass(frozen=True)
class SizingParams:
    leverage: float = 10.0
    notional_cap_usd: float = 20_000.0
    use_all_in: bool = True
    min_free_balance_usd: float = 200.0
    lot_size_rounding: str = "floor"


@dataclass(frozen=True)
class SizeDecision:
    """The quantity to send (0.0 when dropped) and, when dropped, why."""

    qty: float
    notional: float
    reason: str = ""

    @property
    def dropped(self) -> bool:
        return self.qty <= 0.0


def _decimals(step: float) -> int:
    exp = Decimal(repr(step)).normalize().as_tuple().exponent
    return max(0, -int(exp))


def floor_to_step(value: float, step: float) -> float:
    """Largest multiple of ``step`` not above ``value`` (float noise tolerated)."""
    if step <= 0:
        raise ValueError(f"lot_step must be > 0, got {step}")
    n = math.floor(value / step + _EPS)
    return round(n * step, _decimals(step))


def size_order(price: float, free_balance: float, lot_step: float, params: SizingParams = SizingParams(), *,
               min_qty: float = 0.0, min_notional: float = 0.0) -> SizeDecision:
    """Size one order; drop it (qty 0 with a reason) rather than inflate it."""
    if price <= 0:
        raise ValueError(f"price must be > 0, got {price}")
    if params.lot_size_rounding != "floor":
        raise ValueError(f"lot_size_rounding must be 'floor', got {params.lot_size_rounding!r}")
    if free_balance < params.min_free_balance_usd:
        return SizeDecision(0.0, 0.0, "free_balance_below_min")
    buying_power = free_balance * params.leverage
    if params.use_all_in:
        notional = min(params.notional_cap_usd, buying_power)
    else:
        notional = params.notional_cap_usd
        if notional > buying_power:
            return SizeDecision(0.0, 0.0, "insufficient_margin")
    qty = floor_to_step((notional / price), lot_step)
    if qty <= 0:
        return SizeDecision(0.0, 0.0, "below_lot_step")
    if qty < min_qty - _EPS:
        return SizeDecision(0.0, 0.0, "below_min_qty")
    if qty * price < min_notional - _EPS:
        return SizeDecision(0.0, 0.0, "below_min_notional")
    return SizeDecision(qty, qty * price)


def compute_order_qty(price: float, free_balance: float, lot_step: float, *, leverage: float = 10.0,
                      notional_cap_usd: float = 20_000.0, use_all_in: bool = True,
                      min_free_balance_usd: float = 200.0, lot_size_rounding: str = "floor",
                      min_qty: float = 0.0, min_notional: float = 0.0) -> float:
    """The seed's formula; 0.0 means "drop the signal" (see ``size_order`` for the reason)."""
    params = SizingParams(leverage, notional_cap_usd, use_all_in, min_free_balance_usd, lot_size_rounding)
    return size_order(price, free_balance, lot_step, params, min_qty=min_qty, min_notional=min_notional).qty
