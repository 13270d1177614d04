"""The bus against a real nats-server: schemas, malformed messages, durable consumers across a restart."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from prometheus_client import CollectorRegistry

from tidegate import metrics as catalogue
from tidegate.bus.connection import Bus
from tidegate.bus.consumer import DurableConsumer, MessageCounters, consumer_backlog, subscribe
from tidegate.bus.messages import CandidateMsg, MalformedMessage, TradeMsg, decode
from tidegate.bus.subjects import Subjects


def candidate(i: int) -> CandidateMsg:
    return CandidateMsg(signal_id=f"s{i}", symbol="BTCUSDT", side="buy", ts_ns=i, recv_ns=i, emitted_ns=i,
                        price=100.0, schema_hash="h", features=[0.0, 1.0])


def counters() -> tuple[MessageCounters, CollectorRegistry]:
    reg = CollectorRegistry()
    return MessageCounters("test", catalogue.build(reg, "test")), reg


def test_decode_names_the_failing_field():
    with pytest.raises(MalformedMessage, match=r"TradeMsg\.qty"):
        decode(TradeMsg, b'{"symbol":"X","ts_ns":1,"recv_ns":1,"price":1.0,"qty":-1,"aggressor":"buy"}')
    with pytest.raises(MalformedMessage, match=r"TradeMsg\.v"):
        decode(TradeMsg, b'{"v":2,"symbol":"X","ts_ns":1,"recv_ns":1,"price":1.0,"qty":1,"aggressor":"buy"}')
    with pytest.raises(MalformedMessage):
        decode(TradeMsg, b"not json")


def test_subjects_namespace_isolates_streams():
    s = Subjects("t1")
    assert s.book("BTCUSDT") == "t1.md.book.BTCUSDT"
    assert s.streams()["t1_SIGNALS"] == ["t1.sig.candidates.>", "t1.sig.approved.>", "t1.sig.shadow.>"]
    assert Subjects().control == "control.events"
    with pytest.raises(ValueError, match="namespace"):
        Subjects("a.b")


def test_malformed_core_message_is_counted_and_dropped_and_the_good_ones_flow(nats_server):
    c, reg = counters()
    ns = Subjects(f"b{uuid.uuid4().hex[:8]}")

    async def scenario() -> list[TradeMsg]:
        bus = await Bus.open(nats_server.url, service="test", subjects=ns)
        got: list[TradeMsg] = []
        await subscribe(bus, ns.trade("BTCUSDT"), TradeMsg, got.append, c)
        good = TradeMsg(symbol="BTCUSDT", ts_ns=1, recv_ns=1, price=1.0, qty=2.0, aggressor="sell")
        await bus.publish(ns.trade("BTCUSDT"), good)
        await bus.publish(ns.trade("BTCUSDT"), b'{"garbage": true}')
        await bus.publish(ns.trade("BTCUSDT"), good)
        await bus.nc.flush()
        for _ in range(50):
            if len(got) == 2:
                break
            await asyncio.sleep(0.02)
        await bus.close()
        return got

    got = asyncio.run(scenario())
    assert len(got) == 2
    labels = {"service": "test", "subject": ns.trade("BTCUSDT")}
    assert reg.get_sample_value("bad_message_total", labels) == 1.0
    assert reg.get_sample_value("messages_processed_total", labels) == 2.0


@pytest.mark.real
def test_durable_consumer_loses_nothing_across_a_nats_restart(nats_server):
    c, reg = counters()
    ns = Subjects(f"r{uuid.uuid4().hex[:8]}")
    n_before, n_during, n_after = 200, 100, 200

    async def scenario() -> tuple[list[str], int]:
        consumer_bus = await Bus.open(nats_server.url, service="test", subjects=ns)
        producer = await Bus.open(nats_server.url, service="producer", subjects=ns)
        seen: list[str] = []

        async def handler(batch):  # type: ignore[no-untyped-def]
            seen.extend(m.signal_id for m in batch)

        stop = asyncio.Event()
        consumer = DurableConsumer(consumer_bus, stream=ns.stream("SIGNALS"), durable="ai_scorer",
                                   subject=ns.candidates("*"), schema=CandidateMsg, handler=handler, counters=c,
                                   batch=32, ack_wait=2.0)
        task = asyncio.create_task(consumer.run(stop))
        await asyncio.sleep(0.3)
        for i in range(n_before):
            await producer.publish_durable(ns.candidates("BTCUSDT"), candidate(i), msg_id=f"s{i}")
        await producer.publish_durable(ns.candidates("BTCUSDT"), b"{broken", msg_id="broken")
        await producer.flush()
        await asyncio.to_thread(nats_server.restart, 0.5)           # the server goes away and comes back
        for i in range(n_before, n_before + n_during):              # published while clients reconnect
            await producer.publish_durable(ns.candidates("BTCUSDT"), candidate(i), msg_id=f"s{i}")
        for i in range(n_before + n_during, n_before + n_during + n_after):
            await producer.publish_durable(ns.candidates("BTCUSDT"), candidate(i), msg_id=f"s{i}")
        await producer.flush(timeout=60)
        total = n_before + n_during + n_after
        for _ in range(300):
            if len(set(seen)) >= total:
                break
            await asyncio.sleep(0.1)
        backlog = 0
        for _ in range(100):
            backlog = await consumer_backlog(consumer_bus, ns.stream("SIGNALS"), "ai_scorer")
            if backlog == 0:
                break
            await asyncio.sleep(0.1)
        stop.set()
        await task
        await producer.close()
        await consumer_bus.close()
        return seen, backlog

    seen, backlog = asyncio.run(scenario())
    assert set(seen) == {f"s{i}" for i in range(500)}          # nothing lost
    assert backlog == 0                                          # every message acked (redelivered ones too)
    assert reg.get_sample_value("bad_message_total", {"service": "test", "subject": ns.candidates("BTCUSDT")}) == 1
