"""The NATS connection every service holds: reconnect forever, streams declared, no lost publishes.

Why it looks like this:

- ``connect`` never gives up reconnecting (``max_reconnect_attempts=-1``): a
  nats-server restart is an event the services ride out, not a crash. While the
  server is away, core publishes buffer in the client (``pending_size``) and
  market data that overflows is dropped, which is fine for ticks.
- JetStream publishes must not be lost. ``Bus.publish_durable`` sends
  asynchronously (thousands per second), each with a ``Nats-Msg-Id`` header
  derived from the business id (signal id, client order id, fill id). One
  confirmation task per bus checks the stream acks in publish order and, on
  timeout or error (server down, reconnecting), republishes with the *same* id
  until acked; JetStream's duplicate window drops any copy that had in fact
  been stored.
- Streams use file storage so that a restarted server still has them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from tidegate.bus.messages import Message
from tidegate.bus.subjects import Subjects

log = logging.getLogger("tidegate.bus")

STREAM_MAX_AGE_S = 6 * 3600.0
STREAM_MAX_BYTES = 512 * 1024 * 1024
DUPLICATE_WINDOW_S = 120.0


async def connect(url: str, *, name: str, connect_timeout: float = 2.0,
                  on_state: Callable[[str], None] | None = None) -> Client:
    """Connect with unlimited reconnects; ``on_state`` hears "disconnected"/"reconnected"/"closed"."""

    def notify(state: str) -> Callable[[], Awaitable[None]]:
        async def cb() -> None:
            log.info("nats %s (%s)", state, name)
            if on_state:
                on_state(state)
        return cb

    async def on_error(exc: Exception) -> None:
        log.debug("nats error (%s): %s", name, exc)

    return await nats.connect(
        url, name=name, connect_timeout=max(1, round(connect_timeout)), allow_reconnect=True,
        max_reconnect_attempts=-1, reconnect_time_wait=0.25, ping_interval=5, max_outstanding_pings=2,
        disconnected_cb=notify("disconnected"), reconnected_cb=notify("reconnected"),
        closed_cb=notify("closed"), error_cb=on_error, pending_size=16 * 1024 * 1024)


async def ensure_streams(js: JetStreamContext, subjects_: Subjects | None = None) -> None:
    """Declare the JetStream streams of one namespace (idempotent; updates on config drift)."""
    for name, subjects in (subjects_ or Subjects()).streams().items():
        cfg = StreamConfig(name=name, subjects=subjects, storage=StorageType.FILE,
                           retention=RetentionPolicy.LIMITS, max_age=STREAM_MAX_AGE_S,
                           max_bytes=STREAM_MAX_BYTES, duplicate_window=DUPLICATE_WINDOW_S)
        try:
            await js.add_stream(cfg)
        except BadRequestError:
            await js.update_stream(cfg)


class Bus:
    """A service's handle on NATS: core publish, durable publish, and the JetStream context."""

    def __init__(self, nc: Client, *, service: str, subjects: Subjects | None = None):
        self.nc = nc
        self.subjects = subjects or Subjects()
        self.js: JetStreamContext = nc.jetstream(publish_async_max_pending=8192)
        self.service = service
        self._unacked: deque[tuple[str, bytes, dict[str, str], Any]] = deque()
        self._confirmer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._degraded = False
        self.republished = 0

    @classmethod
    async def open(cls, url: str, *, service: str, subjects: Subjects | None = None,
                   connect_timeout: float = 2.0, on_state: Callable[[str], None] | None = None) -> Bus:
        nc = await connect(url, name=service, connect_timeout=connect_timeout, on_state=on_state)
        bus = cls(nc, service=service, subjects=subjects)
        await ensure_streams(bus.js, bus.subjects)
        return bus

    @property
    def connected(self) -> bool:
        return bool(self.nc.is_connected)

    async def publish(self, subject: str, msg: Message | bytes) -> None:
        """Core publish (market data): best effort, buffered across a reconnect."""
        payload = msg if isinstance(msg, bytes) else msg.to_bytes()
        await self.nc.publish(subject, payload)

    async def publish_durable(self, subject: str, msg: Message | bytes, *, msg_id: str) -> None:
        """JetStream publish that is retried with the same id until the stream acks it."""
        payload = msg if isinstance(msg, bytes) else msg.to_bytes()
        headers = {"Nats-Msg-Id": msg_id}
        try:
            fut: Any = await self.js.publish_async(subject, payload, headers=dict(headers), wait_stall=5.0)
        except Exception as exc:  # reconnecting, stalled: fall through to the retry path
            log.debug("async publish of %s failed (%s); retrying synchronously", msg_id, exc)
            fut = None
        # one confirmer task per bus (not one per message: that costs more than the publish)
        self._unacked.append((subject, payload, headers, fut))
        self._wake.set()
        if self._confirmer is None or self._confirmer.done():
            self._confirmer = asyncio.create_task(self._confirm_loop())

    async def _confirm_loop(self) -> None:
        while True:
            while self._unacked:
                subject, payload, headers, fut = self._unacked[0]
                await self._confirm(subject, payload, headers, fut)
                self._unacked.popleft()
            self._degraded = False
            self._wake.clear()
            self._idle.set()
            await self._wake.wait()
            self._idle.clear()

    async def _confirm(self, subject: str, payload: bytes, headers: dict[str, str], fut: Any) -> None:
        """Wait for one stream ack, in publish order; republish with the same id when it is not known.

        After one failure (server away) the following pending acks are not waited for one by
        one: each unacked message is republished synchronously until the queue has caught up,
        so an outage costs one timeout, not one per message.
        """
        if fut is not None:
            if fut.done():
                if not fut.cancelled() and fut.exception() is None:
                    return
            elif not self._degraded:
                try:
                    await asyncio.wait_for(fut, timeout=2.0)
                    return
                except Exception:  # any failure means "not known to be stored"
                    self._degraded = True
        delay = 0.1
        while True:
            try:
                await self.js.publish(subject, payload, timeout=2.0, headers=dict(headers))
                self.republished += 1
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("republish of %s failed: %s", headers["Nats-Msg-Id"], exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    @property
    def unconfirmed(self) -> int:
        return len(self._unacked)

    async def flush(self, timeout: float = 30.0) -> None:
        """Wait until every durable publish is acked by its stream."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._unacked and asyncio.get_running_loop().time() < deadline:
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout=0.05)
        with contextlib.suppress(Exception):
            await self.nc.flush(timeout=2)

    async def close(self) -> None:
        await self.flush(timeout=10.0)
        if self._confirmer is not None:
            self._confirmer.cancel()
        # drain can wait on a pull subscription's pending request for its whole timeout;
        # everything that matters (durable publishes) is already confirmed, so close.
        with contextlib.suppress(Exception):
            await self.nc.close()
