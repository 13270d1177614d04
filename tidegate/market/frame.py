"""Columnar market data: the fast path shared by the capture reader, the synthetic generator and the dump.

Python objects per event are too slow for hundreds of thousands of events per
second, so a ``MarketFrame`` keeps each stream as numpy columns. ``seq`` is the
event's position in arrival order (the capture's line number), so merging the
three streams back into one timeline (``timeline_order``) is a stable lexsort on
(local_ns, seq) and reproduces the recorded interleaving exactly. ``iter_events``
turns the columns back into typed events for replay and the online feature state.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from tidegate.market.events import BookTicker, DepthUpdate, MarketEvent, Trade

KIND_DEPTH, KIND_TRADE, KIND_TICKER = 0, 1, 2
KIND_NAMES = {KIND_DEPTH: "depth", KIND_TRADE: "trade", KIND_TICKER: "ticker"}


def _i64(a: object) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int64)


def _f64(a: object) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64)


@dataclass(frozen=True)
class DepthColumns:
    """One row per diff message; its levels are ``level_*[offsets[i]:offsets[i+1]]``."""

    seq: np.ndarray
    local_ns: np.ndarray
    exch_ns: np.ndarray
    first_id: np.ndarray
    last_id: np.ndarray
    prev_id: np.ndarray
    offsets: np.ndarray  # len n+1
    level_side: np.ndarray  # int8: +1 bid, -1 ask
    level_px: np.ndarray
    level_qty: np.ndarray

    def __len__(self) -> int:
        return len(self.local_ns)

    @staticmethod
    def empty() -> DepthColumns:
        z = np.zeros(0, np.int64)
        return DepthColumns(z, z, z, z, z, z, np.zeros(1, np.int64), np.zeros(0, np.int8), _f64([]), _f64([]))


@dataclass(frozen=True)
class TradeColumns:
    seq: np.ndarray
    local_ns: np.ndarray
    exch_ns: np.ndarray
    trade_id: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    aggressor: np.ndarray  # int8: +1 buyer crossed, -1 seller crossed

    def __len__(self) -> int:
        return len(self.local_ns)

    @staticmethod
    def empty() -> TradeColumns:
        z = np.zeros(0, np.int64)
        return TradeColumns(z, z, z, z, _f64([]), _f64([]), np.zeros(0, np.int8))


@dataclass(frozen=True)
class TickerColumns:
    seq: np.ndarray
    local_ns: np.ndarray
    exch_ns: np.ndarray
    update_id: np.ndarray
    bid_px: np.ndarray
    bid_qty: np.ndarray
    ask_px: np.ndarray
    ask_qty: np.ndarray

    def __len__(self) -> int:
        return len(self.local_ns)

    @staticmethod
    def empty() -> TickerColumns:
        z = np.zeros(0, np.int64)
        return TickerColumns(z, z, z, z, _f64([]), _f64([]), _f64([]), _f64([]))


@dataclass(frozen=True)
class MarketFrame:
    """All events of one symbol from one source (a capture file or a synthetic run)."""

    symbol: str
    source: str
    depth: DepthColumns
    trades: TradeColumns
    tickers: TickerColumns
    regime: str = "capture"
    info: dict[str, object] = field(default_factory=dict)

    @property
    def n_events(self) -> int:
        return len(self.depth) + len(self.trades) + len(self.tickers)

    def time_range_ns(self) -> tuple[int, int]:
        stamps = [a for a in (self.depth.local_ns, self.trades.local_ns, self.tickers.local_ns) if len(a)]
        if not stamps:
            return (0, 0)
        return (int(min(a.min() for a in stamps)), int(max(a.max() for a in stamps)))

    def timeline_order(self) -> tuple[np.ndarray, np.ndarray]:
        """(kind, index-within-its-stream) of every event, in arrival order."""
        kinds = np.concatenate([np.full(len(self.depth), KIND_DEPTH, np.int8),
                                np.full(len(self.trades), KIND_TRADE, np.int8),
                                np.full(len(self.tickers), KIND_TICKER, np.int8)])
        index = np.concatenate([np.arange(len(self.depth)), np.arange(len(self.trades)),
                                np.arange(len(self.tickers))]).astype(np.int64)
        local = np.concatenate([self.depth.local_ns, self.trades.local_ns, self.tickers.local_ns])
        seq = np.concatenate([self.depth.seq, self.trades.seq, self.tickers.seq])
        order = np.lexsort((seq, local))
        return kinds[order], index[order]


def depth_event(d: DepthColumns, i: int, symbol: str) -> DepthUpdate:
    lo, hi = int(d.offsets[i]), int(d.offsets[i + 1])
    side = d.level_side[lo:hi]
    px = d.level_px[lo:hi].tolist()
    qty = d.level_qty[lo:hi].tolist()
    bids = tuple((p, q) for p, q, s in zip(px, qty, side.tolist(), strict=True) if s > 0)
    asks = tuple((p, q) for p, q, s in zip(px, qty, side.tolist(), strict=True) if s < 0)
    return DepthUpdate(int(d.local_ns[i]), int(d.exch_ns[i]), symbol, int(d.first_id[i]), int(d.last_id[i]),
                       int(d.prev_id[i]), bids, asks)


def iter_events(frame: MarketFrame) -> Iterator[MarketEvent]:
    """Typed events in arrival order (for replay and the online feature state)."""
    kinds, index = frame.timeline_order()
    t, k, s = frame.trades, frame.tickers, frame.symbol
    for kind, i in zip(kinds.tolist(), index.tolist(), strict=True):
        if kind == KIND_TICKER:
            yield BookTicker(int(k.local_ns[i]), int(k.exch_ns[i]), s, int(k.update_id[i]), float(k.bid_px[i]),
                             float(k.bid_qty[i]), float(k.ask_px[i]), float(k.ask_qty[i]))
        elif kind == KIND_TRADE:
            yield Trade(int(t.local_ns[i]), int(t.exch_ns[i]), s, int(t.trade_id[i]), float(t.price[i]),
                        float(t.qty[i]), int(t.aggressor[i]))
        else:
            yield depth_event(frame.depth, i, s)


def frame_from_events(events: list[MarketEvent], *, symbol: str, source: str = "events",
                      regime: str = "capture") -> MarketFrame:
    """The inverse of iter_events (tests, small hand-built books)."""
    dep = [(n, e) for n, e in enumerate(events) if isinstance(e, DepthUpdate)]
    trd = [(n, e) for n, e in enumerate(events) if isinstance(e, Trade)]
    tck = [(n, e) for n, e in enumerate(events) if isinstance(e, BookTicker)]
    side: list[int] = []
    px: list[float] = []
    qty: list[float] = []
    offsets = [0]
    for _, e in dep:
        for p, q in e.bids:
            side.append(1)
            px.append(p)
            qty.append(q)
        for p, q in e.asks:
            side.append(-1)
            px.append(p)
            qty.append(q)
        offsets.append(len(px))
    depth = DepthColumns(_i64([n for n, _ in dep]), _i64([e.local_ns for _, e in dep]),
                         _i64([e.exch_ns for _, e in dep]), _i64([e.first_id for _, e in dep]),
                         _i64([e.last_id for _, e in dep]), _i64([e.prev_id for _, e in dep]), _i64(offsets),
                         np.asarray(side, np.int8), _f64(px), _f64(qty))
    trades = TradeColumns(_i64([n for n, _ in trd]), _i64([e.local_ns for _, e in trd]),
                          _i64([e.exch_ns for _, e in trd]), _i64([e.trade_id for _, e in trd]),
                          _f64([e.price for _, e in trd]), _f64([e.qty for _, e in trd]),
                          np.asarray([e.aggressor for _, e in trd], np.int8))
    tickers = TickerColumns(_i64([n for n, _ in tck]), _i64([e.local_ns for _, e in tck]),
                            _i64([e.exch_ns for _, e in tck]), _i64([e.update_id for _, e in tck]),
                            _f64([e.bid_px for _, e in tck]), _f64([e.bid_qty for _, e in tck]),
                            _f64([e.ask_px for _, e in tck]), _f64([e.ask_qty for _, e in tck]))
    return MarketFrame(symbol, source, depth, trades, tickers, regime=regime)
