"""collector: market data onto the bus (``md.book.<symbol>``, ``md.trade.<symbol>``).

Paper mode replays a recorded capture (``data.capture_dir``/``collector.capture_file``)
or, when it is absent (``source: auto``) or asked for, the seeded synthetic
generator, at ``collector.speed`` times real time (0: as fast as possible).
Pacing follows the events' receive clock, so a replay at 1x has the recording's
own bursts and gaps. The first configured symbol names the replayed stream.

Real mode (``EXCHANGE_MODE=real``) streams the live venue through ccxt's
websocket client (``ccxt.pro`` bybit v5: ``watch_order_book``/``watch_trades``);
no API key is needed for public market data.

When a finite source ends the collector logs its totals and keeps serving
``/metrics`` until stopped, so the final counts stay scrapeable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

from tidegate.bus.market_messages import MarketMessages
from tidegate.bus.messages import BookMsg, TradeMsg
from tidegate.market.events import MarketEvent
from tidegate.market.frame import MarketFrame, iter_events
from tidegate.services.runtime import ServiceContext, run_service

NAME = "collector"


def load_source(ctx: ServiceContext) -> MarketFrame:
    cfg = ctx.cfg.collector
    path = ctx.resolve(ctx.cfg.data.capture_dir) / cfg.capture_file
    if cfg.source == "capture" or (cfg.source == "auto" and path.is_file()):
        from tidegate.market.capture import read_capture

        if not path.is_file():
            raise FileNotFoundError(f"collector.source=capture but {path} does not exist")
        ctx.log.info("replaying capture %s at speed %s", path, cfg.speed or "max")
        return read_capture(path)
    from tidegate.market.synthetic import generate

    ctx.log.info("replaying synthetic %s market (%.0f s) at speed %s (capture %s absent)", cfg.synthetic_regime,
                 cfg.synthetic_seconds, cfg.speed or "max", path)
    return generate(symbol=ctx.cfg.symbols[0], duration_s=cfg.synthetic_seconds, regime=cfg.synthetic_regime)


def select_events(frame: MarketFrame, *, start_offset_s: float, max_events: int | None) -> Iterator[MarketEvent]:
    start = frame.time_range_ns()[0] + int(start_offset_s * 1e9)
    n = 0
    for ev in iter_events(frame):
        if ev.local_ns < start:
            continue
        yield ev
        n += 1
        if max_events is not None and n >= max_events:
            return


def loop_shift(msg: BookMsg | TradeMsg, offset_ns: int, id_offset: int) -> BookMsg | TradeMsg:
    """A message of a later loop: times *and* update ids moved forward.

    Consumers keep their books across loops and refuse a ticker whose update id is not newer
    than the last one (a venue's rule against stale updates). Without the id shift every ticker
    of the second loop was refused, the consumers' touch froze at the end of the first loop,
    and the features drifted (the demo's drift gate rolled a healthy release back on it)."""
    if isinstance(msg, TradeMsg):
        return msg.model_copy(update={"ts_ns": msg.ts_ns + offset_ns, "recv_ns": msg.recv_ns + offset_ns,
                                      "trade_id": msg.trade_id + id_offset if msg.trade_id >= 0 else -1})
    return msg.model_copy(update={
        "ts_ns": msg.ts_ns + offset_ns, "recv_ns": msg.recv_ns + offset_ns,
        "first_id": msg.first_id + id_offset if msg.first_id >= 0 else msg.first_id,
        "last_id": msg.last_id + id_offset if msg.last_id >= 0 else msg.last_id,
        "prev_id": msg.prev_id + id_offset if msg.prev_id >= 0 else msg.prev_id})


def clearing_message(previous: MarketMessages, ts_ns: int) -> BookMsg:
    """One depth update deleting every level of the previous loop's book, so that every consumer's
    ladder starts the next loop empty, as it started the first (no stale levels of the old loop)."""
    ladder = previous.book.book
    previous.seq += 1
    return BookMsg.model_construct(
        symbol=previous.symbol, kind="depth", ts_ns=ts_ns, recv_ns=ts_ns, seq=previous.seq, first_id=-1,
        last_id=-1, prev_id=-1, bids=[], asks=[], bid_changes=[(p, 0.0) for p in ladder.bids],
        ask_changes=[(p, 0.0) for p in ladder.asks])


async def replay(ctx: ServiceContext, frame: MarketFrame, offset_ns: int = 0, *, id_offset: int = 0,
                 previous: MarketMessages | None = None) -> tuple[dict[str, int], MarketMessages]:
    """Publish the frame once; ``offset_ns``/``id_offset`` move every timestamp and update id forward
    (looped replays keep both monotonic), after a message clearing ``previous``'s book."""
    cfg = ctx.cfg.collector
    assert ctx.bus is not None
    symbol = ctx.cfg.symbols[0]
    conv = MarketMessages(symbol, cfg.book_levels)
    published = ctx.metrics["md_events_published_total"]
    book_subject, trade_subject = ctx.subjects.book(symbol), ctx.subjects.trade(symbol)
    counts = {"book": 0, "trade": 0}
    if previous is not None:
        await ctx.bus.publish(book_subject, clearing_message(previous, frame.time_range_ns()[0] + offset_ns - 1))
        conv.seq = previous.seq
    t0_wall = time.monotonic()
    t0_ev: int | None = None
    for i, ev in enumerate(select_events(frame, start_offset_s=cfg.start_offset_s, max_events=cfg.max_events)):
        if ctx.stop.is_set():
            break
        if t0_ev is None:
            t0_ev = ev.local_ns
        if cfg.speed > 0:
            due = t0_wall + (ev.local_ns - t0_ev) / 1e9 / cfg.speed
            delay = due - time.monotonic()
            if delay > 0.0005:
                await asyncio.sleep(delay)
        elif i % 256 == 0:
            await asyncio.sleep(0)
        msg = conv.convert(ev)
        if msg is None:
            continue
        if offset_ns or id_offset:
            msg = loop_shift(msg, offset_ns, id_offset)
        if isinstance(msg, BookMsg):
            await ctx.bus.publish(book_subject, msg)
            counts["book"] += 1
            published.labels(symbol=symbol, kind="book").inc()
        elif isinstance(msg, TradeMsg):
            await ctx.bus.publish(trade_subject, msg)
            counts["trade"] += 1
            published.labels(symbol=symbol, kind="trade").inc()
    await ctx.bus.nc.flush(timeout=10)
    return counts, conv


def max_update_id(frame: MarketFrame) -> int:
    """The largest update or trade id in the frame (ids of a looped replay start above it)."""
    best = 0
    for ev in iter_events(frame):
        for name in ("last_id", "update_id", "trade_id"):
            best = max(best, int(getattr(ev, name, 0) or 0))
    return best


async def stream_live(ctx: ServiceContext) -> None:
    """Real mode: public order book and trades from bybit v5 through ccxt.pro."""
    import ccxt.pro as ccxtpro

    assert ctx.bus is not None
    ex = ccxtpro.bybit({"options": {"defaultType": "swap"}})
    ex.set_markets(__import__("json").loads(Path(ctx.resolve(ctx.cfg.exchange.markets_file)).read_text()))
    published = ctx.metrics["md_events_published_total"]
    seq = 0

    async def books(symbol: str) -> None:
        nonlocal seq
        market = ex.markets_by_id[symbol][0]["symbol"]
        while not ctx.stop.is_set():
            ob = await ex.watch_order_book(market, limit=50)
            seq += 1
            now = time.time_ns()
            ts = int(ob.get("timestamp") or now // 1_000_000) * 1_000_000
            bids = [(float(p), float(q)) for p, q, *_ in ob["bids"][: ctx.cfg.collector.book_levels]]
            asks = [(float(p), float(q)) for p, q, *_ in ob["asks"][: ctx.cfg.collector.book_levels]]
            msg = BookMsg(symbol=symbol, ts_ns=ts, recv_ns=now, seq=seq, bids=bids, asks=asks,
                          bid_changes=bids, ask_changes=asks)
            assert ctx.bus is not None
            await ctx.bus.publish(ctx.subjects.book(symbol), msg)
            published.labels(symbol=symbol, kind="book").inc()

    async def trades(symbol: str) -> None:
        market = ex.markets_by_id[symbol][0]["symbol"]
        while not ctx.stop.is_set():
            for t in await ex.watch_trades(market):
                now = time.time_ns()
                msg = TradeMsg(symbol=symbol, ts_ns=int(t["timestamp"]) * 1_000_000, recv_ns=now,
                               price=float(t["price"]), qty=float(t["amount"]), aggressor=t["side"])
                assert ctx.bus is not None
                await ctx.bus.publish(ctx.subjects.trade(symbol), msg)
                published.labels(symbol=symbol, kind="trade").inc()

    tasks = [asyncio.create_task(f(s)) for s in ctx.cfg.symbols for f in (books, trades)]
    await ctx.stop.wait()
    for task in tasks:
        task.cancel()
    await ex.close()


async def serve(ctx: ServiceContext) -> None:
    await ctx.connect()
    if ctx.cfg.exchange.mode == "real":
        ctx.ready = True
        await stream_live(ctx)
        return
    frame = load_source(ctx)
    ctx.ready = True
    first_ns, last_ns = frame.time_range_ns()
    span_ns = last_ns - first_ns + 1_000_000_000   # each loop starts 1 s after the previous one ended
    id_span = max_update_id(frame) + 1
    loops = 0
    previous: MarketMessages | None = None
    while True:
        counts, previous = await replay(ctx, frame, offset_ns=loops * span_ns, id_offset=loops * id_span,
                                        previous=previous)
        loops += 1
        ctx.status.update({"published": counts})
        ctx.log.info("replay finished: %d book and %d trade messages published", counts["book"], counts["trade"])
        if not ctx.cfg.collector.loop or ctx.stop.is_set():
            break
    ctx.status["done"] = True
    await ctx.stop.wait()


def main(argv: list[str] | None = None) -> int:
    return run_service(NAME, serve, argv)


if __name__ == "__main__":
    raise SystemExit(main())
