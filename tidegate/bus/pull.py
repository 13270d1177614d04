"""Continuous pull from a durable JetStream consumer: requests stay outstanding, messages flow in.

Why not ``PullSubscription.fetch`` in a loop: every fetch is a round trip (a
pull request, then the messages, then a "404 No Messages" status closing it),
and nats-py waits for each of those through ``wait_for``, one task and one
timer per message. At a few candidates per tick that machinery cost the
scorer more than scoring did, and the request round trip sat in every
candidate's latency.

``PullFeed`` keeps pull requests for about two batches outstanding on the
server (JetStream's own pull protocol, ADR-13: ``{"batch", "expires",
"idle_heartbeat"}`` to ``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>``, the
messages and status replies to one inbox). Messages are appended to a deque
as the server delivers them, in stream order; the consumer takes what has
arrived, up to a batch, whenever it is ready. Outstanding counts go down with
every message delivered and with the pending count a "408 Request Timeout" or
"409" status reports for a request that ended; the feed asks for more when
fewer than one batch are outstanding. A request lost with the server
(restart, reconnect) sends no status: the feed starts over after a
reconnect, or when neither a message nor a heartbeat has come for
``stall_after`` seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = logging.getLogger("tidegate.bus")

STATUS = "Status"
PENDING_MESSAGES = "Nats-Pending-Messages"


class PullFeed:
    def __init__(self, nc: Client, *, stream: str, durable: str, batch: int, expires: float = 5.0,
                 heartbeat: float = 1.0):
        self.nc = nc
        self.batch = batch
        self.expires = expires
        self.heartbeat = heartbeat
        self.stall_after = 3 * heartbeat
        self.next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self.inbox = nc.new_inbox()
        self.msgs: deque[Msg] = deque()
        self.arrived = asyncio.Event()
        self.outstanding = 0          # messages asked for and neither delivered nor released by a status
        self.consumer_gone = False    # the server said the consumer was deleted
        self._request = json.dumps({"batch": batch, "expires": int(expires * 1e9),
                                    "idle_heartbeat": int(heartbeat * 1e9)}).encode()
        self._reconnects = -1
        self._last_heard = 0.0
        self._sub: Subscription | None = None

    async def start(self) -> None:
        # the feed bounds what it holds itself (at most ~2 batches requested): the client must never drop
        self._sub = await self.nc.subscribe(self.inbox, cb=self._on_msg, pending_msgs_limit=1_000_000,
                                            pending_bytes_limit=512 * 1024 * 1024)

    async def stop(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception as exc:  # closing or reconnecting: the server forgets the inbox anyway
                log.debug("pull feed unsubscribe: %s", exc)

    async def _on_msg(self, msg: Msg) -> None:
        self._last_heard = asyncio.get_running_loop().time()
        headers = msg.headers
        status = headers.get(STATUS) if headers else None
        if not status:
            self.msgs.append(msg)
            self.outstanding = max(0, self.outstanding - 1)
            self.arrived.set()
            return
        if status == "100":  # idle heartbeat: the requests are alive
            return
        # 404/408/409: a request ended; what it still had pending is no longer coming
        pending = headers.get(PENDING_MESSAGES) if headers else None
        released = int(pending) if pending and pending.isdigit() else 0
        self.outstanding = max(0, self.outstanding - released)
        if status == "409" and "deleted" in (headers.get("Description", "") if headers else "").lower():
            self.consumer_gone = True
        self.arrived.set()

    async def top_up(self) -> None:
        """Ask for another batch when fewer than one batch are outstanding (or the requests went stale)."""
        loop_time = asyncio.get_running_loop().time()
        reconnects = self.nc.stats.get("reconnects", 0)
        if reconnects != self._reconnects or loop_time - self._last_heard > self.stall_after:
            self._reconnects = reconnects  # requests of a former connection (or a silent one) are gone
            self.outstanding = 0
        if self.outstanding >= self.batch or not self.nc.is_connected:
            return
        await self.nc.publish(self.next_subject, self._request, reply=self.inbox)
        if self.outstanding == 0:
            self._last_heard = loop_time  # the stall clock starts with the first request
        self.outstanding += self.batch

    async def wait(self, timeout: float) -> None:
        """Until a message or status arrives, or ``timeout`` passes."""
        if self.msgs:
            return
        self.arrived.clear()
        try:
            async with asyncio.timeout(timeout):
                await self.arrived.wait()
        except TimeoutError:
            pass

    def take(self, limit: int) -> list[Msg]:
        n = min(limit, len(self.msgs))
        return [self.msgs.popleft() for _ in range(n)]
