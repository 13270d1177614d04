"""Seeded synthetic market: the capture's event stream (diffs, trades, tickers) for machines without it.

Why a queue model and not a random walk: the scorer learns from microstructure,
so the generator must produce it mechanically. Prices move only when the queue
at the touch is exhausted by aggressive trades or cancels, exactly as on a real
venue. A thin queue facing a thick one is therefore likely to go first, which
makes order-book imbalance, microprice and trade flow genuinely predictive,
while markouts stay noisy. A latent order-flow "pressure" (an Ornstein-Uhlenbeck
process) tilts aggressor sides, so trade-flow imbalance and short returns carry
information too.

Regimes (``REGIMES``):
- ``normal``: one-tick spread most of the time, modest trade rate, thick queues.
- ``event``: normal, plus news bursts every ~40 s: for 4-15 s the pressure jumps
  to a strong one-sided value and the trade rate multiplies.
- ``high-vol``: thin queues, 3x trade rate, stronger pressure noise, wider spreads.

Exchange time advances by exponential gaps; receive time adds a log-normal feed
latency (median ~4 ms, like the real capture), and the stream is delivered in
receive-time order. Same seed, same arguments -> identical frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tidegate.market.frame import DepthColumns, MarketFrame, TickerColumns, TradeColumns

REGIMES = ("normal", "event", "high-vol")


@dataclass(frozen=True)
class RegimeParams:
    trade_rate: float  # aggressive trades per second
    add_rate: float  # limit-order additions per second
    cancel_rate: float  # cancellations per second
    queue_mean: float  # mean qty added per order, base units
    pressure_sigma: float
    pressure_tau_s: float
    wide_spread_prob: float  # chance that a touch depletion leaves a gap of 2 ticks
    burst_every_s: float = 0.0  # 0: no bursts
    burst_mult: float = 1.0


PARAMS: dict[str, RegimeParams] = {
    "normal": RegimeParams(8.0, 40.0, 24.0, 0.20, 1.0, 8.0, 0.15),
    "event": RegimeParams(8.0, 40.0, 24.0, 0.20, 1.0, 8.0, 0.15, burst_every_s=40.0, burst_mult=5.0),
    "high-vol": RegimeParams(20.0, 50.0, 36.0, 0.08, 1.6, 4.0, 0.40),
}

TICK = 0.1
LOT = 0.001
LADDER = 30  # levels kept per side


def _qty(rng: np.random.Generator, mean: float) -> float:
    return max(LOT, round(rng.exponential(mean) / LOT) * LOT)


def generate(*, seed: int = 7, regime: str = "normal", duration_s: float = 120.0, symbol: str = "BTCUSDT",
             start_ns: int = 1_723_161_600_000_000_000, start_price: float = 60_000.0,
             depth_interval_ms: float = 50.0) -> MarketFrame:
    """A reproducible MarketFrame of ``duration_s`` seconds in one regime."""
    if regime not in PARAMS:
        raise ValueError(f"regime must be one of {REGIMES}, got {regime!r}")
    if duration_s <= 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    p = PARAMS[regime]
    rng = np.random.default_rng(seed)
    bid_t = round(start_price / TICK)
    bids = {bid_t - k: _qty(rng, p.queue_mean * 3) for k in range(LADDER)}
    asks = {bid_t + 1 + k: _qty(rng, p.queue_mean * 3) for k in range(LADDER)}
    pressure = 0.0
    uid = 1_000_000
    t_s = 0.0
    next_burst = rng.exponential(p.burst_every_s) if p.burst_every_s else math.inf
    burst_until, burst_sign = -1.0, 0.0
    next_flush = depth_interval_ms / 1e3
    changed: dict[tuple[int, int], float] = {}
    dep_rows: list[tuple[float, int, int, list[tuple[int, float, float]]]] = []
    trd_rows: list[tuple[float, int, float, float, int]] = []
    tck_rows: list[tuple[float, int, float, float, float, float]] = []
    first_depth_id = uid
    last_top: tuple[int, float, int, float] | None = None

    def emit_ticker() -> None:
        nonlocal uid, last_top
        bb, ba = max(bids), min(asks)
        top = (bb, bids[bb], ba, asks[ba])
        if top != last_top:
            uid += 1
            tck_rows.append((t_s, uid, bb * TICK, bids[bb], ba * TICK, asks[ba]))
            last_top = top

    def set_level(side: int, tick: int, qty: float) -> None:
        book = bids if side > 0 else asks
        if qty <= 1e-12:
            book.pop(tick, None)
            qty = 0.0
        else:
            book[tick] = round(qty / LOT) * LOT
        changed[(side, tick)] = book.get(tick, 0.0)

    def refill() -> None:
        """Keep LADDER levels per side behind the touch (new far levels appear as the price moves)."""
        bb, ba = max(bids), min(asks)
        for k in range(LADDER):
            if bb - k not in bids and rng.random() < 0.85:
                set_level(1, bb - k, _qty(rng, p.queue_mean * (1.0 + 0.1 * k)))
            if ba + k not in asks and rng.random() < 0.85:
                set_level(-1, ba + k, _qty(rng, p.queue_mean * (1.0 + 0.1 * k)))
        for tick in [t for t in bids if t < bb - LADDER]:
            set_level(1, tick, 0.0)
        for tick in [t for t in asks if t > ba + LADDER]:
            set_level(-1, tick, 0.0)

    emit_ticker()
    while t_s < duration_s:
        in_burst = t_s < burst_until
        trade_rate = p.trade_rate * (p.burst_mult if in_burst else 1.0)
        total = trade_rate + p.add_rate + p.cancel_rate
        dt = rng.exponential(1.0 / total)
        t_s += dt
        # pressure: OU, overridden during bursts
        pressure += -pressure * dt / p.pressure_tau_s + p.pressure_sigma * math.sqrt(dt) * rng.standard_normal()
        if t_s >= next_burst:
            burst_until = t_s + rng.uniform(4.0, 15.0)
            burst_sign = 1.0 if rng.random() < 0.5 else -1.0
            next_burst = t_s + rng.exponential(p.burst_every_s)
        tilt = pressure + (2.5 * burst_sign if t_s < burst_until else 0.0)
        bb, ba = max(bids), min(asks)
        u = rng.random() * total
        if u < trade_rate:
            side = 1 if rng.random() < 1.0 / (1.0 + math.exp(-tilt)) else -1
            size = _qty(rng, p.queue_mean * 2.0)
            if side > 0:
                q = asks[ba]
                fill = min(size, q)
                trd_rows.append((t_s, 1, ba * TICK, fill, len(trd_rows)))
                set_level(-1, ba, q - fill)
                if ba not in asks and rng.random() < p.wide_spread_prob:
                    set_level(-1, ba + 1, 0.0)
            else:
                q = bids[bb]
                fill = min(size, q)
                trd_rows.append((t_s, -1, bb * TICK, fill, len(trd_rows)))
                set_level(1, bb, q - fill)
                if bb not in bids and rng.random() < p.wide_spread_prob:
                    set_level(1, bb - 1, 0.0)
        elif u < trade_rate + p.add_rate:
            side = 1 if rng.random() < 0.5 + 0.1 * math.tanh(tilt) else -1
            spread = ba - bb
            if spread > 1 and rng.random() < 0.6:
                tick = bb + 1 if side > 0 else ba - 1  # improve inside the spread
            else:
                k = min(int(rng.geometric(0.35)) - 1, LADDER - 1)
                tick = bb - k if side > 0 else ba + k
            book = bids if side > 0 else asks
            set_level(side, tick, book.get(tick, 0.0) + _qty(rng, p.queue_mean))
        else:
            side = 1 if rng.random() < 0.5 else -1
            k = min(int(rng.geometric(0.5)) - 1, LADDER - 1)
            book = bids if side > 0 else asks
            tick = (bb - k) if side > 0 else (ba + k)
            if tick in book:
                q = book[tick]
                set_level(side, tick, q - _qty(rng, p.queue_mean) if rng.random() < 0.7 else 0.0)
        if not bids:
            set_level(1, min(asks) - 1, _qty(rng, p.queue_mean * 3))
        if not asks:
            set_level(-1, max(bids) + 1, _qty(rng, p.queue_mean * 3))
        if max(bids) != bb or min(asks) != ba:
            refill()
        emit_ticker()
        if t_s >= next_flush and changed:
            first = uid + 1
            uid += len(changed)
            dep_rows.append((t_s, first, uid, [(s, k, q) for (s, k), q in changed.items()]))
            changed.clear()
            next_flush = t_s + depth_interval_ms / 1e3
    return _to_frame(rng, symbol, regime, seed, start_ns, dep_rows, trd_rows, tck_rows, first_depth_id)


def _latency_ns(rng: np.random.Generator, n: int) -> np.ndarray:
    return (rng.lognormal(math.log(4.0), 0.6, n) * 1e6).astype(np.int64)


def _to_frame(rng: np.random.Generator, symbol: str, regime: str, seed: int, start_ns: int,
              dep_rows: list, trd_rows: list, tck_rows: list, first_depth_id: int) -> MarketFrame:
    # arrival sequence = exchange-time order across streams (ties: depth, trade, ticker)
    stamps = [(r[0], 0, i) for i, r in enumerate(dep_rows)] + [(r[0], 1, i) for i, r in enumerate(trd_rows)] + \
             [(r[0], 2, i) for i, r in enumerate(tck_rows)]
    stamps.sort()
    seq = {(kind, i): n for n, (_, kind, i) in enumerate(stamps)}

    def times(rows: list, kind: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        exch = start_ns + (np.asarray([r[0] for r in rows], np.float64) * 1e9).astype(np.int64)
        exch = (exch // 1_000_000) * 1_000_000  # venues stamp milliseconds
        local = exch + _latency_ns(rng, len(rows))
        s = np.asarray([seq[(kind, i)] for i in range(len(rows))], np.int64)
        return s, local, exch

    s, local, exch = times(dep_rows, 0)
    counts = np.asarray([len(r[3]) for r in dep_rows], np.int64)
    offsets = np.zeros(len(dep_rows) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    lv = [lvl for r in dep_rows for lvl in r[3]]
    last_ids = np.asarray([r[2] for r in dep_rows], np.int64)
    prev_ids = np.concatenate([[first_depth_id], last_ids[:-1]]) if len(dep_rows) else last_ids
    depth = DepthColumns(s, local, exch, np.asarray([r[1] for r in dep_rows], np.int64), last_ids, prev_ids,
                         offsets, np.asarray([v[0] for v in lv], np.int8),
                         np.round(np.asarray([v[1] for v in lv], np.float64) * TICK, 1),
                         np.asarray([v[2] for v in lv], np.float64)) if dep_rows else DepthColumns.empty()
    s, local, exch = times(trd_rows, 1)
    trades = TradeColumns(s, local, exch, np.arange(len(trd_rows), dtype=np.int64) + 1,
                          np.round(np.asarray([r[2] for r in trd_rows], np.float64), 1),
                          np.asarray([r[3] for r in trd_rows], np.float64),
                          np.asarray([r[1] for r in trd_rows], np.int8)) if trd_rows else TradeColumns.empty()
    s, local, exch = times(tck_rows, 2)
    tickers = TickerColumns(s, local, exch, np.asarray([r[1] for r in tck_rows], np.int64),
                            np.round(np.asarray([r[2] for r in tck_rows], np.float64), 1),
                            np.asarray([r[3] for r in tck_rows], np.float64),
                            np.round(np.asarray([r[4] for r in tck_rows], np.float64), 1),
                            np.asarray([r[5] for r in tck_rows], np.float64))
    return MarketFrame(symbol=symbol, source=f"synthetic-{regime}-seed{seed}", depth=depth, trades=trades,
                       tickers=tickers, regime=regime, info={"seed": seed, "regime": regime})


def day_specs(*, seed: int = 7, regimes: tuple[str, ...] = REGIMES, duration_s: float = 120.0,
              symbol: str = "BTCUSDT", start_ns: int = 1_723_161_600_000_000_000,
              cycles: int = 1) -> list[dict[str, object]]:
    """The ``generate`` arguments of each session of ``generate_days`` (so workers can build them in parallel)."""
    step = int(duration_s * 1e9) + 60_000_000_000
    specs: list[dict[str, object]] = []
    for c in range(cycles):
        for i, r in enumerate(regimes):
            n = c * len(regimes) + i
            specs.append({"seed": seed * 1000 + n, "regime": r, "duration_s": duration_s, "symbol": symbol,
                          "start_ns": start_ns + n * step})
    return specs


def generate_days(*, seed: int = 7, regimes: tuple[str, ...] = REGIMES, duration_s: float = 120.0,
                  symbol: str = "BTCUSDT", start_ns: int = 1_723_161_600_000_000_000,
                  cycles: int = 1) -> list[MarketFrame]:
    """Sessions cycling through the regimes (normal, event, high-vol, normal, ...), back to back in time.

    Interleaving matters for training: a time-ordered split then sees every regime
    in every slice instead of testing on a regime it never trained on.
    """
    return [generate(**spec) for spec in day_specs(seed=seed, regimes=regimes, duration_s=duration_s,  # type: ignore[arg-type]
                                                   symbol=symbol, start_ns=start_ns, cycles=cycles)]
