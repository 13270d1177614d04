"""One order schedule, two simulators: ``PaperExchange`` checked order by order against hftbacktest.

Why this exists (issue 18): our simulator's own tests use hand-built books, so
nothing showed that its queue, crossing and latency rules hold on a real market.
hftbacktest is written by someone else, models the same things (back-of-queue
post-only orders, risk-averse queue, partial fills, constant order latency) and
reads exactly the Binance recording format of ``../shared/data/capture``, so it is
the yardstick.

How the comparison is kept fair:

- **The same events.** The capture is converted once with hftbacktest's own
  Binance futures converter (``hftbacktest.data.utils.binancefutures.convert``,
  cached outside the repository); both simulators are then driven from that one
  event array: its depth rows (grouped back into the messages they came from) and
  its trades.
- **The same clock.** Our executor runs on the receive clock (``recv_ns``: the
  only clock a live service can act on, and the recorder's clock is 1.27 s off
  the venue's), so our exchange sees the market as it was received. hftbacktest
  keeps two clocks and lets its exchange see the venue's timestamps. The matched
  comparison (``same_clock``) therefore gives hftbacktest's exchange the receive
  time too; ``feed_latency`` runs keep the venue's clock and show what that
  difference alone does.
- **The same orders.** One ``Schedule`` is built before either simulator runs:
  every ``period_ms`` a post-only buy at the best bid or sell at the best ask
  (alternating), cancelled ``ttl_ms`` later. Both receive the same list.
- **The same settings**: tick and lot size, maker/taker fees, constant entry and
  response latency, the risk-averse queue and partial fills.

Per order each simulator yields an ``Outcomes`` row: accepted or rejected
(post-only cross), filled quantity, first-fill time on the exchange clock and the
1 s markout in basis points (from the mid of the same event stream, so two equal
fills have equal markouts). ``compare`` turns two of them into agreement figures.

hftbacktest is a dev dependency only: it is imported inside the functions that
need it, so the package itself never requires it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from tidegate.execution.simulator import ConstantLatency, OrderRequest, PaperExchange, make_queue_model

# hftbacktest event flags (hftbacktest/types.py); repeated here so that reading a
# converted array does not need the package.
EXCH_EVENT = 1 << 31
LOCAL_EVENT = 1 << 30
BUY_EVENT = 1 << 29
SELL_EVENT = 1 << 28
DEPTH_EVENT = 1
TRADE_EVENT = 2
NS = 1_000_000_000
MS = 1_000_000


@dataclass(frozen=True)
class FidelitySettings:
    """What both simulators are configured with; defaults are ``executor.simulator`` and BTCUSDT perp rules."""

    tick_size: float = 0.1
    lot_size: float = 0.001
    maker_fee: float = 0.0002
    taker_fee: float = 0.0005
    entry_ms: float = 5.0
    response_ms: float = 5.0
    queue_model: str = "risk_averse"
    prob_power: float = 2.0
    period_ms: int = 200
    ttl_ms: int = 2000
    qty: float = 0.05
    markout_s: float = 1.0


@dataclass(frozen=True)
class Schedule:
    """The orders both simulators receive: submit time, side (+1 buy, -1 sell), price, cancel time."""

    submit_ns: np.ndarray
    side: np.ndarray
    price: np.ndarray
    cancel_ns: np.ndarray
    qty: float

    def __len__(self) -> int:
        return len(self.submit_ns)


@dataclass
class Outcomes:
    """What one simulator did with each scheduled order (index = schedule index)."""

    name: str
    accepted: np.ndarray          # bool: the exchange accepted the post-only order
    filled_qty: np.ndarray        # total filled before the cancel
    first_fill_ns: np.ndarray     # exchange time of the first fill, -1 when never filled
    markout_bps: np.ndarray       # 1 s markout of the first fill, nan when never filled
    seconds: float = 0.0          # wall time of the run
    events: int = 0               # event rows it consumed
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def filled(self) -> np.ndarray:
        return self.filled_qty > 0

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")


# -- data ----------------------------------------------------------------------------------------


def convert_capture(path: str | Path, cache_dir: str | Path) -> np.ndarray:
    """The capture converted by hftbacktest's Binance futures converter, cached as ``<cache_dir>/<name>.npz``.

    The cache key holds the file's size and mtime, so a changed capture is converted again.
    """
    from hftbacktest.data.utils import binancefutures

    path = Path(path)
    st = path.stat()
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"{path.name.removesuffix('.gz')}-{st.st_size}-{int(st.st_mtime)}.npz"
    if not out.is_file():
        tmp = out.with_suffix(".tmp.npz")
        binancefutures.convert(str(path), output_filename=str(tmp), buffer_size=max(1_000_000, st.st_size // 4))
        tmp.replace(out)
    with np.load(out) as z:
        return z["data"]


def same_clock(events: np.ndarray) -> np.ndarray:
    """The local (received) rows only, each stamped with exchange time = receive time.

    hftbacktest's exchange then sees every event exactly when our exchange does;
    row order is the converter's local order (the recorded line order).
    """
    local = events[(events["ev"] & LOCAL_EVENT) != 0].copy()
    local["exch_ts"] = local["local_ts"]
    local["ev"] = local["ev"] | EXCH_EVENT | LOCAL_EVENT
    return local


def window(events: np.ndarray, start_s: float, seconds: float) -> np.ndarray:
    """Rows whose receive time is within [first + start_s, first + start_s + seconds)."""
    t0 = int(events["local_ts"][0] + start_s * NS)
    t1 = t0 + int(seconds * NS)
    ts = events["local_ts"]
    return events[(ts >= t0) & (ts < t1)]


@dataclass
class _Messages:
    """The event array regrouped into the messages our exchange takes (one depth diff → one on_book call)."""

    kind: list[int]                       # 0 depth, 1 trade
    ts: list[int]
    bids: list[list[tuple[float, float]]]
    asks: list[list[tuple[float, float]]]
    trade_px: list[float]
    trade_qty: list[float]
    trade_aggr: list[str]
    rows: int


def _messages(events: np.ndarray) -> _Messages:
    ev = events["ev"]
    typ = (ev & 0xFF).tolist()
    buy = ((ev & BUY_EVENT) != 0).tolist()
    ts = events["local_ts"].tolist()
    px = events["px"].tolist()
    qty = events["qty"].tolist()
    m = _Messages([], [], [], [], [], [], [], len(events))
    last_depth_ts = -1
    for i in range(len(typ)):
        if typ[i] == DEPTH_EVENT:
            if last_depth_ts != ts[i] or m.kind[-1] != 0:
                m.kind.append(0)
                m.ts.append(ts[i])
                m.bids.append([])
                m.asks.append([])
                m.trade_px.append(0.0)
                m.trade_qty.append(0.0)
                m.trade_aggr.append("")
                last_depth_ts = ts[i]
            (m.bids if buy[i] else m.asks)[-1].append((px[i], qty[i]))
        elif typ[i] == TRADE_EVENT:
            m.kind.append(1)
            m.ts.append(ts[i])
            m.bids.append([])
            m.asks.append([])
            m.trade_px.append(px[i])
            m.trade_qty.append(qty[i])
            m.trade_aggr.append("buy" if buy[i] else "sell")
            last_depth_ts = -1
    return m


class _Ladder:
    """L2 book keyed by integer ticks, with hftbacktest's best-price rule.

    Why hftbacktest's rule: the capture starts without a snapshot, so levels that
    were never touched again stay in the book. When a fresh bid arrives at or
    above the best ask, the asks below it cannot be live, so the best ask moves
    above the bid (HashMapMarketDepth.update_bid_depth); the stale levels stay
    stored but are no longer the touch. A plain max/min would report a crossed
    book and reject every post-only order at the touch.
    """

    def __init__(self, tick: float, lot: float) -> None:
        self.tick = tick
        self.lot = lot
        self.bids: dict[int, float] = {}
        self.asks: dict[int, float] = {}
        self.best_bid = -(1 << 62)
        self.best_ask = 1 << 62
        self.low_bid = 1 << 62
        self.high_ask = -(1 << 62)

    def _below(self, start: int) -> int:
        for t in range(start - 1, self.low_bid - 1, -1):
            if self.bids.get(t, 0.0) > 0.0:
                return t
        return -(1 << 62)

    def _above(self, start: int) -> int:
        for t in range(start + 1, self.high_ask + 1):
            if self.asks.get(t, 0.0) > 0.0:
                return t
        return 1 << 62

    def bid(self, price: float, qty: float) -> None:
        t = round(price / self.tick)
        if round(qty / self.lot) > 0:
            self.bids[t] = qty
            if t > self.best_bid:
                self.best_bid = t
                if self.best_bid >= self.best_ask:
                    self.best_ask = self._above(self.best_bid)
            self.low_bid = min(self.low_bid, t)
        else:
            self.bids.pop(t, None)
            if t == self.best_bid:
                self.best_bid = self._below(t)
                if not self.bids or self.best_bid < -(1 << 61):
                    self.low_bid = 1 << 62

    def ask(self, price: float, qty: float) -> None:
        t = round(price / self.tick)
        if round(qty / self.lot) > 0:
            self.asks[t] = qty
            if t < self.best_ask:
                self.best_ask = t
                if self.best_bid >= self.best_ask:
                    self.best_bid = self._below(self.best_ask)
            self.high_ask = max(self.high_ask, t)
        else:
            self.asks.pop(t, None)
            if t == self.best_ask:
                self.best_ask = self._above(t)
                if not self.asks or self.best_ask > (1 << 61):
                    self.high_ask = -(1 << 62)

    def touch(self) -> tuple[float | None, float | None]:
        bb = self.best_bid * self.tick if self.best_bid > -(1 << 61) else None
        ba = self.best_ask * self.tick if self.best_ask < (1 << 61) else None
        return (round(bb, 8) if bb is not None else None, round(ba, 8) if ba is not None else None)


def _book_path(msgs: _Messages, settings: FidelitySettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Receive time, best bid and best ask after every depth message (nan where a side is empty)."""
    book = _Ladder(settings.tick_size, settings.lot_size)
    ts: list[int] = []
    bb: list[float] = []
    ba: list[float] = []
    for i, k in enumerate(msgs.kind):
        if k != 0:
            continue
        for p, q in msgs.bids[i]:
            book.bid(p, q)
        for p, q in msgs.asks[i]:
            book.ask(p, q)
        b, a = book.touch()
        ts.append(msgs.ts[i])
        bb.append(np.nan if b is None else b)
        ba.append(np.nan if a is None else a)
    return np.asarray(ts, np.int64), np.asarray(bb), np.asarray(ba)


