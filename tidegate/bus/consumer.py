"""Consumers that validate every message, count and drop the malformed ones, and survive restarts.

Two shapes:

- ``subscribe``: a core subscription (market data). Each message is decoded
  with its schema; a malformed one increments ``bad_message_total{service,subject}``,
  is logged once per subject, and is dropped. The handler never sees it.
- ``DurableConsumer``: a JetStream pull consumer with a durable name. Messages
  flow in continuously (tidegate.bus.pull: pull requests stay outstanding);
  whatever has arrived, up to a batch, is decoded, handed to the handler as a
  list, and acked
  only *after* the handler returns, so a crash or a server restart redelivers
  rather than loses. A handler that raises is retried in place (backing off)
  until it succeeds or the service stops, so a batch is never skipped.
  Malformed messages are counted and never handed to the handler. Fetch errors
  while the server is away are waited out; the durable consumer lives in the
  server's file store and resumes where it stopped.

  Acks: a consumer created here uses ``AckPolicy.ALL``: one ack of the last
  message of a batch acknowledges every message up to its stream sequence,
  malformed messages included (one ack publish per batch instead of one per
  message). That is sound because this consumer handles its batches one at a
  time, in delivery order, and acks a batch only after handling all of it:
  every message at or below the acked sequence that was ever delivered to it
  has been handled. (A redelivered message can precede newer ones in a batch;
  if the last message is such an older one, the newer ones stay unacked and
  come back once more after ``ack_wait``, which idempotent handlers absorb.)
  A durable that already exists with ``AckPolicy.EXPLICIT`` (an older
  deployment: the ack policy of a consumer cannot be changed) keeps working,
  acking each message and terminating (``term``) each malformed one.
  Acks are fire-and-forget, so acks sent while the server was going away are
  lost and those messages come back after ``ack_wait``: delivery is
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
from tidegate.bus.pull import PullFeed

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
        self.ack_all = True

    def _config(self) -> ConsumerConfig:
        return ConsumerConfig(durable_name=self.durable, ack_policy=AckPolicy.ALL, ack_wait=self.ack_wait,
                              max_ack_pending=self.max_ack_pending, filter_subject=self.subject,
                              deliver_policy=DeliverPolicy.NEW if self.deliver_new else DeliverPolicy.ALL)

    async def _bind(self) -> None:
        """Create the durable if it does not exist; an existing one keeps its config (and ack policy)."""
        try:
            info = await self.bus.js.consumer_info(self.stream, self.durable)
        except NotFoundError:
            info = await self.bus.js.add_consumer(self.stream, config=self._config())
        self.ack_all = info.config.ack_policy == AckPolicy.ALL

    async def pending(self) -> int:
        """Messages in the stream not yet acked by this consumer (the backlog)."""
        return await consumer_backlog(self.bus, self.stream, self.durable)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._bind()
                break
            except Exception as exc:  # server away at start-up
                log.debug("binding %s failed (%s); retrying", self.durable, exc)
                await asyncio.sleep(0.2)
        feed = PullFeed(self.bus.nc, stream=self.stream, durable=self.durable, batch=self.batch)
        await feed.start()
        try:
            while not stop.is_set():
                try:
                    if feed.consumer_gone:  # deleted under us (by an operator): create it again
                        feed.consumer_gone = False
                        await self._bind()
                    await feed.top_up()
                except Exception as exc:  # server away / reconnecting
                    log.debug("pull request on %s failed (%s); retrying", self.durable, exc)
                    await asyncio.sleep(0.2)
                    continue
                await feed.wait(0.25)
                msgs = feed.take(self.batch)
                if msgs:
                    await self._deliver(msgs, stop)
        finally:
            await feed.stop()

    async def _deliver(self, msgs: list[Msg], stop: asyncio.Event) -> None:
        good: list[M] = []
        by_subject: dict[str, int] = {}
        for msg in msgs:
            try:
                good.append(decode(self.schema, msg.data))
                by_subject[msg.subject] = by_subject.get(msg.subject, 0) + 1
            except MalformedMessage as exc:
                self.counters.bad(msg.subject, str(exc))
                if not self.ack_all:  # with AckPolicy.ALL the batch's ack covers it (a term would ack too early)
                    with contextlib.suppress(Exception):
                        await msg.term()
        if good and not await self._handle(good, stop):
            return  # stopping: nothing acked, the batch is redelivered to the next run
        # fire-and-forget acks (no round trip): an ack lost in a restart means the messages come back
        # after ack_wait, and every handler is idempotent
        with contextlib.suppress(Exception):
            if self.ack_all:
                await msgs[-1].ack()
            else:
                for msg in msgs:
                    if not msg.is_acked:
                        await msg.ack()
        for subj, n in by_subject.items():
            self.counters.ok(subj, n)

    async def _handle(self, good: list[M], stop: asyncio.Event) -> bool:
        """Run the handler until it succeeds (True) or the service stops (False)."""
        delay = 0.5
        while True:
            try:
                await self.handler(good)
                return True
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("handler failed on a batch of %d from %s; retrying in %.1fs", len(good), self.durable,
                              delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            if stop.is_set():
                return False
            delay = min(delay * 2, 5.0)


async def consumer_backlog(bus: Bus, stream: str, durable: str) -> int:
    """num_pending + num_ack_pending of a durable consumer; 0 when it does not exist yet."""
    try:
        info = await bus.js.consumer_info(stream, durable, timeout=1.0)
    except NotFoundError:
        return 0
    return int(info.num_pending or 0) + int(info.num_ack_pending or 0)
