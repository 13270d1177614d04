"""EXCHANGE_MODE=real end to end: the executor process trades the canary on the Bybit v5 emulator through ccxt.

Real nats-server, the real executor and risk processes, the emulator (tidegate.venue, the one fake
BRIEF §5 allows) on 127.0.0.1 in this process, real ccxt in the executor. This test plays the
collector and the scorer: it replays a synthetic market into NATS *and* into the emulator (the
venue sees the same market the executor does), and publishes approved signals whose route is the
deterministic routing hash of the rollout state in the KV bucket.

Checked against the emulator's own records (its executions and orders, and ``/_emulator/stats``),
never against the executor's word:

- the canary's orders are on the emulator, the paper ones are not; fills in the FILLS stream with
  venue=real are exactly the emulator's executions (same ids, quantities), and risk's count of
  canary orders with fills equals the emulator's count of finished orders with executions;
- TTL cancels and reduce-only exits happen on the emulator;
- the executor is SIGKILLed mid-run and restarted: no order placed twice (the emulator's order
  count equals the distinct orders the executor announced; a replayed signal is refused as a
  duplicate or skipped), open orders adopted, and at the end no entry rests and the position is
  flat or covered by a resting reduce-only exit;
- neither the key nor the secret appears in any service's log; a wrong secret is one clear error
  and nothing is traded.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from services_harness import Services, metrics, unique_names, write_config

from tidegate.bus.market_messages import MarketMessages
from tidegate.bus.messages import ApprovedMsg, BookMsg, FillMsg, OrderMsg
from tidegate.bus.subjects import Subjects
from tidegate.market.frame import iter_events
from tidegate.market.synthetic import generate
from tidegate.rollout import RolloutState, route
from tidegate.venue import BybitAccount, BybitEmulator, load_instruments

KEY, SECRET = "tgk-7f3a9c51e2d84b60", "tgs-e41b0d22c9f74a3b8d5e6f01"
SYM = "BTCUSDT"
SPEED = 4.0
FRACTION = 0.5
STATE = dict(mode="canary", canary_fraction=FRACTION, rng_seed=1337, active_model_id="m-a",
             candidate_model_id="m-b", tau_entry=0.5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class World:
    """The emulator, the market feed and the signal source, on one event loop in a thread."""

    def __init__(self, nats_url: str, ns: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.nats_url, self.subjects = nats_url, Subjects(ns)
        self.emu = BybitEmulator(BybitAccount(load_instruments(), balance=10_000.0, leverage=10.0,
                                              maker_fee=0.0001, taker_fee=0.0006), keys={KEY: SECRET})
        self.last_book: BookMsg | None = None
        self.paused = False
        self.signals: list[ApprovedMsg] = []
        self.state = RolloutState(**STATE)  # type: ignore[arg-type]
        self.run(self.emu.start("127.0.0.1", 0))
        self.nc: Any = self.run(self._connect())

    async def _connect(self) -> Any:
        import nats

        return await nats.connect(self.nats_url)

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def on_loop(self, fn: Any) -> Any:
        async def call() -> Any:
            return fn()
        return self.run(call())

    async def _market(self, messages: list[Any], stop_at: float) -> None:
        t0_wall, t0_mkt = time.monotonic(), messages[0].recv_ns
        for msg in messages:
            due = t0_wall + (msg.recv_ns - t0_mkt) / 1e9 / SPEED
            if due > stop_at:
                return
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            while self.paused:                         # the market stands still (for venue and executor)
                await asyncio.sleep(0.05)
                t0_wall += 0.05
                stop_at += 0.05
            if isinstance(msg, BookMsg):
                await self.emu.feed_book(msg)          # the venue first: it sees the market no later
                await self.nc.publish(self.subjects.book(SYM), msg.to_bytes())
                self.last_book = msg
            else:
                await self.emu.feed_trade(msg)
                await self.nc.publish(self.subjects.trade(SYM), msg.to_bytes())

    async def _signals(self, start_at: float, stop_at: float, every: float) -> None:
        js = self.nc.jetstream()
        n = 0
        while time.monotonic() < start_at:
            await asyncio.sleep(0.05)
        while time.monotonic() < stop_at:
            book = self.last_book
            if book is not None and book.bids and book.asks:
                side = "buy" if n % 2 == 0 else "sell"
                sid = f"{SYM}-{book.recv_ns}-{side[0]}"
                r = route(self.state, sid)
                sig = ApprovedMsg(signal_id=sid, symbol=SYM, side=side, ts_ns=book.ts_ns, recv_ns=book.recv_ns,  # type: ignore[arg-type]
                                  emitted_ns=time.time_ns(), scored_ns=time.time_ns(),
                                  price=(book.bids[0][0] + book.asks[0][0]) / 2, route=r,
                                  model_id="m-b" if r == "canary" else "m-a", score=0.9, tau_entry=0.5, bucket=0)
                await js.publish(self.subjects.approved(SYM), sig.to_bytes(), headers={"Nats-Msg-Id": sid})
                self.signals.append(sig)
                n += 1
            await asyncio.sleep(every)

    def start_market(self, messages: list[Any], seconds: float) -> Any:
        return asyncio.run_coroutine_threadsafe(self._market(messages, time.monotonic() + seconds), self.loop)

    def start_signals(self, delay: float, seconds: float, every: float = 0.35) -> Any:
        now = time.monotonic()
        return asyncio.run_coroutine_threadsafe(self._signals(now + delay, now + delay + seconds, every), self.loop)

    def republish(self, sig: ApprovedMsg) -> None:
        """The same signal again (a redelivery), under a new message id so JetStream keeps it."""
        async def go() -> None:
            await self.nc.jetstream().publish(self.subjects.approved(SYM), sig.to_bytes(),
                                              headers={"Nats-Msg-Id": f"{sig.signal_id}-again"})
        self.run(go())

    def close(self) -> None:
        self.run(self.nc.close())
        self.run(self.emu.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


async def read_all(url: str, stream: str, subject: str) -> list[bytes]:
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        out: list[bytes] = []
        if not info.state.messages:
            return out
        sub = await js.pull_subscribe(subject, stream=stream, config=ConsumerConfig(
            deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, filter_subject=subject))
        while len(out) < info.state.messages:
            batch = await sub.fetch(1000, timeout=5)
            out += [m.data for m in batch]
        return out
    finally:
        await nc.close()


async def write_rollout(url: str, bucket: str) -> None:
    import nats

    from tidegate.rollout import RolloutKV

    nc = await nats.connect(url)
    try:
        await (await RolloutKV.open(nc.jetstream(), bucket)).put(RolloutState(**STATE))  # type: ignore[arg-type]
    finally:
        await nc.close()


@pytest.fixture
def world(nats_server) -> Iterator[tuple[World, str, str]]:  # type: ignore[no-untyped-def]
    ns, bucket = unique_names("real")
    w = World(nats_server.url, ns)
    yield w, ns, bucket
    w.close()


def market_messages(seconds: float) -> list[Any]:
    conv = MarketMessages(SYM, 10)
    out = [conv.convert(ev) for ev in iter_events(generate(symbol=SYM, duration_s=seconds, seed=11))]
    return [m for m in out if m is not None]


def real_env(w: World) -> dict[str, str]:
    return {"EXCHANGE_MODE": "real", "BYBIT_API_KEY": KEY, "BYBIT_API_SECRET": SECRET,
            "EXCHANGE_REST_URL": w.emu.rest_url, "EXCHANGE_WS_URL": w.emu.ws_url}


def test_canary_trades_on_the_emulator_survives_a_restart_and_keeps_keys_out_of_logs(
        nats_server, world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    w, ns, bucket = world
    asyncio.run(write_rollout(nats_server.url, bucket))
    (tmp_path / "registry").mkdir()
    cfg = write_config(tmp_path / "app.yml", nats_url=nats_server.url, namespace=ns, kv_bucket=bucket,
                       registry_root=tmp_path / "registry", overrides={
                           "exchange": {"mode": "real"},
                           "executor": {"warmup_seconds": 0.0, "fail_safe_cooldown": 5.0, "max_signal_age": 120.0,
                                        "ladder": {"order_ttl": 6.0, "exit_ttl": 10.0},
                                        "sizing": {"notional_cap_usd": 1500.0},
                                        "gates": {"liquidity_by_side": {"enabled": False}}},
                           "risk": {"window_trades": 100_000, "window_orders": 100_000}})
    svc = Services(tmp_path, cfg)
    ports = {"executor": free_port(), "risk": free_port()}
    market = w.start_market(market_messages(200.0), seconds=48.0)
    try:
        svc.start("risk", ports["risk"])
        svc.start("executor", ports["executor"], env=real_env(w))
        svc.wait_healthy(["risk", "executor"], timeout=30)

        acct = w.emu.account
        # phase 1: signals for 14 s; the executor is killed after 12 s, with orders resting. The
        # market is paused while it is down, so what rests at the kill still rests at the restart.
        phase1 = w.start_signals(delay=0.0, seconds=14.0)
        time.sleep(10.0)
        deadline = time.monotonic() + 5.0                 # kill at a moment an order of ours rests
        while time.monotonic() < deadline and not w.on_loop(lambda: acct.stats()["open_orders"]):
            time.sleep(0.02)
        w.paused = True
        svc.procs["executor"].kill()
        signals_at_kill = len(w.signals)
        kill_ns = w.last_book.recv_ns if w.last_book else 0     # market time (paused) at the kill
        links_at_kill = w.on_loop(lambda: {o.link_id for o in acct.orders.values()})
        svc.procs["executor"].wait(5)
        phase1.result(30)
        placed_before = w.on_loop(lambda: len(w.emu.account.orders))
        open_at_kill = w.on_loop(lambda: {o.link_id for o in w.emu.account.orders.values() if not o.final})
        # the kill's worst moment, made certain: an order announced (`new` on ORDERS) whose create
        # was never sent. The restart must end it, or risk keeps it open for ever.
        last_real = [OrderMsg.model_validate_json(b) for b in
                     asyncio.run(read_all(nats_server.url, f"{ns}_ORDERS", f"{ns}.>"))]
        last_real = [o for o in last_real if o.venue == "real" and o.status == "new" and not o.reduce_only]
        ghost = last_real[-1].model_copy(update={"client_order_id": f"{last_real[-1].signal_id}-e7"})

        async def announce() -> None:
            await w.nc.jetstream().publish(w.subjects.orders(SYM), ghost.to_bytes(),
                                           headers={"Nats-Msg-Id": f"{ghost.client_order_id}:new"})
        w.run(announce())

        # phase 2: restart, a replayed signal that was placed before, and more signals
        svc.start("executor", ports["executor"], env=real_env(w), key="executor2")
        svc.wait_healthy(["executor2"], timeout=30)       # reconciled (with the market still paused)
        w.paused = False
        time.sleep(0.5)                                   # books reach the new executor again
        # the newest canary signal placed by the killed process, delivered again: never placed twice
        replayed = next(s for s in reversed(w.signals[:signals_at_kill])
                        if s.route == "canary" and f"{s.signal_id}-e0" in links_at_kill)
        w.republish(replayed)
        phase2 = w.start_signals(delay=0.0, seconds=10.0)
        # the venue goes away for 3 s (same port, state kept; the market still trades on it)
        time.sleep(3.0)
        outage_from = len(w.signals)
        w.run(w.emu.stop())
        time.sleep(3.0)
        outage_signals = {s.signal_id for s in w.signals[outage_from:] if s.route == "canary"}
        w.run(w.emu.start("127.0.0.1", w.emu.port))
        phase2.result(30)
        market.result(60)                                 # the market runs on ~20 s: TTLs, exits
        time.sleep(2.5)                                   # stream and REST catch-up settle
        assert svc.alive("executor2"), svc.log("executor2")[-3000:]
        svc.stop("executor2")

        # -- what the emulator itself recorded ---------------------------------------------------------
        stats = json.loads(urllib.request.urlopen(f"{w.emu.rest_url}/_emulator/stats", timeout=2).read())
        orders = w.on_loop(lambda: {o.link_id: (o.reduce_only, o.status, o.cum_qty, o.qty, o.cancel_type)
                                    for o in acct.orders.values()})
        execs = w.on_loop(lambda: {e.exec_id: (e.order.link_id, e.qty) for e in acct.executions})
        position = w.on_loop(lambda: acct.positions[SYM].size if SYM in acct.positions else 0.0)
        assert stats["executions"] == len(execs) and stats["orders"] == len(orders)

        stream_orders = [OrderMsg.model_validate_json(b) for b in
                         asyncio.run(read_all(nats_server.url, f"{ns}_ORDERS", f"{ns}.>"))]
        stream_fills = [FillMsg.model_validate_json(b) for b in
                        asyncio.run(read_all(nats_server.url, f"{ns}_FILLS", f"{ns}.>"))]
        real_new = {o.client_order_id for o in stream_orders if o.venue == "real" and o.status == "new"}
        paper_new = {o.client_order_id for o in stream_orders if o.venue == "paper" and o.status == "new"}
        real_fills = [f for f in stream_fills if f.venue == "real"]

        # canary to the venue, paper to paper
        assert {o.route for o in stream_orders if o.venue == "real"} == {"canary"}
        assert paper_new and not (paper_new & set(orders)), "a paper order reached the venue"
        assert set(orders) <= real_new | {c for c in orders if c.endswith("-rc-x1")}
        # every real order the executor announced is on the venue exactly once (the venue refuses a
        # second orderLinkId; the count equality says nothing was placed under another id either)
        never_placed = {o.client_order_id for o in stream_orders
                        if o.venue == "real" and o.status == "rejected" and o.reason == "venue_not_placed"}
        refused = {o.client_order_id for o in stream_orders if o.venue == "real" and o.status == "rejected"
                   and o.reason.startswith("venue_")} - never_placed
        announced = {c for c in real_new if "-rc-" not in c} - refused
        on_venue = {c for c in orders if "-rc-" not in c}
        assert on_venue <= announced, on_venue - announced
        # ...and reached it, but for what the killed process announced and had not sent: the
        # restart ended each of those (rejected venue_not_placed), the injected one among them
        lost = announced - on_venue
        assert ghost.client_order_id in lost and lost == never_placed, (lost, never_placed)
        assert all(o.ts_ns <= kill_ns for o in stream_orders if o.client_order_id in lost and o.status == "new"), lost
        assert re.search(rf"never_placed={len(never_placed)}\b", svc.log("executor2")), svc.log("executor2")[-2000:]
        assert f"{replayed.signal_id}-e0" in orders
        # fills: the emulator's executions, one for one
        fill_ids = [f.fill_id for f in real_fills]
        assert len(fill_ids) == len(set(fill_ids)), "a venue execution published twice"
        assert len(real_fills) == len(execs) > 0, (len(real_fills), len(execs))
        assert {f.fill_id for f in real_fills} == {f"{link}-{eid}" for eid, (link, _q) in execs.items()}
        assert {f.route for f in real_fills} == {"canary"}
        # lifecycle on the venue: TTL cancels of entries, reduce-only exits placed and filled
        assert any(not ro and st == "Cancelled" for ro, st, *_ in orders.values()), "no TTL cancel on the venue"
        exits = [v for c, v in orders.items() if v[0]]
        assert exits and any(cum > 0 for _ro, _st, cum, *_ in exits), "no exit filled on the venue"
        # restart: orders resting at the kill adopted; at the end no entry rests, the position is covered
        log2 = svc.log("executor2")
        adopted = int(re.search(r"reconciled: adopted=(\d+),", log2).group(1))  # type: ignore[union-attr]
        assert adopted == len(open_at_kill) >= 1, (adopted, open_at_kill, log2[-3000:])
        replayed_coid = f"{replayed.signal_id}-e0"
        # skipped when an order of its signal (entry or exit) was adopted, else refused as a duplicate
        adopted_signals = {c.rsplit("-", 1)[0] for c in open_at_kill}
        assert replayed.signal_id in adopted_signals or f"{replayed_coid} already placed (110072)" in log2
        resting = [v for v in orders.values() if v[1] in ("New", "PartiallyFilled")]
        assert not [v for v in resting if not v[0]], f"entries still resting: {resting}"
        if abs(position) > 1e-12:
            cover = sum(q - cum for ro, _st, cum, q, _ in resting if ro)
            assert cover + 1e-9 >= abs(position), (position, resting)
        # the outage: fail-safe to paper (canary-hashed signals of the outage traded on paper), then back;
        # no execution of the outage is missing (the fills = executions equality above covers it)
        assert "venue unreachable" in log2 and "fail-safe" in log2 and "venue reachable again" in log2
        assert outage_signals
        failsafe_paper = {o.signal_id for o in stream_orders if o.venue == "paper" and o.signal_id in outage_signals}
        assert failsafe_paper, "no canary signal of the outage went to paper"
        assert not any(o.venue == "real" and o.status == "new" and o.signal_id in outage_signals
                       for o in stream_orders if o.signal_id in failsafe_paper)
        # risk counted the venue's fills: canary orders with fills = the emulator's finished filled orders
        done_filled = sum(1 for c, (ro, st, cum, *_r) in orders.items()
                          if cum > 0 and st in ("Filled", "Cancelled", "PartiallyFilledCanceled"))
        # risk reads the ORDERS stream asynchronously: poll until it has caught up with the last end event
        deadline = time.monotonic() + 30
        m = metrics(ports["risk"])
        while m.get('orders_filled_total{route="canary"}') != done_filled and time.monotonic() < deadline:
            time.sleep(0.2)
            m = metrics(ports["risk"])
        assert m.get('orders_filled_total{route="canary"}') == done_filled, (m.get(
            'orders_filled_total{route="canary"}'), done_filled)
        # ...and the release's canary win-rate gate has samples from the venue's trades
        assert (m.get("sample_canary") or 0) >= 1, {k: v for k, v in m.items() if "sample" in k}
        print(f"\nsample_canary={m.get('sample_canary')} emulator: orders={len(orders)} executions={len(execs)} "
              f"open_at_kill={len(open_at_kill)} "
              f"placed_before_kill={placed_before} adopted={adopted} position={position}; "
              f"stream: real fills={len(real_fills)} fail-safe paper signals={len(failsafe_paper)} "
              f"paper orders={len(paper_new)}; risk canary filled orders={done_filled}")
    finally:
        svc.stop_all()
        # (c) the key and the secret never reach a log
        for path in tmp_path.glob("*.log"):
            text = path.read_text(errors="replace")
            assert KEY not in text and SECRET not in text, f"credentials in {path.name}"


def test_wrong_secret_is_one_clear_error_and_nothing_is_traded(nats_server, world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    w, ns, bucket = world
    (tmp_path / "registry").mkdir()
    cfg = write_config(tmp_path / "app.yml", nats_url=nats_server.url, namespace=ns, kv_bucket=bucket,
                       registry_root=tmp_path / "registry", overrides={"exchange": {"mode": "real"}})
    svc = Services(tmp_path, cfg)
    env = {**real_env(w), "BYBIT_API_SECRET": "wrong-" + SECRET[::-1]}
    svc.start("executor", free_port(), env=env)
    try:
        svc.procs["executor"].wait(30)
        log = svc.log("executor")
        assert svc.procs["executor"].returncode != 0
        assert log.count("refused the API key or secret") == 1, log[-2000:]
        assert KEY not in log and SECRET not in log and env["BYBIT_API_SECRET"] not in log
        assert w.on_loop(lambda: len(w.emu.account.orders)) == 0
    finally:
        svc.stop_all()