def build_schedule(events: np.ndarray, settings: FidelitySettings, *, warmup_s: float = 5.0) -> Schedule:
    """Every ``period_ms`` after ``warmup_s`` (the book fills in from diffs), a touch order, alternating sides.

    Submit times sit half a millisecond off the period grid so that no order and
    no market event share a nanosecond (the tie order of two engines is not what
    this comparison is about).
    """
    ts, bb, ba = _book_path(_messages(events), settings)
    if len(ts) == 0:
        return Schedule(np.zeros(0, np.int64), np.zeros(0, np.int8), np.zeros(0), np.zeros(0, np.int64), settings.qty)
    start = int(ts[0] + warmup_s * NS) // MS * MS + MS // 2
    end = int(events["local_ts"][-1]) - settings.ttl_ms * MS - int(settings.markout_s * NS) - 50 * MS
    grid = np.arange(start, max(start, end), settings.period_ms * MS, dtype=np.int64)
    at = np.searchsorted(ts, grid, side="right") - 1
    ok = at >= 0
    grid, at = grid[ok], at[ok]
    side = np.where(np.arange(len(grid)) % 2 == 0, 1, -1).astype(np.int8)
    price = np.where(side > 0, bb[at], ba[at])
    keep = np.isfinite(price)
    grid, side, price = grid[keep], side[keep], price[keep]
    return Schedule(grid, side, price, grid + settings.ttl_ms * MS, settings.qty)


