"""Queue-position models: how much resting quantity stands ahead of a simulated order.

A replay cannot show where our order would sit in the venue's FIFO queue, so a
model estimates it. Every model starts the order at the *back* of its level
(quantity ahead = the level's size at acceptance, the nautilus_trader rule);
they differ in what a shrinking level means:

- ``RiskAverseQueue`` (nautilus / hftbacktest "risk averse"): only trades at our
  price advance us; cancellations are assumed to come from behind. The queue
  ahead can never exceed the level size, so it is clipped when the level shrinks.
- ``ProbQueue`` (hftbacktest ``ProbQueueModel`` after Rigtorp, 2013): a size
  decrease not explained by trades is a cancellation ahead of us with
  probability ``f(back) / (f(back) + f(front))``, ``f(x) = x ** power``.
- ``OptimisticQueue``: no queue at all; any trade at our price reaches us. This is
  the fill-on-touch behaviour of freqtrade/hummingbot paper modes, kept as the
  optimistic baseline to compare against.

The exchange (exchange.py) handles level deletion (queue cleared) and modifies
(back of the queue) itself, so every model gets them right.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass
class QueuePos:
    ahead: float = 0.0
    traded_since_depth: float = 0.0  # trade volume not yet reflected in a depth update


class QueueModel(Protocol):
    name: str

    def new_order(self, level_qty: float) -> QueuePos: ...

    def trade(self, pos: QueuePos, qty: float) -> float:
        """A trade of ``qty`` at our price; return the quantity that reaches our order."""
        ...

    def depth(self, pos: QueuePos, prev_qty: float, new_qty: float) -> None:
        """Our level changed size (still present) without our order being involved."""
        ...


def _consume(pos: QueuePos, qty: float) -> float:
    pos.traded_since_depth += qty
    excess = qty - pos.ahead
    pos.ahead = max(0.0, pos.ahead - qty)
    return max(0.0, excess)


class RiskAverseQueue:
    name = "risk_averse"

    def new_order(self, level_qty: float) -> QueuePos:
        return QueuePos(ahead=max(0.0, level_qty))

    def trade(self, pos: QueuePos, qty: float) -> float:
        return _consume(pos, qty)

    def depth(self, pos: QueuePos, prev_qty: float, new_qty: float) -> None:
        pos.traded_since_depth = 0.0
        pos.ahead = min(pos.ahead, max(0.0, new_qty))


class ProbQueue:
    name = "prob"

    def __init__(self, power: float = 2.0):
        if power <= 0:
            raise ValueError(f"prob queue power must be > 0, got {power}")
        self.power = power

    def new_order(self, level_qty: float) -> QueuePos:
        return QueuePos(ahead=max(0.0, level_qty))

    def trade(self, pos: QueuePos, qty: float) -> float:
        return _consume(pos, qty)

    def depth(self, pos: QueuePos, prev_qty: float, new_qty: float) -> None:
        cancelled = prev_qty - new_qty - pos.traded_since_depth
        pos.traded_since_depth = 0.0
        if cancelled > 0 and pos.ahead > 0:
            front = pos.ahead
            back = max(0.0, prev_qty - front)
            fb, ff = back ** self.power, front ** self.power
            # f(back) / (f(back) + f(front)) is the chance a cancel came from *behind* us: with power 1
            # and cancels spread evenly, a cancel is ahead with chance front / level. (An earlier version
            # moved us by the behind-share, fastest when most of the queue was behind: hftbacktest's
            # power(-n), docs/simulator-fidelity.md.) A cancel larger than the queue behind us, which
            # hftbacktest moves with an overflow term, is the clip to the new level below.
            behind = fb / (fb + ff) if fb + ff > 0 else 0.0
            pos.ahead = max(0.0, front - cancelled * (1.0 - behind))
        pos.ahead = min(pos.ahead, max(0.0, new_qty))


class OptimisticQueue:
    name = "optimistic"

    def new_order(self, level_qty: float) -> QueuePos:
        return QueuePos(ahead=0.0)

    def trade(self, pos: QueuePos, qty: float) -> float:
        return qty

    def depth(self, pos: QueuePos, prev_qty: float, new_qty: float) -> None:
        pos.ahead = 0.0


def make_queue_model(name: str, *, power: float = 2.0) -> QueueModel:
    if name == "risk_averse":
        return RiskAverseQueue()
    if name == "prob":
        return ProbQueue(power)
    if name == "optimistic":
        return OptimisticQueue()
    raise ValueError(f"executor.simulator.queue_model must be risk_averse, prob or optimistic, got {name!r}")
