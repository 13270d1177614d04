"""The NATS connection every service holds: reconnect forever, streams declared, no lost publishes.

Why it looks like this:

- ``connect`` never gives up reconnecting (``max_reconnect_attempts=-1``): a
  nats-server restart is an event the services ride out, not a crash. While the
  server is away, core publishes buffer in the client (``pending_size``) and
  market data that overflows is dropped, which is fine for ticks.
- JetStream publishes must not be lost. ``Bus.publish_durable`` sends
  asynchronously (thousands per second), each with a ``Nats-Msg-Id`` header
  derived from the business id (signal id, client order id, fill id). A
  confirmation task waits for the stream's ack and, on timeout or error
  (server down, reconnecting), republishes with the *same* id until acked;
  JetStream's duplicate window drops any copy that had in fact been stored.
- Streams use file storage so that a restarted server still has them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
        self._confirmations: set[asyncio.Task[None]] = set()
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
        task = asyncio.create_task(self._confirm(subject, payload, headers, fut))
        self._confirmations.add(task)
        task.add_done_callback(self._confirmations.discard)

    async def _confirm(self, subject: str, payload: bytes, headers: dict[str, str], fut: Any) -> None:
        if fut is not None:
            try:
                await asyncio.wait_for(fut, timeout=2.0)
                return
            except Exception:  # any failure means "not known to be stored"
                pass
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
        return len(self._confirmations)

    async def flush(self, timeout: float = 30.0) -> None:
        """Wait until every durable publish is acked by its stream."""
        if self._confirmations:
            await asyncio.wait(set(self._confirmations), timeout=timeout)
        with contextlib.suppress(Exception):
            await self.nc.flush(timeout=2)

    async def close(self) -> None:
        await self.flush(timeout=10.0)
        for task in list(self._confirmations):
            task.cancel()
        # drain can wait on a pull subscription's pending request for its whole timeout;
        # everything that matters (durable publishes) is already confirmed, so close.
        with contextlib.suppress(Exception):
            await self.nc.close()