def _markouts(msgs: _Messages, settings: FidelitySettings, side: np.ndarray, price: np.ndarray,
              fill_ns: np.ndarray) -> np.ndarray:
    ts, bb, ba = _book_path(msgs, settings)
    mid = (bb + ba) / 2
    out = np.full(len(fill_ns), np.nan)
    hit = fill_ns >= 0
    at = np.searchsorted(ts, fill_ns[hit] + int(settings.markout_s * NS), side="right") - 1
    m = mid[np.clip(at, 0, len(mid) - 1)]
    out[hit] = side[hit] * (m - price[hit]) / price[hit] * 1e4
    return out


# -- our simulator -------------------------------------------------------------------------------


def run_paper(events: np.ndarray, schedule: Schedule, settings: FidelitySettings, *,
              queue_model: str | None = None) -> Outcomes:
    """Drive ``PaperExchange`` (the executor's class) with the events and the schedule.

    Best prices come from a ``_Ladder`` beside it, as the executor's come from its
    book; commands are handed over before the first event later than their submit
    time, exactly when a live executor would send them.
    """
    msgs = _messages(events)
    n = len(schedule)
    qname = queue_model or settings.queue_model
    ex = PaperExchange(queue=make_queue_model(qname, power=settings.prob_power),
                       latency=ConstantLatency(settings.entry_ms, settings.response_ms),
                       maker_fee=settings.maker_fee, taker_fee=settings.taker_fee)
    book = _Ladder(settings.tick_size, settings.lot_size)
    accepted = np.zeros(n, bool)
    filled = np.zeros(n)
    first = np.full(n, -1, np.int64)
    sub, can = schedule.submit_ns.tolist(), schedule.cancel_ns.tolist()
    side, price = schedule.side.tolist(), schedule.price.tolist()
    coids = [f"o{i}" for i in range(n)]
    index = {c: i for i, c in enumerate(coids)}
    k = c = 0
    t0 = time.perf_counter()
    for j, kind in enumerate(msgs.kind):
        t = msgs.ts[j]
        while True:  # commands due before this event, in time order
            ts_sub = sub[k] if k < n else None
            ts_can = can[c] if c < n else None
            if ts_sub is not None and ts_sub < t and (ts_can is None or ts_sub <= ts_can):
                ex.submit(OrderRequest(coids[k], "buy" if side[k] > 0 else "sell", price[k], schedule.qty), ts_sub)
                k += 1
            elif ts_can is not None and ts_can < t:
                ex.cancel(coids[c], ts_can)
                c += 1
            else:
                break
        if kind == 0:
            for p, q in msgs.bids[j]:
                book.bid(p, q)
            for p, q in msgs.asks[j]:
                book.ask(p, q)
            bb, ba = book.touch()
            reports = ex.on_book(t, msgs.bids[j], msgs.asks[j], bb, ba)
        else:
            reports = ex.on_trade(t, msgs.trade_px[j], msgs.trade_qty[j], msgs.trade_aggr[j])  # type: ignore[arg-type]
        for r in reports:
            i = index[r.client_order_id]
            if r.kind == "accepted":
                accepted[i] = True
            elif r.kind == "fill":
                filled[i] += r.qty
                if first[i] < 0:
                    first[i] = r.ts_ns
    seconds = time.perf_counter() - t0
    return Outcomes(f"tidegate:{qname}", accepted, filled, first,
                    _markouts(msgs, settings, schedule.side, schedule.price, first), seconds, msgs.rows)


