"""executor: approved signals → orders on the paper simulator or the venue; orders and fills on JetStream.

The decisions live in tidegate.execution.engine; this module is the shell:
it feeds market data and the scorer's hold marks (core subscriptions), approved signals (a durable
JetStream consumer, acked only after the resulting orders are handed to the
publisher) and control events (CRIT → fail-safe) into the engine, publishes
what it returns with idempotent ids (client order id / fill id as
``Nats-Msg-Id``), and bumps the engine's counters. The rollout state comes from
the NATS KV watch (tidegate.rollout), so a rollback reaches the executor in
milliseconds without a restart.

Real mode (``EXCHANGE_MODE=real``) needs ``BYBIT_API_KEY``/``BYBIT_API_SECRET``;
without them the service refuses to start. Canary/full orders then go to the
venue through async ccxt (``ccxt.pro.bybit``, at ``EXCHANGE_REST_URL``/``EXCHANGE_WS_URL``
when set), with the same lifecycle as paper: TTL cancels, reduce-only exits on
fills, exit re-quotes, ``tau_hold`` exits; the venue's stream and REST catch-up
feed fills and order updates back (tidegate.services.executor_venue). Everything
else, and everything during a fail-safe, stays on the simulator.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from tidegate.bus.consumer import DurableConsumer, subscribe
from tidegate.bus.control import ControlEvent
from tidegate.bus.messages import ApprovedMsg, BookMsg, HoldMsg, TradeMsg
from tidegate.execution.engine import Decision, ExecutionEngine
from tidegate.execution.venue import (
    VenueError,
    check_venue,
    live_client,
    load_offline_exchange,
    market_rules,
    real_credentials,
    venue_urls_from_env,
)
from tidegate.rollout import config_policy, open_view, route
from tidegate.services.executor_venue import VenueLink
from tidegate.services.runtime import ServiceContext, run_service

NAME = "executor"


async def _publish(ctx: ServiceContext, d: Decision) -> None:
    """Count, log and publish one decision (call under the engine lock: events keep their causal order)."""
    assert ctx.bus is not None
    for name, labels, amount in d.counts:
        metric = ctx.metrics[name]
        (metric.labels(**labels) if labels else metric).inc(amount)
    for line in d.log:
        ctx.log.info(line)
    for o in d.orders:
        await ctx.bus.publish_durable(ctx.subjects.orders(o.symbol), o, msg_id=f"{o.client_order_id}:{o.status}")
    for f in d.fills:
        await ctx.bus.publish_durable(ctx.subjects.fills(f.symbol), f, msg_id=f.fill_id)


async def serve(ctx: ServiceContext) -> None:
    cfg = ctx.cfg
    real = cfg.exchange.mode == "real"
    check_venue(cfg.exchange.venue)
    creds = real_credentials() if real else None
    ex = load_offline_exchange(ctx.resolve(cfg.exchange.markets_file))
    rules = {s: market_rules(ex, s) for s in cfg.symbols}
    bus = await ctx.connect()
    view = await open_view(bus.nc, cfg.nats.kv_bucket, policy=config_policy(cfg.rollout),
                           on_change=lambda old, new: ctx.log.info(
                               "rollout state: mode=%s fraction=%.2f active=%s candidate=%s", new.mode,
                               new.canary_fraction, new.active_model_id, new.candidate_model_id))
    engine = ExecutionEngine(cfg, rules, started_wall=time.monotonic(), real_mode=real,
                             route_of=lambda sid: route(view.state, sid))
    ctx.log.info("warm-up %.0fs; simulator queue=%s latency=%s", cfg.executor.warmup_seconds,
                 cfg.executor.simulator.queue_model, cfg.executor.simulator.latency_model)

    # Market data, signals and control events arrive on separate coroutines; publishing awaits.
    # Without this lock a fill decided on a book update could reach the ORDERS/FILLS streams
    # before the "new" order it fills, so every decide-and-publish holds it.
    lock = asyncio.Lock()
    link: VenueLink | None = None
    if real:
        assert creds is not None
        link = VenueLink(ctx, engine, live_client(ctx.resolve(cfg.exchange.markets_file), creds,
                                                  urls=venue_urls_from_env()),
                         rules, lock, lambda d: _publish(ctx, d), lambda sid: route(view.state, sid))
        try:
            await link.check_keys()
        except VenueError as exc:     # one clear line (redacted), no traceback; nothing was placed
            ctx.log.error("%s", exc)
            await link.close()
            raise SystemExit(2) from None

    async def handle(d: Decision) -> None:
        """Publish a decision; in real mode also carry out its venue orders and cancels."""
        if link is not None:
            await link.execute(d)
        else:
            await _publish(ctx, d)

    async def on_book(msg: BookMsg) -> None:
        async with lock:
            await handle(engine.on_book(msg))

    async def on_trade(msg: TradeMsg) -> None:
        async with lock:
            await handle(engine.on_trade(msg))

    async def on_approved(batch: Sequence[ApprovedMsg]) -> None:
        now = time.monotonic()
        for sig in batch:
            async with lock:
                await handle(engine.on_approved(sig, now))

    async def on_hold(msg: HoldMsg) -> None:
        async with lock:
            await handle(engine.on_hold(msg))

    async def on_control(batch: Sequence[ControlEvent]) -> None:
        for ev in batch:
            if ev.kind == "CRIT" or ev.severity == "CRIT":
                ctx.log.warning("control: CRIT %s%s (%s)", ev.reason, f": {ev.detail}" if ev.detail else "",
                                ev.event_id or "no id")
                async with lock:
                    await handle(engine.trip_fail_safe(ev.reason, time.monotonic()))
            elif ev.kind == "MODE_SWITCH":
                ctx.log.info("control: MODE_SWITCH %s -> %s (%s)", ev.from_mode, ev.to_mode, ev.reason)

    for symbol in cfg.symbols:
        await subscribe(bus, ctx.subjects.book(symbol), BookMsg, on_book, ctx.counters)
        await subscribe(bus, ctx.subjects.trade(symbol), TradeMsg, on_trade, ctx.counters)
        await subscribe(bus, ctx.subjects.hold(symbol), HoldMsg, on_hold, ctx.counters)
    if link is not None:
        # restart reconciliation wants the touch (a position's exit is quoted there, events are stamped
        # with market time): wait briefly for first books; without them the poll covers the position later
        deadline = time.monotonic() + 2.0
        while any(s not in engine.books for s in cfg.symbols) and time.monotonic() < deadline \
                and not ctx.stop.is_set():
            await asyncio.sleep(0.05)
        await link.reconcile()
        link.start()
    approved = DurableConsumer(bus, stream=ctx.subjects.stream("SIGNALS"), durable="executor",
                               subject=ctx.subjects.approved("*"), schema=ApprovedMsg, handler=on_approved,
                               counters=ctx.counters, batch=64)
    control = DurableConsumer(bus, stream=ctx.subjects.stream("CONTROL"), durable="executor_control",
                              subject=ctx.subjects.control, schema=ControlEvent, handler=on_control,
                              counters=ctx.counters, batch=16)
    tasks = [asyncio.create_task(approved.run(ctx.stop)), asyncio.create_task(control.run(ctx.stop))]
    ctx.ready = True
    ctx.log.info("ready: %d symbol(s), %s mode", len(cfg.symbols), cfg.exchange.mode)
    await ctx.stop.wait()
    await asyncio.gather(*tasks, return_exceptions=True)
    if link is not None:
        await link.close()
    await view.stop()


def main(argv: list[str] | None = None) -> int:
    return run_service(NAME, serve, argv)


if __name__ == "__main__":
    raise SystemExit(main())
