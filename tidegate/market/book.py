"""Order book rebuilt from L2 diffs, plus the freshest top of book from ``bookTicker``.

Why two sources: diff streams (``depth@0ms``/``@100ms``) carry the whole ladder but
start without a snapshot, so the rebuilt book is partial until a level has been
touched, and on spot it lags by up to 100 ms. ``bookTicker`` is real-time but only
the touch. ``BookState`` therefore takes the touch (best prices and queue sizes)
from the ticker and everything behind it from the diff-rebuilt ladder, hiding
ladder levels the ticker proves stale (bids above the best bid, asks below the
best ask). Until the first ticker it falls back to the ladder's own best levels.

Sequence checks: a ticker whose update id is not newer than the last accepted one
is stale and ignored; a diff whose ``pu`` (futures) or ``U`` (spot) does not chain
to the previous ``u`` counts as a gap (``BookState.gaps``) and is still applied,
since the recording has no snapshot to resync from.

The same object is used by the batch feature path (driven from columns) and by
the online path (driven from typed events), so both see identical book values.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Sequence

from tidegate.market.events import BookTicker, DepthUpdate

DEPTH_LEVELS = 10  # depth features sum this many ladder levels from the touch outwards


class OrderBook:
    """An L2 ladder: price -> qty per side, with sorted price lists for range queries."""

    __slots__ = ("ask_px", "asks", "bid_px", "bids")

    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.bid_px: list[float] = []  # ascending
        self.ask_px: list[float] = []  # ascending

    def set_level(self, side: int, price: float, qty: float) -> None:
        levels, prices = (self.bids, self.bid_px) if side > 0 else (self.asks, self.ask_px)
        if qty <= 0.0:
            if levels.pop(price, None) is not None:
                del prices[bisect_left(prices, price)]
        else:
            if price not in levels:
                insort(prices, price)
            levels[price] = qty

    def apply(self, sides: Sequence[int], prices: Sequence[float], qtys: Sequence[float]) -> None:
        for s, p, q in zip(sides, prices, qtys, strict=True):
            self.set_level(s, p, q)

    def best_bid(self) -> tuple[float, float] | None:
        return (self.bid_px[-1], self.bids[self.bid_px[-1]]) if self.bid_px else None

    def best_ask(self) -> tuple[float, float] | None:
        return (self.ask_px[0], self.asks[self.ask_px[0]]) if self.ask_px else None

    def qty_between(self, side: int, lo: float, hi: float) -> float:
        """Total qty of one side's levels with lo <= price <= hi (summed in ascending price order)."""
        levels, prices = (self.bids, self.bid_px) if side > 0 else (self.asks, self.ask_px)
        i, j = bisect_left(prices, lo), bisect_right(prices, hi)
        return float(sum(map(levels.__getitem__, prices[i:j])))

    def qty_top(self, side: int, n: int, touch: float) -> float:
        """Total qty of the n best levels at or behind ``touch`` (levels better than it are stale)."""
        if side > 0:
            j = bisect_right(self.bid_px, touch)
            return float(sum(map(self.bids.__getitem__, self.bid_px[max(j - n, 0):j])))
        i = bisect_left(self.ask_px, touch)
        return float(sum(map(self.asks.__getitem__, self.ask_px[i:i + n])))

    def levels(self, side: int, n: int, *, inside_of: float | None = None) -> list[tuple[float, float]]:
        """Up to n levels best-first, skipping levels better than ``inside_of`` (stale vs the ticker)."""
        if side > 0:
            prices, levels = self.bid_px, self.bids
            j = len(prices) if inside_of is None else bisect_right(prices, inside_of)
            return [(prices[k], levels[prices[k]]) for k in range(j - 1, max(j - 1 - n, -1), -1)]
        prices, levels = self.ask_px, self.asks
        i = 0 if inside_of is None else bisect_left(prices, inside_of)
        return [(prices[k], levels[prices[k]]) for k in range(i, min(i + n, len(prices)))]

    def __len__(self) -> int:
        return len(self.bids) + len(self.asks)


