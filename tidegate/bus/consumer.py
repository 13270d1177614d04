"""Consumers that validate every message, count and drop the malformed ones, and survive restarts.

Two shapes:

- ``subscribe``: a core subscription (market data). Each message is decoded
  with its schema; a malformed one increments ``bad_message_total{service,subject}``,
  is logged once per subject, and is dropped. The handler never sees it.
- ``DurableConsumer``: a JetStream pull consumer with a durable name. Messages
  are fetched in batches, decoded, handed to the handler as a list, and acked
  only *after* the handler returns, so a crash or a server restart redelivers
  rather than loses. Malformed messages are terminated (``term``: never
  redelivered) and counted. Fetch errors while the server is away are waited
  out; the durable consumer lives in the server's file store and resumes where
  it stopped. Acks are fire-and-forget, so acks sent while the server was going
  away are lost and those messages come back after ``ack_wait``: delivery is
  at-least-once, and every handler is idempotent (ids are business ids,
  republished with the same ``Nats-Msg-Id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from tidegate.bus.connection import Bus
from tidegate.bus.messages import MalformedMessage, Message, decode

log = logging.getLogger("tidegate.bus")

M = TypeVar("M", bound=Message)


class MessageCounters:
    """The two counters every consumer keeps; built from the service's catalogue metrics."""

    def __init__(self, service: str, metrics: dict[str, Any]):
        self.service = service
        self._bad = metrics["bad_message_total"]
        self._ok = metrics["messages_processed_total"]
        self._warned: set[str] = set()

    def bad(self, subject: str, why: str) -> None:
        self._bad.labels(service=self.service, subject=subject).inc()
        if subject not in self._warned:
            self._warned.add(subject)
            log.warning("malformed message on %s dropped: %s (further ones counted silently)", subject, why)

    def ok(self, subject: str, n: int = 1) -> None:
        self._ok.labels(service=self.service, subject=subject).inc(n)


async def subscribe(bus: Bus, subject: str, schema: type[M], handler: Callable[[M], Any],
                    counters: MessageCounters) -> Subscription:
    """Core subscription delivering validated messages to ``handler`` (sync or async)."""
    is_async = inspect.iscoroutinefunction(handler)

    async def on_msg(msg: Msg) -> None:
        try:
            obj = decode(schema, msg.data)
        except MalformedMessage as exc:
            counters.bad(msg.subject, str(exc))
            return
        try:
            if is_async:
                await handler(obj)
            else:
                handler(obj)
        except Exception:
            log.exception("handler failed on %s", msg.subject)
            return
        counters.ok(msg.subject)

    return await bus.nc.subscribe(subject, cb=on_msg, pending_msgs_limit=1_000_000,
                                  pending_bytes_limit=512 * 1024 * 1024)


class DurableConsumer(Generic[M]):
    """A durable JetStream pull consumer feeding validated batches to a handler."""

    def __init__(self, bus: Bus, *, stream: str, durable: str, subject: str, schema: type[M],
                 handler: Callable[[Sequence[M]], Awaitable[None]], counters: MessageCounters,
                 batch: int = 256, max_ack_pending: int = 100_000, deliver_new: bool = True,
                 ack_wait: float = 10.0):
        self.bus = bus
        self.stream = stream
        self.durable = durable
        self.subject = subject
        self.schema = schema
        self.handler = handler
        self.counters = counters
        self.batch = batch
        self.max_ack_pending = max_ack_pending
        self.deliver_new = deliver_new
        self.ack_wait = ack_wait
        self._sub: Any = None

    async def _bind(self) -> None:
        cfg = ConsumerConfig(durable_name=self.durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=self.ack_wait,
                             max_ack_pending=self.max_ack_pending, filter_subject=self.subject,
                             deliver_policy=DeliverPolicy.NEW if self.deliver_new else DeliverPolicy.ALL)
        self._sub = await self.bus.js.pull_subscribe(self.subject, durable=self.durable, stream=self.stream,
                                                     config=cfg)

    async def pending(self) -> int:
        """Messages in the stream not yet acked by this consumer (the backlog)."""
        return await consumer_backlog(self.bus, self.stream, self.durable)

    async def run(self, stop: asyncio.Event) -> None:
        await self._bind()
        while not stop.is_set():
            try:
                msgs = await self._sub.fetch(self.batch, timeout=0.25)
            except TimeoutError:
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # server away / reconnecting
                log.debug("fetch on %s failed (%s); retrying", self.durable, exc)
                await asyncio.sleep(0.2)
                continue
            await self._deliver(msgs)

    async def _deliver(self, msgs: list[Msg]) -> None:
        good: list[M] = []
        good_msgs: list[Msg] = []
        for msg in msgs:
            try:
                good.append(decode(self.schema, msg.data))
                good_msgs.append(msg)
            except MalformedMessage as exc:
                self.counters.bad(msg.subject, str(exc))
                with contextlib.suppress(Exception):
                    await msg.term()
        if good:
            try:
                await self.handler(good)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("handler failed on a batch of %d from %s; will be redelivered", len(good),
                              self.durable)
                for msg in good_msgs:
                    with contextlib.suppress(Exception):
                        await msg.nak(delay=0.5)
                return
            by_subject: dict[str, int] = {}
            for msg in good_msgs:
                by_subject[msg.subject] = by_subject.get(msg.subject, 0) + 1
            # fire-and-forget acks (one publish each, no round trip): an ack lost in a restart means
            # the message comes back after ack_wait, and every handler is idempotent
            for msg in good_msgs:
                with contextlib.suppress(Exception):
                    await msg.ack()
            for subj, n in by_subject.items():
                self.counters.ok(subj, n)


async def consumer_backlog(bus: Bus, stream: str, durable: str) -> int:
    """num_pending + num_ack_pending of a durable consumer; 0 when it does not exist yet."""
    try:
        info = await bus.js.consumer_info(stream, durable, timeout=1.0)
    except NotFoundError:
        return 0
    return int(info.num_pending or 0) + int(info.num_ack_pending or 0)