# -- hftbacktest ---------------------------------------------------------------------------------

_DRIVER: dict[str, Any] = {}


def _hbt_driver() -> Any:
    """The numba-compiled strategy loop for hftbacktest (compiled once per process)."""
    if "drive" in _DRIVER:
        return _DRIVER["drive"]
    from hftbacktest import GTX, LIMIT
    from numba import njit

    canceled, expired, filled_st = 4, 2, 3

    @njit
    def drive(hbt, sub, can, side, price, qty, accepted, filled, first, tail_ns):  # type: ignore[no-untyped-def]
        n = len(sub)
        k = 0
        c = 0
        lo = 0
        big = np.iinfo(np.int64).max
        hbt.wait_next_feed(False, 1)  # the clock reads int64 max until the first event is read
        while True:
            nxt = big
            if k < n:
                nxt = sub[k]
            if c < n and can[c] < nxt:
                nxt = can[c]
            if nxt == big:
                if tail_ns <= 0:
                    break
                nxt = hbt.current_timestamp + tail_ns
                tail_ns = 0
            now = hbt.current_timestamp
            if nxt > now:
                r = hbt.wait_next_feed(True, nxt - now)
                if r == 1:
                    break
                if r > 3:
                    return -r
            else:
                if k < n and sub[k] <= now and (c >= n or sub[k] <= can[c]):
                    if side[k] > 0:
                        hbt.submit_buy_order(0, k + 1, price[k], qty, GTX, LIMIT, False)
                    else:
                        hbt.submit_sell_order(0, k + 1, price[k], qty, GTX, LIMIT, False)
                    k += 1
                elif c < n and can[c] <= now:
                    o = hbt.orders(0).get(c + 1)
                    if o is not None and o.cancellable:
                        hbt.cancel(0, c + 1, False)
                    c += 1
            # poll the orders still open on our side for new responses
            orders = hbt.orders(0)
            all_done = True
            for i in range(lo, k):
                o = orders.get(i + 1)
                if o is None:
                    all_done = False
                    continue
                st = o.status
                if st != expired and st != 0:
                    accepted[i] = True
                done_qty = o.qty - o.leaves_qty
                if done_qty > 1e-12:
                    if first[i] < 0:
                        first[i] = o.exch_timestamp
                    filled[i] = done_qty
                final = st == canceled or st == expired or st == filled_st
                if all_done and final and i < c:
                    lo = i + 1
                else:
                    all_done = False
        return k

    _DRIVER["drive"] = drive
    return drive