class BookState:
    """Touch from the ticker, ladder from diffs, top-level depth recomputed on every diff."""

    __slots__ = ("ask_band_qty", "ask_px", "ask_qty", "bid_band_qty", "bid_px", "bid_qty", "book", "gaps",
                 "last_depth_id", "last_ticker_id", "local_ns", "n_depth", "n_tickers")

    def __init__(self) -> None:
        self.book = OrderBook()
        self.bid_px = self.ask_px = 0.0
        self.bid_qty = self.ask_qty = 0.0
        self.bid_band_qty = self.ask_band_qty = 0.0
        self.last_ticker_id = -1
        self.last_depth_id = -1
        self.gaps = 0
        self.n_depth = self.n_tickers = 0
        self.local_ns = 0

    # -- updates ---------------------------------------------------------------------------
    def set_top(self, bid_px: float, bid_qty: float, ask_px: float, ask_qty: float, update_id: int) -> None:
        self.bid_px, self.bid_qty, self.ask_px, self.ask_qty = bid_px, bid_qty, ask_px, ask_qty
        self.last_ticker_id = update_id
        self.n_tickers += 1

    def on_ticker(self, ev: BookTicker) -> bool:
        """Apply a ticker; False (and no change) when its update id is not newer than the last one."""
        if ev.update_id <= self.last_ticker_id:
            return False
        self.set_top(ev.bid_px, ev.bid_qty, ev.ask_px, ev.ask_qty, ev.update_id)
        self.local_ns = ev.local_ns
        return True

    def apply_depth(self, sides: Sequence[int], prices: Sequence[float], qtys: Sequence[float], first_id: int,
                    last_id: int, prev_id: int) -> None:
        if self.last_depth_id >= 0:
            chained = prev_id == self.last_depth_id if prev_id >= 0 else first_id == self.last_depth_id + 1
            if not chained:
                self.gaps += 1
        self.last_depth_id = last_id
        self.book.apply(sides, prices, qtys)
        self.n_depth += 1
        self.bid_band_qty, self.ask_band_qty = self.depth_qty()

    def on_depth(self, ev: DepthUpdate) -> None:
        sides = [1] * len(ev.bids) + [-1] * len(ev.asks)
        prices = [p for p, _ in ev.bids] + [p for p, _ in ev.asks]
        qtys = [q for _, q in ev.bids] + [q for _, q in ev.asks]
        self.apply_depth(sides, prices, qtys, ev.first_id, ev.last_id, ev.prev_id)
        self.local_ns = ev.local_ns

    # -- reading ---------------------------------------------------------------------------
    def touch(self) -> tuple[float, float, float, float]:
        """(bid_px, bid_qty, ask_px, ask_qty): the ticker's, else the ladder's best levels, else zeros."""
        if self.n_tickers:
            return self.bid_px, self.bid_qty, self.ask_px, self.ask_qty
        bb, ba = self.book.best_bid(), self.book.best_ask()
        if bb is None or ba is None:
            return 0.0, 0.0, 0.0, 0.0
        return bb[0], bb[1], ba[0], ba[1]

    @property
    def ready(self) -> bool:
        bid, _, ask, _ = self.touch()
        return 0.0 < bid < ask

    def mid(self) -> float:
        bid, _, ask, _ = self.touch()
        return (bid + ask) / 2.0

    def depth_qty(self, levels: int = DEPTH_LEVELS) -> tuple[float, float]:
        """Ladder qty of the ``levels`` best levels per side, from the touch outwards."""
        bid, _, ask, _ = self.touch()
        if not 0.0 < bid < ask:
            return 0.0, 0.0
        return self.book.qty_top(1, levels, bid), self.book.qty_top(-1, levels, ask)

    def depth(self, side: int, n: int) -> list[tuple[float, float]]:
        """Top n levels of a side best-first: the ticker's touch, then ladder levels behind it."""
        bid, bid_qty, ask, ask_qty = self.touch()
        if side > 0:
            if bid <= 0.0:
                return self.book.levels(1, n)
            rest = self.book.levels(1, n, inside_of=bid)
            return [(bid, bid_qty), *[lv for lv in rest if lv[0] < bid][:n - 1]]
        if ask <= 0.0:
            return self.book.levels(-1, n)
        rest = self.book.levels(-1, n, inside_of=ask)
        return [(ask, ask_qty), *[lv for lv in rest if lv[0] > ask][:n - 1]]

    def queue_at(self, side: int, price: float) -> float:
        """Resting qty at a price on a side (the ticker's size at the touch, else the ladder's)."""
        bid, bid_qty, ask, ask_qty = self.touch()
        if side > 0 and price == bid:
            return bid_qty
        if side < 0 and price == ask:
            return ask_qty
        return (self.book.bids if side > 0 else self.book.asks).get(price, 0.0)
