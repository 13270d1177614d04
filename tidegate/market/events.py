"""Typed market events, the unit every consumer (replay, signal engine, feature state) sees.

Both clocks travel with every event: ``local_ns`` is when *we* received it (the
timeline everything is ordered and windowed on, since it is the only clock a live
service can act on) and ``exch_ns`` is the venue's event time (-1 when the venue
does not send one, e.g. Binance spot ``bookTicker``). Prices and quantities are
floats parsed from the venue's decimal strings; features convert them to exact
integer units (see ``tidegate.features.schema``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DepthUpdate:
    """An L2 diff: each (price, qty) replaces the level; qty 0 deletes it."""

    local_ns: int
    exch_ns: int
    symbol: str
    first_id: int
    last_id: int
    prev_id: int  # futures `pu`; -1 when the stream has none (spot)
    bids: tuple[tuple[float, float], ...]
    asks: tuple[tuple[float, float], ...]

    kind = "depth"


@dataclass(frozen=True, slots=True)
class Trade:
    local_ns: int
    exch_ns: int
    symbol: str
    trade_id: int
    price: float
    qty: float
    aggressor: int  # +1 the buyer crossed (lifted the ask), -1 the seller crossed (hit the bid)

    kind = "trade"


@dataclass(frozen=True, slots=True)
class BookTicker:
    """Best bid/ask with sizes: the freshest top of book (Binance ``bookTicker``)."""

    local_ns: int
    exch_ns: int
    symbol: str
    update_id: int
    bid_px: float
    bid_qty: float
    ask_px: float
    ask_qty: float

    kind = "ticker"


MarketEvent = DepthUpdate | Trade | BookTicker
