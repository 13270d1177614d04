"""signal_engine: market data → candidate signals with features (``sig.candidates.<symbol>``).

Features come from the ONE feature module (tidegate.features.OnlineFeatures),
fed with the market events rebuilt from the bus messages (``BookMsg.to_event``),
so the vector of a candidate is bit-identical to the training row at the same
event. A candidate pair (buy at the bid, sell at the ask) is emitted at most
every ``signal_engine.min_interval_ms`` of market time per symbol once the book
has a two-sided touch; signal ids (``<symbol>-<recv_ns>-b|s``) are deterministic,
so a replay re-emits the same ids and JetStream de-duplicates them.

Backpressure (the seed's ``sig:candidates`` backlog): every
``backlog_check_interval`` the engine reads the scorer's durable consumer
(pending + unacked). Above ``max_backlog`` it skips candidates, counting
``backpressure_total{symbol}``, and doubles its emission interval; once the
backlog is below half the limit the interval halves back towards the configured one.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from tidegate.bus.consumer import consumer_backlog, subscribe
from tidegate.bus.messages import BookMsg, CandidateMsg, TradeMsg
from tidegate.features import OnlineFeatures, schema_hash
from tidegate.features.formulas import model_matrix
from tidegate.features.schema import PARAMS
from tidegate.services.runtime import ServiceContext, run_service

NAME = "signal_engine"
SCORER_DURABLE = "ai_scorer"
MAX_THROTTLE = 64
SIDES = np.asarray([1, -1], dtype=np.float32)   # a candidate pair: buy at the bid, sell at the ask


def candidate_pair_rows(state: OnlineFeatures) -> list[list[float]]:
    """The feature rows of a (buy, sell) candidate pair: ``state.vector(+1)``, ``state.vector(-1)``, bit for bit.

    One ``model_matrix`` call on two copies of the market row instead of two calls of one row each.
    """
    market = state.market_vector()
    return model_matrix(np.stack([market, market]), SIDES).tolist()  # type: ignore[no-any-return]


class Throttle:
    """Emission-rate control from the measured backlog (pure state, no I/O)."""

    def __init__(self, max_backlog: int):
        self.max_backlog = max_backlog
        self.factor = 1
        self.backlog = 0

    @property
    def over(self) -> bool:
        return self.backlog > self.max_backlog

    def observe(self, backlog: int) -> None:
        self.backlog = backlog
        if backlog > self.max_backlog:
            self.factor = min(MAX_THROTTLE, self.factor * 2)
        elif backlog < self.max_backlog / 2 and self.factor > 1:
            self.factor //= 2


async def serve(ctx: ServiceContext) -> None:
    cfg = ctx.cfg
    bus = await ctx.connect()
    live_hash = schema_hash()
    states = {s: OnlineFeatures() for s in cfg.symbols}
    last_emit: dict[str, int] = {}
    throttle = Throttle(cfg.signal_engine.max_backlog)
    emitted = ctx.metrics["candidates_emitted_total"]
    skipped = ctx.metrics["backpressure_total"]
    backlog_gauge = ctx.metrics["candidate_backlog"]
    interval_ns = int(cfg.signal_engine.min_interval_ms * 1_000_000)
    stream = ctx.subjects.stream("SIGNALS")

    first_seen: dict[str, int] = {}
    warmup_ns = PARAMS.long_ms * 1_000_000   # the longest feature window must be full before scoring

    async def maybe_emit(symbol: str, state: OnlineFeatures, msg: BookMsg) -> None:
        if not state.ready:
            return
        now = msg.recv_ns
        if now - first_seen.setdefault(symbol, now) < warmup_ns:
            return
        if now - last_emit.get(symbol, 0) < interval_ns * throttle.factor:
            return
        last_emit[symbol] = now
        if throttle.over:
            skipped.labels(symbol=symbol).inc(2)
            return
        mid = state.book.mid()
        rows = candidate_pair_rows(state)
        subject = ctx.subjects.candidates(symbol)
        for (side, tag), x in zip((("buy", "b"), ("sell", "s")), rows, strict=True):
            cand = CandidateMsg.model_construct(
                signal_id=f"{symbol}-{now}-{tag}", symbol=symbol, side=side, ts_ns=msg.ts_ns, recv_ns=now,
                emitted_ns=time.time_ns(), price=mid, schema_hash=live_hash, features=x)
            await bus.publish_durable(subject, cand, msg_id=f"candidate:{cand.signal_id}")
        emitted.labels(symbol=symbol).inc(2)

    def make_book_handler(symbol: str):  # type: ignore[no-untyped-def]
        state = states[symbol]

        async def on_book(msg: BookMsg) -> None:
            state.on_event(msg.to_event())
            await maybe_emit(symbol, state, msg)

        return on_book

    def make_trade_handler(symbol: str):  # type: ignore[no-untyped-def]
        state = states[symbol]

        def on_trade(msg: TradeMsg) -> None:
            state.on_event(msg.to_event())

        return on_trade

    for symbol in cfg.symbols:
        await subscribe(bus, ctx.subjects.book(symbol), BookMsg, make_book_handler(symbol), ctx.counters)
        await subscribe(bus, ctx.subjects.trade(symbol), TradeMsg, make_trade_handler(symbol), ctx.counters)
    ctx.ready = True
    ctx.log.info("ready: schema %s..., max backlog %d, %d symbol(s)", live_hash[:12], throttle.max_backlog,
                 len(cfg.symbols))
    was_over = False
    while not await ctx.sleep(cfg.signal_engine.backlog_check_interval):
        try:
            backlog = await consumer_backlog(bus, stream, SCORER_DURABLE)
        except Exception:  # NATS away: keep the last reading
            continue
        throttle.observe(backlog)
        for symbol in cfg.symbols:
            backlog_gauge.labels(symbol=symbol).set(backlog)
        if throttle.over != was_over:
            was_over = throttle.over
            ctx.log.info("backpressure %s: backlog %d (limit %d), emission interval x%d",
                         "ON" if was_over else "OFF", backlog, throttle.max_backlog, throttle.factor)
    await asyncio.sleep(0)


def main(argv: list[str] | None = None) -> int:
    return run_service(NAME, serve, argv)


if __name__ == "__main__":
    raise SystemExit(main())
