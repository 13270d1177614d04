"""Bounded memory of recently seen business ids: at-least-once delivery, exactly-once counting.

JetStream redelivers a message whose ack was lost (a NATS restart between the
handler and the ack). Publishing is already idempotent (the same ``Nats-Msg-Id``
is dropped by the stream's duplicate window), but a consumer that *counts* what
it handles (signals scored, trades closed) must not count a redelivered message
twice. ``RecentIds`` remembers the last ``capacity`` ids; redeliveries arrive
within seconds, so a window of this size is ample and memory stays bounded.
"""

from __future__ import annotations

from collections import deque


class RecentIds:
    def __init__(self, capacity: int = 200_000):
        self.capacity = capacity
        self._order: deque[str] = deque()
        self._seen: set[str] = set()

    def __contains__(self, key: str) -> bool:
        return key in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, key: str) -> bool:
        """Remember ``key``; False when it was already known (a duplicate)."""
        if key in self._seen:
            return False
        self._seen.add(key)
        self._order.append(key)
        if len(self._order) > self.capacity:
            self._seen.discard(self._order.popleft())
        return True
