"""The bus against a real nats-server: schemas, malformed messages, durable consumers across a restart."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from prometheus_client import CollectorRegistry

from tidegate import metrics as catalogue
from tidegate.bus.connection import Bus
from tidegate.bus.consumer import DurableConsumer, MessageCounters, consumer_backlog, subscribe
from tidegate.bus.messages import (
    CandidateMsg,
    MalformedMessage,
    ShadowBatchMsg,
    ShadowMsg,
    TradeMsg,
    decode,
    shadow_decisions,
)
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


def test_shadow_batch_record_expands_to_per_candidate_decisions_and_v1_still_decodes():
    batch = ShadowBatchMsg(symbol="BTCUSDT", model_id="m-b", live_model_id="m-a", tau_entry=0.6,
                           signal_ids=["s1", "s2"], ts_ns=[1, 2], scores=[0.7, 0.2], approved=[True, False],
                           live_scores=[0.5, 0.4])
    got = shadow_decisions(batch.to_bytes())
    assert [(d.signal_id, d.ts_ns, d.score, d.approved, d.live_score) for d in got] == \
        [("s1", 1, 0.7, True, 0.5), ("s2", 2, 0.2, False, 0.4)]
    assert {(d.model_id, d.live_model_id, d.symbol) for d in got} == {("m-b", "m-a", "BTCUSDT")}
    v1 = ShadowMsg(signal_id="s0", symbol="BTCUSDT", ts_ns=0, model_id="m-b", score=0.1, approved=False,
                   live_model_id="m-a", live_score=0.3)
    assert shadow_decisions(v1.to_bytes()) == [v1]
    ragged = batch.model_dump() | {"scores": [0.7]}
    with pytest.raises(MalformedMessage, match="scores has 1 entries, signal_ids has 2"):
        shadow_decisions(json.dumps(ragged).encode())
    with pytest.raises(MalformedMessage, match=r"ShadowBatchMsg\.scores\.1"):
        shadow_decisions(json.dumps(batch.model_dump() | {"scores": [0.7, 1.5]}).encode())


def test_durable_publish_refused_by_the_server_is_sent_again_until_a_stream_stores_it(nats_server):
    ns = Subjects(f"p{uuid.uuid4().hex[:8]}")
    subject = f"{ns.namespace}.nostream.x"      # no stream captures it yet: the server answers 503

    async def scenario() -> tuple[int, int, int, int]:
        bus = await Bus.open(nats_server.url, service="test", subjects=ns)
        await bus.publish_durable(subject, b"payload", msg_id="m1")
        await asyncio.sleep(0.8)
        waiting, resent = bus.unconfirmed, bus.republished
        await bus.js.add_stream(name=f"{ns.namespace}_LATE", subjects=[subject])
        await bus.flush(timeout=10)
        stored = (await bus.js.stream_info(f"{ns.namespace}_LATE")).state.messages
        await bus.js.delete_stream(f"{ns.namespace}_LATE")
        left = bus.unconfirmed
        await bus.close()
        return waiting, resent, stored, left

    waiting, resent, stored, left = asyncio.run(scenario())
    assert waiting == 1 and resent >= 1     # not lost while refused: kept and sent again
    assert stored == 1 and left == 0        # stored exactly once (same Nats-Msg-Id), then confirmed


def run_consumer(url: str, ns: Subjects, c: MessageCounters, handler: Any, n: int, *, durable: str = "ai_scorer",
                 explicit: bool = False) -> tuple[int, AckPolicy]:
    """Publish ``n`` candidates and a malformed one through a DurableConsumer; (backlog at the end, ack policy)."""

    async def scenario() -> tuple[int, AckPolicy]:
        bus = await Bus.open(url, service="test", subjects=ns)
        if explicit:  # a durable left by an older deployment: per-message acks
            await bus.js.add_consumer(ns.stream("SIGNALS"), config=ConsumerConfig(
                durable_name=durable, ack_policy=AckPolicy.EXPLICIT, filter_subject=ns.candidates("*"),
                deliver_policy=DeliverPolicy.NEW))
        stop = asyncio.Event()
        consumer = DurableConsumer(bus, stream=ns.stream("SIGNALS"), durable=durable, subject=ns.candidates("*"),
                                   schema=CandidateMsg, handler=handler, counters=c, batch=16, ack_wait=2.0)
        task = asyncio.create_task(consumer.run(stop))
        for _ in range(100):  # it delivers new messages only: publish once it exists
            try:
                await bus.js.consumer_info(ns.stream("SIGNALS"), durable)
                break
            except NotFoundError:
                await asyncio.sleep(0.05)
        for i in range(n):
            await bus.publish_durable(ns.candidates("BTCUSDT"), candidate(i), msg_id=f"s{i}")
            if i == n // 2:
                await bus.publish_durable(ns.candidates("BTCUSDT"), b"{broken", msg_id="broken")
        await bus.flush()
        backlog = -1
        for _ in range(100):
            backlog = await consumer_backlog(bus, ns.stream("SIGNALS"), durable)
            if backlog == 0:
                break
            await asyncio.sleep(0.1)
        info = await bus.js.consumer_info(ns.stream("SIGNALS"), durable)
        stop.set()
        await task
        await bus.close()
        return backlog, info.config.ack_policy

    return asyncio.run(scenario())


@pytest.mark.parametrize("explicit", [False, True], ids=["new durable: ack all", "existing durable: explicit"])
def test_durable_consumer_acks_every_batch_with_either_ack_policy(nats_server, explicit):
    c, reg = counters()
    ns = Subjects(f"a{uuid.uuid4().hex[:8]}")
    seen: list[str] = []

    async def handler(batch):  # type: ignore[no-untyped-def]
        seen.extend(m.signal_id for m in batch)

    backlog, policy = run_consumer(nats_server.url, ns, c, handler, 100, explicit=explicit)
    assert policy == (AckPolicy.EXPLICIT if explicit else AckPolicy.ALL)
    assert seen == [f"s{i}" for i in range(100)]                 # in order, each once
    assert backlog == 0                                            # the malformed one acked (or termed) too
    labels = {"service": "test", "subject": ns.candidates("BTCUSDT")}
    assert reg.get_sample_value("bad_message_total", labels) == 1
    assert reg.get_sample_value("messages_processed_total", labels) == 100


def test_a_failing_handler_is_retried_in_place_and_nothing_is_skipped(nats_server):
    c, _ = counters()
    ns = Subjects(f"f{uuid.uuid4().hex[:8]}")
    seen: list[str] = []
    failures = [0]

    async def handler(batch):  # type: ignore[no-untyped-def]
        if any(m.signal_id == "s30" for m in batch) and failures[0] < 2:
            failures[0] += 1
            raise RuntimeError("downstream not ready")
        seen.extend(m.signal_id for m in batch if m.signal_id not in seen)  # idempotent, as every handler

    backlog, _ = run_consumer(nats_server.url, ns, c, handler, 60)
    assert failures[0] == 2
    assert seen == [f"s{i}" for i in range(60)] and backlog == 0
