"""Incremental feature state for the online scorer: feed events, ask for the vector.

Every update is O(1) amortised: windowed sums are running integer totals with a
deque of contributions, evicted lazily when the vector is read; the ladder is the
same ``BookState`` the batch path drives. The vector is "as of the last event
fed" (its receive time is the clock), exactly like a row of the batch path, which
is what makes training and serving agree bit for bit.

    state = OnlineFeatures()
    for ev in events:            # DepthUpdate | Trade | BookTicker, in arrival order
        state.on_event(ev)
    x = state.vector(side=+1)    # np.float32[len(FEATURE_NAMES)]
"""

from __future__ import annotations

from collections import deque

import numpy as np

from tidegate.features.formulas import flush_tiny, market_features_row, model_matrix
from tidegate.features.schema import PARAMS, FeatureParams
from tidegate.market.book import BookState
from tidegate.market.events import BookTicker, DepthUpdate, MarketEvent, Trade


class _WindowSum:
    """Sum of integer contributions with time in (now - window, now]."""

    __slots__ = ("items", "total", "window_ns")

    def __init__(self, window_ms: int) -> None:
        self.window_ns = window_ms * 1_000_000
        self.items: deque[tuple[int, int]] = deque()
        self.total = 0

    def add(self, t: int, v: int) -> None:
        self.items.append((t, v))
        self.total += v

    def value(self, now: int) -> int:
        cut = now - self.window_ns
        items = self.items
        while items and items[0][0] <= cut:
            self.total -= items.popleft()[1]
        return self.total


class _MidAt:
    """2*mid at or before now - window (0 when the history does not reach back that far)."""

    __slots__ = ("items", "window_ns")

    def __init__(self, window_ms: int) -> None:
        self.window_ns = window_ms * 1_000_000
        self.items: deque[tuple[int, int]] = deque()

    def add(self, t: int, m2: int) -> None:
        self.items.append((t, m2))

    def value(self, now: int) -> int:
        cut = now - self.window_ns
        items = self.items
        while len(items) >= 2 and items[1][0] <= cut:
            items.popleft()
        return items[0][1] if items and items[0][0] <= cut else 0


class OnlineFeatures:
    """Feature state of one symbol. Feed events in arrival order; read ``vector(side)``."""

    def __init__(self, params: FeatureParams = PARAMS) -> None:
        self.params = params
        self.book = BookState()
        self.now_ns = 0
        p = params
        self._buy_1s, self._sell_1s = _WindowSum(p.mid_ms), _WindowSum(p.mid_ms)
        self._buy_5s, self._sell_5s = _WindowSum(p.long_ms), _WindowSum(p.long_ms)
        self._n_1s = _WindowSum(p.mid_ms)
        self._sq_mid, self._sq_long = _WindowSum(p.mid_ms), _WindowSum(p.long_ms)
        self._m_short, self._m_mid, self._m_long = _MidAt(p.short_ms), _MidAt(p.mid_ms), _MidAt(p.long_ms)
        self._last_m2 = -1
        self._last_trade_ns = -1
        self.n_events = 0

    # -- feeding -------------------------------------------------------------------------
    def on_ticker(self, ev: BookTicker) -> None:
        self.now_ns = ev.local_ns
        self.n_events += 1
        if not self.book.on_ticker(ev):
            return
        scale = self.params.price_scale
        m2 = round(ev.bid_px * scale) + round(ev.ask_px * scale)
        d = m2 - self._last_m2 if self._last_m2 >= 0 else 0
        self._last_m2 = m2
        t = ev.local_ns
        self._sq_mid.add(t, d * d)
        self._sq_long.add(t, d * d)
        self._m_short.add(t, m2)
        self._m_mid.add(t, m2)
        self._m_long.add(t, m2)

    def on_depth(self, ev: DepthUpdate) -> None:
        self.now_ns = ev.local_ns
        self.n_events += 1
        self.book.on_depth(ev)

    def on_trade(self, ev: Trade) -> None:
        self.now_ns = ev.local_ns
        self.n_events += 1
        q = round(ev.qty * self.params.qty_scale)
        t = ev.local_ns
        if ev.aggressor > 0:
            self._buy_1s.add(t, q)
            self._buy_5s.add(t, q)
        else:
            self._sell_1s.add(t, q)
            self._sell_5s.add(t, q)
        self._n_1s.add(t, 1)
        self._last_trade_ns = t

    def on_event(self, ev: MarketEvent) -> None:
        if isinstance(ev, BookTicker):
            self.on_ticker(ev)
        elif isinstance(ev, Trade):
            self.on_trade(ev)
        else:
            self.on_depth(ev)

    # -- reading ---------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """A valid two-sided touch exists (scoring before that is meaningless)."""
        return self.book.ready

    def raw(self) -> dict[str, float | int]:
        """The raw aggregates as of the last event (see tidegate.features.formulas)."""
        now = self.now_ns
        bid, bq, ask, aq = self.book.touch()
        scale, qscale = self.params.price_scale, self.params.qty_scale
        m2 = round(bid * scale) + round(ask * scale) if bid > 0 and ask > 0 else 0
        return {
            "bid_px": bid, "bid_qty": bq, "ask_px": ask, "ask_qty": aq,
            "bid_band": self.book.bid_band_qty, "ask_band": self.book.ask_band_qty,
            "buy_1s": self._buy_1s.value(now), "sell_1s": self._sell_1s.value(now),
            "buy_5s": self._buy_5s.value(now), "sell_5s": self._sell_5s.value(now),
            "n_1s": self._n_1s.value(now), "m2": m2,
            "m2_short": self._m_short.value(now), "m2_mid": self._m_mid.value(now),
            "m2_long": self._m_long.value(now),
            "sq_mid": self._sq_mid.value(now), "sq_long": self._sq_long.value(now),
            "since_trade_ns": now - self._last_trade_ns if self._last_trade_ns >= 0 else -1,
            "bid_qty_u": round(bq * qscale), "ask_qty_u": round(aq * qscale),
        }

    def market_vector(self) -> np.ndarray:
        """Market features (MARKET_FEATURES order) as float32."""
        return flush_tiny(np.asarray(market_features_row(self.raw()), dtype=np.float32))

    def vector(self, side: int) -> np.ndarray:
        """The model input for a candidate on ``side`` (+1 buy at the bid, -1 sell at the ask)."""
        if side not in (1, -1):
            raise ValueError(f"side must be +1 (buy) or -1 (sell), got {side!r}")
        return model_matrix(self.market_vector(), side)[0]