def hbt_asset(events: np.ndarray, settings: FidelitySettings, queue_model: str | None = None) -> Any:
    """A BacktestAsset configured like ``executor.simulator`` (queue, latency, fees, tick, lot, partial fills)."""
    from hftbacktest import BacktestAsset

    asset = (BacktestAsset().data(events).linear_asset(1.0)
             .constant_order_latency(int(settings.entry_ms * MS), int(settings.response_ms * MS))
             .tick_size(settings.tick_size).lot_size(settings.lot_size)
             .trading_value_fee_model(settings.maker_fee, settings.taker_fee)
             .partial_fill_exchange().last_trades_capacity(0))
    q = queue_model or settings.queue_model
    name, _, arg = q.partition(":")
    if name == "risk_averse":
        return asset.risk_adverse_queue_model()
    if name == "prob":  # hftbacktest's power-probability model with our power
        return asset.power_prob_queue_model(settings.prob_power)
    makers = {"power": asset.power_prob_queue_model, "power2": asset.power_prob_queue_model2,
              "power3": asset.power_prob_queue_model3}
    if name in makers and arg:
        return makers[name](float(arg))
    if name == "log":
        return asset.log_prob_queue_model()
    if name == "log2":
        return asset.log_prob_queue_model2()
    raise ValueError(f"no hftbacktest queue model named {q!r}")


# hftbacktest 2.4.4's PartialFillExchange leaves an order in its book when a trade at the order's
# price executes *exactly* its remaining quantity: the order is marked Filled but not removed, and
# the next trade at that price stops the backtest with InvalidOrderStatus (error 14). Reproduced by
# tests/test_simulator_fidelity.py on a hand-made book. Submitting each order a millionth of a lot
# short means the executable quantity is never exactly equal to the remainder; filled quantities are
# rounded back to whole lots afterwards, so no result changes.
HBT_QTY_SHAVE = 1e-6


def in_units(events: np.ndarray, settings: FidelitySettings) -> np.ndarray:
    """The events with prices in ticks and quantities in lots (integer-valued floats).

    Why: integer units make every queue and partial-fill sum in hftbacktest exact,
    so its lot rounding (``is_filled`` floors to lots) never loses a lot to float
    dust, and the one workaround below (``HBT_QTY_SHAVE``) stays a fraction of a lot.
    """
    out = events.copy()
    out["px"] = np.round(events["px"] / settings.tick_size)
    out["qty"] = np.round(events["qty"] / settings.lot_size)
    return out


