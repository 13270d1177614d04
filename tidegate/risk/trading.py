"""Trading-quality numbers: markouts, fill rate, win rate, cancel-to-fill. Pure functions.

Definitions (docs/trading-metrics.md explains them at length):

- Markout at horizon h, in bps, of a fill at price p on side s (+1 buy, -1 sell):
  ``m_h = s · (mid(t + h) − p) / p · 1e4``, where ``mid(t + h)`` is the last mid
  at or before ``t + h`` (Databento's definition). Positive = the price moved our
  way. The *fee-adjusted* markout subtracts the fee rate in bps
  (``fee_rate · 1e4``; a rebate is a negative rate and adds).
- Fill rate (by count): accepted orders with any fill ÷ accepted orders.
  Post-only rejections are not accepted orders and are reported apart.
- Win rate: the share of closed trades that won. A trade is one filled entry
  order, closed at its longest markout horizon (1000 ms: marked to the mid),
  and it wins when its fee-adjusted markout at that horizon is > 0 (breakeven
  counts as a loss, as in nautilus_trader).
- Cancel-to-fill: cancelled orders ÷ filled orders.

Times are integer nanoseconds on the replay's timeline (the local receive clock
of the market data, the same clock the features and labels use).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

HORIZONS_MS: tuple[int, ...] = (100, 500, 1000)
MS = 1_000_000


def side_sign(side: str) -> int:
    if side == "buy":
        return 1
    if side == "sell":
        return -1
    raise ValueError(f"side must be buy or sell, got {side!r}")


def markout_bps(side: str, fill_price: float, mid_after: float, fee_rate: float = 0.0) -> float:
    """Fee-adjusted markout of one fill in basis points (fee_rate 0 gives the raw markout)."""
    if fill_price <= 0:
        raise ValueError(f"fill price must be > 0, got {fill_price}")
    return side_sign(side) * (mid_after - fill_price) / fill_price * 1e4 - fee_rate * 1e4


def mid_at(times_ns: Sequence[int], mids: Sequence[float], t_ns: int) -> float | None:
    """The last mid at or before ``t_ns`` (None when there is none)."""
    i = bisect.bisect_right(times_ns, t_ns)
    return mids[i - 1] if i > 0 else None


@dataclass(frozen=True)
class FillRecord:
    """What markouts need from a fill (a trade, when it is an entry)."""

    ts_ns: int
    side: str
    price: float
    qty: float
    fee_rate: float
    route: str = "paper"
    score: float = 0.0
    model: str = ""


def fill_markouts(fill: FillRecord, times_ns: Sequence[int], mids: Sequence[float],
                  horizons_ms: Sequence[int] = HORIZONS_MS) -> dict[int, float] | None:
    """Fee-adjusted markouts of one fill at every horizon; None if no mid is known after the fill."""
    out: dict[int, float] = {}
    for h in horizons_ms:
        m = mid_at(times_ns, mids, fill.ts_ns + h * MS)
        if m is None:
            return None
        out[h] = markout_bps(fill.side, fill.price, m, fill.fee_rate)
    return out


def trade_markouts(fills: Sequence[FillRecord], times_ns: Sequence[int], mids: Sequence[float],
                   horizons_ms: Sequence[int] = HORIZONS_MS) -> dict[int, float] | None:
    """Markouts of one *trade* (an entry order with one or more fills): the quantity-weighted mean
    of its fills' markouts, each fill marked from its own time. One order filled in 15 pieces by 15
    small public trades is one decision with one outcome, not 15 (counting pieces inflates the
    sample and makes its outcomes perfectly correlated). None if any fill cannot be marked."""
    total = sum(f.qty for f in fills)
    if not fills or total <= 0:
        return None
    out = dict.fromkeys(horizons_ms, 0.0)
    for f in fills:
        marks = fill_markouts(f, times_ns, mids, horizons_ms)
        if marks is None:
            return None
        for h in horizons_ms:
            out[h] += marks[h] * f.qty / total
    return out


def is_win(markout_at_close_bps: float) -> bool:
    return markout_at_close_bps > 0.0


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is 0 (no sample is not a zero rate)."""
    return numerator / denominator if denominator else math.nan


def fill_rate(accepted: int, filled: int) -> float:
    return ratio(filled, accepted)


def win_rate(wins: int, trades: int) -> float:
    return ratio(wins, trades)


def cancel_to_fill(cancelled: int, filled: int) -> float:
    return ratio(cancelled, filled)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan
