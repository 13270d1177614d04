"""The NATS connection every service holds: reconnect forever, streams declared, no lost publishes.

Why it looks like this:

- ``connect`` never gives up reconnecting (``max_reconnect_attempts=-1``): a
  nats-server restart is an event the services ride out, not a crash. While the
  server is away, core publishes buffer in the client (``pending_size``) and
  market data that overflows is dropped, which is fine for ticks.
- JetStream publishes must not be lost. ``Bus.publish_durable`` sends
  asynchronously (thousands per second), each with a ``Nats-Msg-Id`` header
  derived from the business id (signal id, client order id, fill id). The
  stream's ack comes back on one wildcard inbox per bus, addressed by a
  per-publish sequence number (``<inbox>.<seq>``), and simply removes the
  message from the in-flight table: no future, task or timer per message, and
  no await between consecutive publishes, so the publishes of one batch leave
  in one socket write (nats-py's ``publish_async`` awaits a semaphore through
  ``wait_for`` on every call, which costs a loop iteration, hence a write
  syscall, per message). A sweeper task republishes, with the *same* id, every
  message whose ack has not come within ``ACK_TIMEOUT_S`` or came back as an
  error (server down, reconnecting, stream not ready); JetStream's duplicate
  window drops any copy that had in fact been stored.
- Streams use file storage so that a restarted server still has them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from tidegate.bus.messages import Message
from tidegate.bus.subjects import Subjects

log = logging.getLogger("tidegate.bus")

STREAM_MAX_AGE_S = 6 * 3600.0
STREAM_MAX_BYTES = 512 * 1024 * 1024
DUPLICATE_WINDOW_S = 120.0
ACK_TIMEOUT_S = 2.0          # a durable publish not acked by then is sent again (same Nats-Msg-Id)
SWEEP_INTERVAL_S = 0.25      # how often the sweeper looks for overdue acks while some are in flight
MAX_IN_FLIGHT = 8192         # publish_durable waits for acks beyond this many unconfirmed messages


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


@dataclass
class _Unconfirmed:
    subject: str
    payload: bytes
    msg_id: str
    sent: float   # event-loop time of the last send


class Bus:
    """A service's handle on NATS: core publish, durable publish, and the JetStream context."""

    def __init__(self, nc: Client, *, service: str, subjects: Subjects | None = None):
        self.nc = nc
        self.subjects = subjects or Subjects()
        self.js: JetStreamContext = nc.jetstream()
        self.service = service
        self._in_flight: dict[int, _Unconfirmed] = {}   # publish seq -> message, oldest send first
        self._retry: list[_Unconfirmed] = []            # acked with an error, or not sendable: send again
        self._seq = 0
        self._ack_prefix = ""
        self._ack_sub: Subscription | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._room = asyncio.Event()
        self._room.set()
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
        """JetStream publish that is sent again with the same id until the stream acks it.

        Returns once the message is handed to the client (it does not wait for the ack);
        ``flush`` waits for every ack. Waits only when ``MAX_IN_FLIGHT`` messages are unconfirmed.
        """
        if self._ack_sub is None:
            await self._start()
        if len(self._in_flight) >= MAX_IN_FLIGHT:
            self._room.clear()
            await self._room.wait()
        payload = msg if isinstance(msg, bytes) else msg.to_bytes()
        await self._send(_Unconfirmed(subject, payload, msg_id, 0.0))

    async def read_recent(self, stream: str, subject: str, seconds: float, *, batch: int = 1000,
                          timeout: float = 5.0) -> list[bytes]:
        """What ``stream`` stored on ``subject`` in the last ``seconds``, oldest first.

        For a restart that must know what it said before it died: the stream is the record
        (an ephemeral consumer from a start time, no acks, gone after the read)."""
        start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)
        sub = await self.js.pull_subscribe(subject, stream=stream, config=ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=start, ack_policy=AckPolicy.NONE,
            filter_subject=subject, inactive_threshold=60.0))
        out: list[bytes] = []
        try:
            pending = (await sub.consumer_info()).num_pending
            while pending:
                try:
                    got = await sub.fetch(min(batch, pending), timeout=timeout)
                except nats.errors.TimeoutError:    # what was pending has gone (limits, purge)
                    break
                out += [m.data for m in got]
                pending = got[-1].metadata.num_pending if got else 0
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return out

    async def _start(self) -> None:
        self._ack_prefix = self.nc.new_inbox() + "."
        self._ack_sub = await self.nc.subscribe(self._ack_prefix + "*", cb=self._on_ack,
                                                pending_msgs_limit=4 * MAX_IN_FLIGHT)
        self._sweeper = asyncio.create_task(self._sweep_loop())

    async def _send(self, entry: _Unconfirmed) -> None:
        self._seq += 1
        seq = self._seq
        entry.sent = asyncio.get_running_loop().time()
        self._in_flight[seq] = entry
        if self._idle.is_set():
            self._idle.clear()
            self._wake.set()
        try:
            await self.nc.publish(entry.subject, entry.payload, reply=f"{self._ack_prefix}{seq}",
                                  headers={"Nats-Msg-Id": entry.msg_id})
        except Exception as exc:  # reconnect buffer full, connection closing: the sweeper sends it again
            log.debug("durable publish of %s not sent (%s); will retry", entry.msg_id, exc)
            if self._in_flight.pop(seq, None) is not None:
                self._retry.append(entry)

    async def _on_ack(self, msg: Msg) -> None:
        try:
            seq = int(msg.subject[len(self._ack_prefix):])
        except ValueError:
            return
        entry = self._in_flight.pop(seq, None)
        if entry is None:  # the ack of a copy already sent again: the newer copy's ack decides
            return
        data = msg.data
        if not data or b'"error"' in data:  # 503 no responders (stream not ready) or a stream error
            log.debug("durable publish of %s refused (%r); will retry", entry.msg_id, data[:200])
            self._retry.append(entry)
        self._settled()

    def _settled(self) -> None:
        if len(self._in_flight) < MAX_IN_FLIGHT:
            self._room.set()
        if not self._in_flight and not self._retry:
            self._idle.set()

    async def _sweep_loop(self) -> None:
        """Send again what was refused or not acked within ACK_TIMEOUT_S, oldest first."""
        loop = asyncio.get_running_loop()
        while True:
            if self._idle.is_set():
                self._wake.clear()
                await self._wake.wait()
            await asyncio.sleep(SWEEP_INTERVAL_S)
            if not self.nc.is_connected:
                continue  # sent now, it would only wait in the reconnect buffer behind older copies
            overdue = loop.time() - ACK_TIMEOUT_S
            late = []
            for seq, entry in self._in_flight.items():  # oldest send first: stop at the first one in time
                if entry.sent > overdue:
                    break
                late.append(seq)
            again, self._retry = self._retry, []
            again.extend(self._in_flight.pop(seq) for seq in late)
            for entry in again:
                self.republished += 1
                await self._send(entry)
            self._settled()

    @property
    def unconfirmed(self) -> int:
        return len(self._in_flight) + len(self._retry)

    async def flush(self, timeout: float = 30.0) -> None:
        """Wait until every durable publish is acked by its stream (or ``timeout`` passes)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout=timeout)
        with contextlib.suppress(Exception):
            await self.nc.flush(timeout=2)

    async def close(self) -> None:
        await self.flush(timeout=10.0)
        if self._sweeper is not None:
            self._sweeper.cancel()
        # drain can wait on a pull subscription's pending request for its whole timeout;
        # everything that matters (durable publishes) is already confirmed, so close.
        with contextlib.suppress(Exception):
            await self.nc.close()