def run_hftbacktest(events: np.ndarray, schedule: Schedule, settings: FidelitySettings, *,
                    queue_model: str | None = None, name: str = "hftbacktest") -> Outcomes:
    """Drive hftbacktest with the same events and schedule; the wall time excludes numba compilation.

    hftbacktest runs in integer units (``in_units``); its filled quantities are
    converted back to the venue's before they are compared.
    """
    from hftbacktest import HashMapMarketDepthBacktest

    drive = _hbt_driver()
    n = len(schedule)
    units = np.ascontiguousarray(in_units(events, settings))
    upx = np.round(schedule.price / settings.tick_size)
    uqty = float(round(schedule.qty / settings.lot_size)) - HBT_QTY_SHAVE
    unit_settings = replace(settings, tick_size=1.0, lot_size=1.0)
    if "warm" not in _DRIVER:  # compile on a tiny run so the timed run measures simulation, not numba
        tiny = units[:2000]
        w = HashMapMarketDepthBacktest([hbt_asset(tiny, unit_settings, queue_model)])
        drive(w, np.full(1, int(tiny["local_ts"][-1]) + NS), np.full(1, 1 << 62), schedule.side[:1], upx[:1],
              uqty, np.zeros(1, np.bool_), np.zeros(1), np.full(1, -1, np.int64), 0)
        w.close()
        _DRIVER["warm"] = True
    accepted = np.zeros(n, np.bool_)
    filled = np.zeros(n)
    first = np.full(n, -1, np.int64)
    hbt = HashMapMarketDepthBacktest([hbt_asset(units, unit_settings, queue_model)])
    t0 = time.perf_counter()
    rc = drive(hbt, schedule.submit_ns, schedule.cancel_ns, schedule.side, upx, uqty, accepted, filled, first,
               int(settings.ttl_ms * MS + 2 * NS))
    seconds = time.perf_counter() - t0
    hbt.close()
    if rc < 0:
        raise RuntimeError(f"hftbacktest stopped with error code {-rc}")
    msgs = _messages(events if _is_same_clock(events) else same_clock(events))
    return Outcomes(name, accepted, np.round(filled) * settings.lot_size, first,
                    _markouts(msgs, settings, schedule.side, schedule.price, first), seconds, len(events))


def _is_same_clock(events: np.ndarray) -> bool:
    return bool(np.all(events["exch_ts"] == events["local_ts"]))


# -- comparison ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    orders: int
    accept_agreement: float
    fill_agreement: float           # same filled / not filled
    qty_agreement: float            # same filled quantity (to half a lot)
    fill_rate_a: float
    fill_rate_b: float
    mean_markout_a_bps: float
    mean_markout_b_bps: float
    fill_time_diff_ms_p50: float    # |first fill a - first fill b| over orders both filled
    fill_time_diff_ms_max: float
    same_fill_time: float           # share of both-filled orders with the identical first-fill time
    disagree: list[int]

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "disagree"}
        d["disagreements"] = len(self.disagree)
        return d


def compare(a: Outcomes, b: Outcomes, lot: float) -> Comparison:
    n = len(a.accepted)
    both = a.filled & b.filled
    dt = np.abs(a.first_fill_ns[both] - b.first_fill_ns[both]) / MS
    fill_same = a.filled == b.filled
    return Comparison(
        orders=n,
        accept_agreement=float(np.mean(a.accepted == b.accepted)) if n else float("nan"),
        fill_agreement=float(np.mean(fill_same)) if n else float("nan"),
        qty_agreement=float(np.mean(np.abs(a.filled_qty - b.filled_qty) < lot / 2)) if n else float("nan"),
        fill_rate_a=float(np.mean(a.filled)) if n else float("nan"),
        fill_rate_b=float(np.mean(b.filled)) if n else float("nan"),
        mean_markout_a_bps=float(np.nanmean(a.markout_bps)) if a.filled.any() else float("nan"),
        mean_markout_b_bps=float(np.nanmean(b.markout_bps)) if b.filled.any() else float("nan"),
        fill_time_diff_ms_p50=float(np.median(dt)) if len(dt) else float("nan"),
        fill_time_diff_ms_max=float(dt.max()) if len(dt) else float("nan"),
        same_fill_time=float(np.mean(dt == 0)) if len(dt) else float("nan"),
        disagree=[int(i) for i in np.flatnonzero(~fill_same)],
    )
